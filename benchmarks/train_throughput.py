"""Training throughput (images/s) of named configs, as JSON.

    python benchmarks/train_throughput.py --out out/bench/train_throughput.json            # CPU here
    python benchmarks/train_throughput.py --device cuda --out out/bench/train_throughput.json  # bf16 + channels_last

For each config: a few warm-up steps, then timed steps of the real trainer (``Trainer.train_step`` on the batches of
``Trainer.training_batches``: data reading included), and in the same run the same number of steps on one batch
already in memory (the model step alone), so the data pipeline's share shows as a ratio measured side by side.
Without ``--data`` a small procedural 3D-Shapes file is rendered into a temporary folder (the content does not change
the cost of a step). Under torchrun the figures are for the global batch, written by rank 0.

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

from sae.training.config import get_config  # noqa: E402
from sae.training.models.autoencoder import count_parameters  # noqa: E402
from sae.training.trainer import Trainer, TrainerOptions, with_batch_size  # noqa: E402

PAPER_V100_IMAGES_PER_SECOND = 100_000 * 128 / (3.5 * 3600)  # 100k steps of 128 in about 3.5 hours: ~1,016
TARGET_IMAGES_PER_SECOND = 10_000  # 100k steps of 128 in under 22 minutes
DEFAULT_CONFIGS = ("sae12-tiny", "sae12-shapes3d")


@dataclasses.dataclass
class ThroughputResult:
    config: str
    parameters: int
    batch_size: int
    device: str
    autocast: str  # "bf16" on CUDA, "none" on CPU
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(config: str, data: Path, device: str | None, warmup: int, steps: int, batch_size: int | None,
            compile: bool) -> tuple[ThroughputResult, Trainer]:
    cfg = with_batch_size(get_config(config), batch_size)
    with tempfile.TemporaryDirectory(prefix="sae-bench-") as run_dir:
        trainer = Trainer(cfg, data, Path(run_dir), device=device,
                          options=TrainerOptions(compile=compile, tensorboard=False))
        stream = trainer.training_batches()
        trainer.model.train()

        def run(n: int, batch=None) -> float:
            _sync(trainer.device)
            started = time.perf_counter()
            for _ in range(n):
                trainer.train_step(next(stream) if batch is None else batch)
                trainer.step += 1
            _sync(trainer.device)
            return time.perf_counter() - started

        run(warmup)
        seconds = run(steps)
        held = next(stream)
        step_only = run(steps, held)
        if hasattr(stream, "close"):
            stream.close()
    bs = cfg.train.batch_size
    ips, step_ips = steps * bs / seconds, steps * bs / step_only
    cuda = trainer.device.type == "cuda"
    return ThroughputResult(
        config=config, parameters=count_parameters(trainer.model, auxiliary=False), batch_size=bs,
        device=str(torch.cuda.get_device_name(trainer.device) if cuda else platform.processor() or "cpu"),
        autocast="bf16" if cuda else "none", channels_last=cuda, compile=compile,
        world_size=trainer.dist.world_size, warmup_steps=warmup, timed_steps=steps, seconds=round(seconds, 4),
        images_per_second=round(ips, 2), step_only_images_per_second=round(step_ips, 2),
        ms_per_step=round(1000 * seconds / steps, 3), data_share=round(1 - ips / step_ips, 4),
        fraction_of_target=round(ips / TARGET_IMAGES_PER_SECOND, 4) if cuda else None), trainer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS))
    p.add_argument("--data", type=Path, default=None, help="HDF5 data file (default: render a procedural one)")
    p.add_argument("--images", type=int, default=2048, help="images in the rendered file when --data is not given")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps (default: 2 on CPU, 20 on CUDA)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default: 5 on CPU, 100 on CUDA)")
    p.add_argument("--batch-size", type=int, default=None, help="override the configs' batch size")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step")
    p.add_argument("--out", type=Path, default=Path("out/bench/train_throughput.json"))
    args = p.parse_args(argv)
    cuda = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    warmup = args.warmup if args.warmup is not None else (20 if cuda else 2)
    steps = args.steps if args.steps is not None else (100 if cuda else 5)

    with tempfile.TemporaryDirectory(prefix="sae-bench-data-") as tmp:
        data = args.data
        if data is None:
            from sae.training.data.procedural import write_shapes3d_h5

            data = Path(tmp) / "shapes3d.h5"
            write_shapes3d_h5(data, n=args.images, seed=0)
        results, main_rank = [], True
        for name in args.configs:
            result, trainer = measure(name, data, args.device, warmup, steps, args.batch_size, args.compile)
            main_rank = trainer.dist.is_main
            if main_rank:
                print(f"{name}: {result.images_per_second:.1f} images/s end to end, "
                      f"{result.step_only_images_per_second:.1f} step only (batch {result.batch_size}, "
                      f"{result.ms_per_step:.1f} ms/step, {result.device})", flush=True)
            results.append(dataclasses.asdict(result))
            trainer.data.close()
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
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),  # other work on the machine skews CPU figures
        "paper_v100_images_per_second": round(PAPER_V100_IMAGES_PER_SECOND, 1),
        "target_images_per_second": TARGET_IMAGES_PER_SECOND,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
