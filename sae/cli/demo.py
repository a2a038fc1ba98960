"""`sae demo`: data, training, export, a real server and hybrid samples, in one command."""

from __future__ import annotations

import argparse
from pathlib import Path

from sae.cli import arguments as arg
from sae.cli import output
from sae.cli.client import write_sample_grid
from sae.cli.export import parity_line


def cmd_demo(args: argparse.Namespace) -> int:
    """data -> train sae12-tiny -> export -> real Triton server -> hybrid samples as a PNG grid."""
    from sae.core.datasets.procedural import write_shapes3d_h5
    from sae.export.model_set import export_run
    from sae.serving.triton import ServerConfig, TritonServer
    from sae.training.config import get_config
    from sae.training.trainer import Trainer

    out: Path = args.out
    data = out / "shapes3d.h5"
    if not data.exists():
        output.result(f"[1/4] rendering {args.images} procedural 3D-Shapes images -> {data}")
        out.mkdir(parents=True, exist_ok=True)
        write_shapes3d_h5(data, n=args.images, seed=0)
    config = get_config(args.config)
    output.result(f"[2/4] training {args.config} for {args.steps or config.train.steps} steps")
    Trainer(config, data, out / "run").fit(steps=args.steps)
    output.result(f"[3/4] exporting to {args.repo}")
    report = export_run(out / "run", args.repo)
    output.result(f"      {parity_line(report)}")
    output.result("[4/4] starting Triton and asking it for hybrid samples")
    with TritonServer(ServerConfig(repository=Path(args.repo)), log_path=out / "tritonserver.log") as server:
        grid = write_sample_grid(server.grpc_url, 64, 0, out / "hybrid_samples.png")
    output.result(f"done: {grid}")
    return 0


def add_parsers(sub) -> None:
    dm = sub.add_parser("demo", help="the whole pipeline on procedural data with the tiny CPU model")
    dm.add_argument(
        "--out",
        type=Path,
        default=Path("out/demo"),
        help="folder for the dataset, the run, the server log and hybrid_samples.png",
    )
    arg.add_repo(dm, "Triton model repository to export into")
    dm.add_argument("--config", type=arg.config_name, default="sae12-tiny", help="named config to train")
    dm.add_argument("--images", type=arg.positive_int, default=20_000, help="procedural images to render")
    dm.add_argument("--steps", type=arg.positive_int, default=None, help="training steps (default: the config's)")
    dm.set_defaults(func=cmd_demo)
