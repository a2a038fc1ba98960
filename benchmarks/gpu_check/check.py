"""One GPU check in one run: training throughput, in-process decode and hybrid-sample latency, the served GPU path.

    python -m benchmarks.gpu_check --out gpu.json             # on one H100/H200: everything, within about 8 minutes
    python -m benchmarks.gpu_check --cpu-tiny --out cpu.json  # the same code on the CPU, tiny and fast (CI)

(from the repository's root: ``benchmarks`` is a namespace package there, and this one of its packages)

Sections (each records its own error or skip reason instead of stopping the run; a time budget skips what would
not fit):

* ``train``: images/s of ``sae12-shapes3d`` at batch 128 with the real trainer (bf16 autocast and channels_last on
  CUDA), eager and ``torch.compile``d (``benchmarks/train_throughput.py``'s measure).
* ``in_process``: decode (latents -> images) and hybrid_sample (the served sampler's numpy draw, then decode) at
  batch 1, 64 and 256, host arrays in and out, in ``eager``, ``compiled`` and ``cuda_graph`` modes (the runner of
  ``repository/templates/torch_model.py``). The weights are untrained: latency does not depend on them.
* ``served``: the same two paths through the bundled Triton server, whose decode is the TorchScript graph run by
  PyTorch inside the python backend (``torch_model.py``) on the GPU, in a small repository built here (decode,
  sampler, hybrid_sample); gRPC on 127.0.0.1 at concurrency 1 and at ``served_concurrency``.

It writes one JSON file and a markdown table beside it (``OUT`` with ``.md``) that states each target met or not.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.gpu_check.in_process import in_process_section, synthetic_bank, train_section, untrained_model
from benchmarks.gpu_check.plan import MODES, PATHS, CheckPlan, Clock, cpu_tiny_plan, full_plan
from benchmarks.gpu_check.report import TARGETS, judge_targets, markdown, target_values
from benchmarks.gpu_check.served import SERVED_NAME, build_served_repository, served_blocker, served_section
from sae.serving.bench.device import device_info

__all__ = [
    "SCHEMA",
    "run_check",
    "main",
    # defined in the modules imported above; importable from here too
    "MODES",
    "PATHS",
    "CheckPlan",
    "Clock",
    "cpu_tiny_plan",
    "full_plan",
    "TARGETS",
    "judge_targets",
    "markdown",
    "target_values",
    "SERVED_NAME",
    "build_served_repository",
    "served_blocker",
    "served_section",
    "in_process_section",
    "synthetic_bank",
    "train_section",
    "untrained_model",
]

SCHEMA = "sae-gpu-check/1"


def run_check(plan: CheckPlan, out: Path, mode: str) -> dict:
    from sae.core.datasets.procedural import write_shapes3d_h5
    from sae.serving.bench.device import package_version

    clock = Clock(plan.budget_s)
    report: dict = {
        "schema": SCHEMA,
        "mode": mode,
        "plan": dataclasses.asdict(plan),
        "device_info": device_info(plan.device),
        "versions": {
            "torch": torch.__version__,
            "numpy": np.__version__,
            "onnxruntime": package_version("onnxruntime-gpu", "onnxruntime"),
            "python": sys.version.split()[0],
        },
    }
    if plan.cuda and not torch.cuda.is_available():
        raise SystemExit("gpu_check: torch sees no CUDA device; use --cpu-tiny on a machine without a GPU")
    if plan.cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    with tempfile.TemporaryDirectory(prefix="sae-gpu-check-") as tmp:
        work = Path(tmp)
        data = work / "shapes3d.h5"
        write_shapes3d_h5(data, n=plan.train_images, seed=0)
        report["train"] = train_section(plan, clock, data)
        model = untrained_model(plan.model_config, plan.device)
        bank = synthetic_bank(model, plan.model_config)
        report["in_process"] = in_process_section(plan, clock, model, bank)
        report["served"] = served_section(plan, clock, model, bank, work)
    report["wall_s"] = clock.elapsed()
    report["targets"] = judge_targets(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("out/bench/gpu_check.json"), help="JSON; the table goes to .md")
    p.add_argument("--cpu-tiny", action="store_true", help="sae12-tiny on the CPU, few steps, small batches (CI)")
    p.add_argument("--budget-s", type=float, default=None, help="seconds for the whole run (default 450; 120 tiny)")
    p.add_argument("--no-served", action="store_true", help="skip the Triton section")
    args = p.parse_args(argv)
    plan = cpu_tiny_plan() if args.cpu_tiny else full_plan()
    if args.budget_s is not None:
        if args.budget_s <= 0:
            p.error(f"--budget-s must be positive, got {args.budget_s}")
        plan = dataclasses.replace(plan, budget_s=args.budget_s)
    if args.no_served:
        plan = dataclasses.replace(plan, served=False)
    report = run_check(plan, args.out, "cpu-tiny" if args.cpu_tiny else "full")
    print(markdown(report))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
