"""`sae data` and `sae train` (also the command each process runs under ``torchrun -m sae train``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sae.cli import arguments as arg
from sae.cli import output


def cmd_data(args: argparse.Namespace) -> int:
    from sae.core.datasets.procedural import write_shapes3d_h5

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "shapes3d.h5"
    write_shapes3d_h5(path, n=args.n, seed=args.seed)
    output.result(f"wrote {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Also the command each process runs under torchrun (one process per GPU, any number of nodes)."""
    from sae.core.datasets import parse_exclude
    from sae.training.trainer import Trainer, TrainerOptions, with_batch_size

    options = TrainerOptions(
        init_from=args.init,
        exclude=parse_exclude(args.exclude) if args.exclude else None,
        **arg.values_of(args, "val_every", "val_batches", "compile", "freeze", "precision", "channels_last"),
    )
    trainer = Trainer(
        with_batch_size(resolved_config(args), args.batch_size),
        args.data,
        args.out,
        device=args.device,
        options=options,
    )
    try:
        result = trainer.fit(steps=args.steps)
    finally:
        trainer.close()
    if trainer.dist.is_main:
        best = "" if result.best_val_loss is None else f", best val loss {result.best_val_loss:.1f}"
        layout = ", channels_last" if result.channels_last else ""
        output.result(
            f"step {result.step}: loss {result.last_loss:.1f}, {result.images_per_second:.0f} images/s "
            f"({result.precision}{layout}){best}; "
            f"checkpoints in {result.run_dir / 'checkpoints'}"
        )
    return 0


def resolved_config(args: argparse.Namespace):
    """The named config with --config FILE.toml, then each --set, then --seed applied (training/overrides.py)."""
    from sae.training.config import get_config
    from sae.training.overrides import apply_overrides, parse_assignment, toml_assignments

    assignments = list(toml_assignments(args.config_file).items()) if args.config_file else []
    assignments += [parse_assignment(text) for text in args.set or []]
    if args.seed is not None:
        assignments.append(("train.seed", args.seed))
    return apply_overrides(get_config(args.config), assignments)


def add_parsers(sub) -> None:
    d = sub.add_parser("data", help="make a dataset file")
    d.add_argument("kind", choices=["shapes3d"], help="dataset to render (procedural 3D-Shapes, 3dshapes.h5 format)")
    d.add_argument("--out", type=Path, required=True, help="output folder")
    d.add_argument(
        "--n", type=arg.positive_int, default=None, help="random subset size (default: the full 480,000 grid)"
    )
    arg.add_seed(d, "seed of the rendering and the subset")
    d.set_defaults(func=cmd_data)

    t = sub.add_parser("train", help="train a named config")
    t.add_argument("config", type=arg.config_name, help="named config, e.g. sae12-tiny or sae12-shapes3d")
    t.add_argument(
        "--data",
        type=Path,
        required=True,
        help="3dshapes.h5-format file, MPI3D .npz, or a folder of aligned CelebA JPEGs",
    )
    t.add_argument("--out", type=Path, required=True, help="run folder (resumes if it holds a checkpoint)")
    t.add_argument("--steps", type=arg.positive_int, default=None, help="total steps (default: the config's)")
    t.add_argument("--device", type=arg.device, default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    t.add_argument(
        "--batch-size",
        type=arg.positive_int,
        default=None,
        help="global batch size, split over torchrun's processes (default: the config's)",
    )
    t.add_argument(
        "--val-every", type=arg.positive_int, default=None, help="validate every N steps (default: checkpoint_every)"
    )
    t.add_argument("--val-batches", type=arg.positive_int, default=16, help="batches of the val split per validation")
    t.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default=None,
        help="arithmetic of the training steps: bf16 autocast (weights, gradients, Adam and checkpoints "
        "stay fp32) or plain fp32 (default: bf16 on CUDA, fp32 on CPU)",
    )
    t.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the model in channels_last memory format (default: on for CUDA, off for CPU)",
    )
    t.add_argument("--compile", action="store_true", help="torch.compile the training step")
    t.add_argument(
        "--freeze",
        choices=["encoder", "decoder"],
        default=None,
        help="keep this part's weights fixed (fine-tuning; see --init)",
    )
    t.add_argument(
        "--init",
        type=Path,
        default=None,
        metavar="RUN",
        help="start from another run's checkpoint (run folder or .pt) instead of random weights",
    )
    t.add_argument(
        "--exclude",
        action="append",
        default=None,
        metavar="FACTOR=I[,I]",
        help="leave out these factor value indices, e.g. shape=2 (no spheres); repeatable",
    )
    arg.add_seed(t, "train.seed: weights and data order (default: the config's)", default=None)
    t.add_argument(
        "--set",
        action="append",
        default=None,
        metavar="FIELD=VALUE",
        help="override one field of the config by its dotted path, type-checked, e.g. train.lr=1e-3 or "
        "model.latent_dim=16; repeatable, applied after --config",
    )
    t.add_argument(
        "--config",
        dest="config_file",
        type=Path,
        default=None,
        metavar="FILE.toml",
        help="overrides as TOML tables of the same dotted paths ([train] lr = 1e-3)",
    )
    t.set_defaults(func=cmd_train)
