"""Training throughput (images/s) of named configs at each precision and memory format, side by side, as JSON.

    python benchmarks/train_throughput.py --out out/bench/train_throughput.json            # CPU here
    python benchmarks/train_throughput.py --device cuda --out out/bench/train_throughput.json

Each config is measured in four variants of ``TrainerOptions`` in the same run: ``fp32`` (no autocast, the model's
default memory format), ``channels_last``, ``bf16`` (bf16 autocast; weights, gradients and Adam stay fp32) and
``bf16+channels_last``. All four trainers start from the same seed and read the same batches; after a few warm-up
steps each, their timed steps are interleaved in rounds (round r times every variant once, starting at the r-th), so
load from other work on the machine falls on all four alike. Each variant's ``ratio_vs_fp32`` is its images/s over
the fp32 variant's, from the same run. The loss of the last timed step is reported beside fp32's (the same batches at
the same steps), a first check that a variant does not change what is learned; ``--quality-steps N`` trains every
variant on to step N and reports its validation loss (computed in fp32) beside fp32's.

A config is a name or ``NAME:FIELD=VALUE[:FIELD=VALUE...]`` with ``sae train --set`` overrides, e.g.
``sae12-tiny:model.backbone.channels=32`` (the tiny architecture at 32 channels). The default configs are
``sae12-tiny``, that 32-channel variant and ``sae12-shapes3d`` (the paper's size).

Timing is of the real trainer (``Trainer.train_step`` on the batches of ``Trainer.training_batches``: data reading
included), and in the same run the same number of steps on one batch already in memory (the model step alone), so
the data pipeline's share shows as a ratio measured side by side. Without ``--data`` a small procedural 3D-Shapes
file is rendered into a temporary folder (the content does not change the cost of a step). Under torchrun the
figures are for the global batch, written by rank 0.

Reference points: the paper trained 100k steps of batch 128 in 3-4 hours on a V100 (about 1,000 images/s); 100k steps
in under 22 minutes needs about 10,000 images/s.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from sae.training.config import ExperimentConfig, get_config  # noqa: E402
from sae.training.models.autoencoder import count_parameters  # noqa: E402
from sae.training.overrides import apply_overrides, parse_assignment  # noqa: E402
from sae.training.trainer import Trainer, TrainerOptions, with_batch_size  # noqa: E402

PAPER_V100_IMAGES_PER_SECOND = 100_000 * 128 / (3.5 * 3600)  # 100k steps of 128 in about 3.5 hours: ~1,016
TARGET_IMAGES_PER_SECOND = 10_000  # 100k steps of 128 in under 22 minutes
DEFAULT_CONFIGS = ("sae12-tiny", "sae12-tiny:model.backbone.channels=32", "sae12-shapes3d")
# variant name -> (TrainerOptions.precision, TrainerOptions.channels_last)
VARIANTS = {
    "fp32": ("fp32", False),
    "channels_last": ("fp32", True),
    "bf16": ("bf16", False),
    "bf16+channels_last": ("bf16", True),
}
BASELINE = "fp32"


@dataclasses.dataclass
class ThroughputResult:
    config: str
    parameters: int
    batch_size: int
    device: str
    autocast: str  # "bf16" or "none"
    channels_last: bool
    compile: bool
    world_size: int
    warmup_steps: int
    timed_steps: int
    seconds: float
    images_per_second: float  # end to end: reading, shuffling, copying and the step
    step_only_images_per_second: float  # the same steps on one batch already in memory
    ms_per_step: float
    data_share: float  # 1 - end-to-end / step-only: the part of a step's time spent on data
    fraction_of_target: float | None = None  # images/s / 10,000 (CUDA only)
    variant: str | None = None  # a key of VARIANTS (None: the device's default options)
    precision: str = "fp32"
    rounds: int = 1  # the timed steps were split into this many interleaved rounds
    ratio_vs_fp32: float | None = None  # images/s over the fp32 variant's, same run
    step_only_ratio_vs_fp32: float | None = None
    last_loss: float | None = None  # the loss of the last timed end-to-end step
    last_loss_rel_diff_vs_fp32: float | None = None  # (last_loss - fp32's) / fp32's, same batches and step
    quality_steps: int | None = None  # with --quality-steps: trained on to this step, then validated (in fp32)
    val_loss: float | None = None
    val_loss_rel_diff_vs_fp32: float | None = None


def parse_config(spec: str) -> ExperimentConfig:
    """``NAME`` or ``NAME:FIELD=VALUE[:FIELD=VALUE...]`` (``sae train --set`` overrides) -> its config."""
    name, *assignments = spec.split(":")
    return apply_overrides(get_config(name), [parse_assignment(a) for a in assignments])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Timed:
    """One trainer of a config under one variant, with its batch stream and the seconds its timed steps took."""

    def __init__(self, cfg: ExperimentConfig, data: Path, run_dir: Path, device: str | None, options: TrainerOptions):
        self.trainer = Trainer(cfg, data, run_dir, device=device, options=options)
        self.stream = self.trainer.training_batches()
        self.trainer.model.train()
        self.seconds = self.step_only_seconds = 0.0
        self.last_loss: float | None = None

    def run(self, n: int, batch=None) -> float:
        trainer = self.trainer
        _sync(trainer.device)
        started = time.perf_counter()
        for _ in range(n):
            self.last_loss = trainer.train_step(next(self.stream) if batch is None else batch)["loss"]
            trainer.step += 1
        _sync(trainer.device)
        return time.perf_counter() - started

    def close(self) -> None:
        if hasattr(self.stream, "close"):
            self.stream.close()

    def result(self, config: str, warmup: int, steps: int, rounds: int, variant: str | None) -> ThroughputResult:
        trainer, options = self.trainer, self.trainer.options
        bs, n = trainer.cfg.train.batch_size, steps * rounds
        ips, step_ips = n * bs / self.seconds, n * bs / self.step_only_seconds
        cuda = trainer.device.type == "cuda"
        return ThroughputResult(
            config=config,
            parameters=count_parameters(trainer.model, auxiliary=False),
            batch_size=bs,
            device=str(torch.cuda.get_device_name(trainer.device) if cuda else platform.processor() or "cpu"),
            autocast="bf16" if options.precision == "bf16" else "none",
            channels_last=bool(options.channels_last),
            compile=options.compile,
            world_size=trainer.dist.world_size,
            warmup_steps=warmup,
            timed_steps=n,
            seconds=round(self.seconds, 4),
            images_per_second=round(ips, 2),
            step_only_images_per_second=round(step_ips, 2),
            ms_per_step=round(1000 * self.seconds / n, 3),
            data_share=round(1 - ips / step_ips, 4),
            fraction_of_target=round(ips / TARGET_IMAGES_PER_SECOND, 4) if cuda else None,
            variant=variant,
            precision=str(options.precision),
            rounds=rounds,
            last_loss=self.last_loss,
        )


def measure(
    config: str,
    data: Path,
    device: str | None,
    warmup: int,
    steps: int,
    batch_size: int | None,
    compile: bool,
    precision: str | None = None,
    channels_last: bool | None = None,
) -> tuple[ThroughputResult, Trainer]:
    """One config under one set of options (None: the device's defaults): ``steps`` timed steps end to end, then
    as many on one batch held in memory."""
    cfg = with_batch_size(parse_config(config), batch_size)
    options = TrainerOptions(compile=compile, tensorboard=False, precision=precision, channels_last=channels_last)
    with tempfile.TemporaryDirectory(prefix="sae-bench-") as run_dir:
        timed = _Timed(cfg, data, Path(run_dir), device, options)
        timed.run(warmup)
        timed.seconds = timed.run(steps)
        timed.step_only_seconds = timed.run(steps, next(timed.stream))
        timed.close()
    return timed.result(config, warmup, steps, 1, None), timed.trainer


def _rotated(items: list, r: int) -> list:
    """Round r starts at item r: no variant always runs first (after a pause) or last."""
    k = r % len(items)
    return items[k:] + items[:k]


def compare(
    config: str,
    data: Path,
    device: str | None,
    warmup: int,
    steps: int,
    rounds: int,
    batch_size: int | None,
    compile: bool,
    variants: list[str],
    quality_steps: int = 0,
) -> list[ThroughputResult]:
    """Every variant of one config, timed in ``rounds`` interleaved rounds of ``steps`` steps each (end to end, then
    on a held batch), with the ratios against the fp32 variant of the same run. With ``quality_steps``, each variant
    then trains on (untimed) to that step and is validated (``Trainer.validate``: fp32, the first 16 val batches),
    so the loss after equal steps and batches compares across variants."""
    cfg = with_batch_size(parse_config(config), batch_size)
    with tempfile.TemporaryDirectory(prefix="sae-bench-") as run_root:
        timed: dict[str, _Timed] = {}
        try:
            for name in variants:
                precision, channels_last = VARIANTS[name]
                options = TrainerOptions(
                    compile=compile, tensorboard=False, precision=precision, channels_last=channels_last
                )
                timed[name] = _Timed(cfg, data, Path(run_root) / name.replace("+", "_"), device, options)
                timed[name].run(warmup)
            for r in range(rounds):
                for t in _rotated(list(timed.values()), r):
                    t.seconds += t.run(steps)
            held = {id(t): next(t.stream) for t in timed.values()}  # the same batch: every stream reads alike
            for r in range(rounds):
                for t in _rotated(list(timed.values()), r):
                    t.step_only_seconds += t.run(steps, held[id(t)])
            val_losses = {}
            if quality_steps:
                for name, t in timed.items():
                    t.run(max(0, quality_steps - t.trainer.step))
                    val_losses[name] = t.trainer.validate()["loss"]
        finally:
            for t in timed.values():
                t.close()
                t.trainer.pipeline.close()  # the process group (torchrun) stays up for the next config
    results = {name: t.result(config, warmup, steps, rounds, name) for name, t in timed.items()}
    for name, loss in val_losses.items():
        results[name].quality_steps, results[name].val_loss = timed[name].trainer.step, round(loss, 3)
    base = results.get(BASELINE)
    if base is not None:
        for r in results.values():
            r.ratio_vs_fp32 = round(r.images_per_second / base.images_per_second, 3)
            r.step_only_ratio_vs_fp32 = round(r.step_only_images_per_second / base.step_only_images_per_second, 3)
            if r.last_loss is not None and base.last_loss:
                r.last_loss_rel_diff_vs_fp32 = round((r.last_loss - base.last_loss) / base.last_loss, 6)
            if r.val_loss is not None and base.val_loss:
                r.val_loss_rel_diff_vs_fp32 = round((r.val_loss - base.val_loss) / base.val_loss, 6)
    return list(results.values())


def ratio_table(results: list[dict]) -> dict[str, dict[str, float | None]]:
    """config -> variant -> end-to-end images/s over the fp32 variant's (same run)."""
    table: dict[str, dict[str, float | None]] = {}
    for r in results:
        if r.get("variant") is not None:
            table.setdefault(r["config"], {})[r["variant"]] = r["ratio_vs_fp32"]
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--configs",
        nargs="+",
        default=list(DEFAULT_CONFIGS),
        help="names, or NAME:FIELD=VALUE[:...] with sae train --set overrides",
    )
    p.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=list(VARIANTS),
        help="precision / memory-format variants measured side by side (ratios need fp32 among them)",
    )
    p.add_argument("--data", type=Path, default=None, help="HDF5 data file (default: render a procedural one)")
    p.add_argument("--images", type=int, default=2048, help="images in the rendered file when --data is not given")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps per variant (default: 2 on CPU, 20 on CUDA)")
    p.add_argument(
        "--steps", type=int, default=None, help="timed steps per variant and round (default: 5 on CPU, 100 on CUDA)"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="interleaved rounds of --steps per variant (default: 2 on CPU, 1 on CUDA)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="override the configs' batch size")
    p.add_argument(
        "--quality-steps",
        type=int,
        default=0,
        help="after timing, train each variant on to this step and report its validation loss (fp32) "
        "beside fp32's (default 0: not done)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the training step")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's; on a CPU shared with other work, 1 avoids "
        "threads waiting on each other for cores)",
    )
    p.add_argument("--out", type=Path, default=Path("out/bench/train_throughput.json"))
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cuda = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    warmup = args.warmup if args.warmup is not None else (20 if cuda else 2)
    steps = args.steps if args.steps is not None else (100 if cuda else 5)
    rounds = args.rounds if args.rounds is not None else (1 if cuda else 2)
    load_at_start = round(os.getloadavg()[0], 2)
    for spec in args.configs:
        parse_config(spec)  # a bad name or override stops here, before any measuring

    with tempfile.TemporaryDirectory(prefix="sae-bench-data-") as tmp:
        data = args.data
        if data is None:
            from sae.core.datasets.procedural import write_shapes3d_h5

            data = Path(tmp) / "shapes3d.h5"
            write_shapes3d_h5(data, n=args.images, seed=0)
        results = []
        for spec in args.configs:
            for result in compare(
                spec,
                data,
                args.device,
                warmup,
                steps,
                rounds,
                args.batch_size,
                args.compile,
                args.variants,
                args.quality_steps,
            ):
                print(
                    f"{spec} [{result.variant}]: {result.images_per_second:.1f} images/s end to end "
                    f"(x{result.ratio_vs_fp32} vs fp32), {result.step_only_images_per_second:.1f} step only "
                    f"(batch {result.batch_size}, {result.ms_per_step:.1f} ms/step, data share "
                    f"{result.data_share:.1%}, last loss {result.last_loss:.1f}, {result.device})"
                    + (
                        f"; val loss at step {result.quality_steps}: {result.val_loss:.1f} "
                        f"({result.val_loss_rel_diff_vs_fp32:+.3%} vs fp32)"
                        if result.val_loss is not None
                        else ""
                    ),
                    flush=True,
                )
                results.append(dataclasses.asdict(result))
    main_rank = not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0
    if torch.distributed.is_initialized():  # under torchrun: the first Trainer joined the group
        torch.distributed.destroy_process_group()
    if not main_rank:
        return 0
    report = {
        "benchmark": "train_throughput",
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min_at_start": load_at_start,
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),  # other work on the machine skews CPU figures
        "paper_v100_images_per_second": round(PAPER_V100_IMAGES_PER_SECOND, 1),
        "target_images_per_second": TARGET_IMAGES_PER_SECOND,
        "warmup_steps": warmup,
        "steps_per_round": steps,
        "rounds": rounds,
        "ratio_vs_fp32": ratio_table(results),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
