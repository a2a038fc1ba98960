"""The `sae` command. Each subcommand imports its heavy modules (torch, the server) only when it runs."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_URL = "127.0.0.1:8001"


def cmd_data(args: argparse.Namespace) -> int:
    from training.data.procedural import write_shapes3d_h5

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "shapes3d.h5"
    write_shapes3d_h5(path, n=args.n, seed=args.seed)
    print(f"wrote {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from training.config import get_config
    from training.trainer import Trainer

    result = Trainer(get_config(args.config), args.data, args.out, device=args.device).fit(steps=args.steps)
    print(f"step {result.step}: loss {result.last_loss:.1f}, {result.images_per_second:.0f} images/s; "
          f"checkpoint in {result.run_dir / 'checkpoints'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from export.repository import export_run

    report = export_run(args.run, args.repo, data_path=args.data, bank_size=args.bank_size, bank_seed=args.bank_seed)
    diffs = ", ".join(f"{k} {v:.1e}" for k, v in report.max_abs_diff.items())
    print(f"exported {report.config_name} (step {report.step}) to {report.repository}; "
          f"max |eager - ONNX|: {diffs}; bank of {report.bank_size} latents")
    return 0


def server_config(args: argparse.Namespace):
    from serving.triton import ServerConfig

    return ServerConfig(repository=Path(args.repo), grpc_port=args.grpc_port, http_port=args.http_port,
                        metrics_port=args.metrics_port)


def cmd_serve(args: argparse.Namespace) -> int:
    from serving.triton import serve_forever

    return serve_forever(server_config(args))


def write_sample_grid(url: str, n: int, seed: int, out: Path, per_dimension: bool = False) -> Path:
    from clients.png import image_grid, write_png
    from clients.triton_client import SAEClient, to_uint8

    with SAEClient(url) as client:
        client.wait_ready(timeout_s=30)
        samples = client.sample(n, seed=seed, per_dimension=per_dimension)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_png(out, image_grid(to_uint8(samples.images), ncols=int(round(n ** 0.5))))
    return out


def cmd_sample(args: argparse.Namespace) -> int:
    path = write_sample_grid(args.url, args.n, args.seed, args.out, args.per_dimension)
    print(f"wrote {args.n} hybrid samples to {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """data -> train sae12-tiny -> export -> real Triton server -> hybrid samples as a PNG grid."""
    from export.repository import export_run
    from serving.triton import ServerConfig, TritonServer
    from training.config import get_config
    from training.data.procedural import write_shapes3d_h5
    from training.trainer import Trainer

    out: Path = args.out
    data = out / "shapes3d.h5"
    if not data.exists():
        print(f"[1/4] rendering {args.images} procedural 3D-Shapes images -> {data}")
        out.mkdir(parents=True, exist_ok=True)
        write_shapes3d_h5(data, n=args.images, seed=0)
    print(f"[2/4] training {args.config} for {args.steps} steps")
    Trainer(get_config(args.config), data, out / "run").fit(steps=args.steps)
    print(f"[3/4] exporting to {args.repo}")
    report = export_run(out / "run", args.repo)
    print(f"      max |eager - ONNX|: {report.max_abs_diff}")
    print("[4/4] starting Triton and asking it for hybrid samples")
    with TritonServer(ServerConfig(repository=Path(args.repo)), log_path=out / "tritonserver.log") as server:
        grid = write_sample_grid(server.grpc_url, 64, 0, out / "hybrid_samples.png")
    print(f"done: {grid}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sae", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="make a dataset file")
    d.add_argument("kind", choices=["shapes3d"])
    d.add_argument("--out", type=Path, required=True, help="output folder")
    d.add_argument("--n", type=int, default=None, help="random subset size (default: the full 480,000 grid)")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_data)

    t = sub.add_parser("train", help="train a named config")
    t.add_argument("config", help="named config, e.g. sae12-tiny or sae12-shapes3d")
    t.add_argument("--data", type=Path, required=True, help="HDF5 file in the 3dshapes.h5 format")
    t.add_argument("--out", type=Path, required=True, help="run folder (resumes if it holds a checkpoint)")
    t.add_argument("--steps", type=int, default=None, help="total steps (default: the config's)")
    t.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("export", help="checkpoint -> ONNX + latent bank in the Triton repository")
    e.add_argument("run", type=Path, help="run folder or checkpoint file")
    e.add_argument("--repo", type=Path, default=Path("model_repository"))
    e.add_argument("--data", type=Path, default=None, help="training data (default: the file the run used)")
    e.add_argument("--bank-size", type=int, default=128)
    e.add_argument("--bank-seed", type=int, default=0)
    e.set_defaults(func=cmd_export)

    def add_ports(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--repo", type=Path, default=Path("model_repository"))
        sp.add_argument("--grpc-port", type=int, default=8001)
        sp.add_argument("--http-port", type=int, default=8000)
        sp.add_argument("--metrics-port", type=int, default=8002)

    s = sub.add_parser("serve", help="run tritonserver on 127.0.0.1 until Ctrl-C / SIGTERM")
    add_ports(s)
    s.set_defaults(func=cmd_serve)

    sm = sub.add_parser("sample", help="hybrid samples from a running server, as a PNG grid")
    sm.add_argument("--n", type=int, default=64)
    sm.add_argument("--seed", type=int, default=0)
    sm.add_argument("--out", type=Path, default=Path("samples.png"))
    sm.add_argument("--url", default=DEFAULT_URL, help="gRPC address of the server")
    sm.add_argument("--per-dimension", action="store_true", help="draw each latent dimension on its own")
    sm.set_defaults(func=cmd_sample)

    dm = sub.add_parser("demo", help="the whole pipeline on procedural data with the tiny CPU model")
    dm.add_argument("--out", type=Path, default=Path("out/demo"))
    dm.add_argument("--repo", type=Path, default=Path("model_repository"))
    dm.add_argument("--config", default="sae12-tiny")
    dm.add_argument("--images", type=int, default=20_000)
    dm.add_argument("--steps", type=int, default=None)
    dm.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        print(f"sae {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
