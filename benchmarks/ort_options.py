"""ONNX Runtime settings and output checks of the served encode/decode, each beside the served default in-process.

    python benchmarks/ort_options.py --repo model_repository [--batch-sizes 1,64]

Per model and batch size, the variants run alternately call by call (so all see the same load) on the exported
``model.onnx`` with one intra-op thread, as a served CPU instance runs it: ``run(None)`` (the default), ``run`` with
the output named, denormals as zero, and IO binding; then the finiteness check of the output, over the whole batch.
Prints medians in milliseconds as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def session(path: Path, **entries: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    for key, value in entries.items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def medians_ms(variants: dict, calls: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(calls):
        for name, call in variants.items():
            t0 = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t0)
    return {name: round(float(np.median(t)) * 1e3, 4) for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repo", type=Path, default=Path("model_repository"))
    p.add_argument("--batch-sizes", default="1,64")
    p.add_argument("--calls", type=int, default=200, help="per variant at batch 1 (a tenth above)")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    inputs = {
        "encode": lambda b: rng.integers(0, 256, (b, 64, 64, 3), dtype=np.uint8),
        "decode": lambda b: rng.standard_normal((b, 12)).astype(np.float32),
    }
    for model, make in inputs.items():
        path = args.repo / model / "1" / "model.onnx"
        if not path.is_file():
            p.error(f"--repo {args.repo}: {path} is missing")
        base = session(path)
        denormals = session(path, **{"session.set_denormal_as_zero": "1"})
        name, out = base.get_inputs()[0].name, base.get_outputs()[0].name
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            x = make(batch)
            binding = base.io_binding()

            def io_bound(x=x, binding=binding):
                binding.bind_cpu_input(name, x)
                binding.bind_output(out)
                base.run_with_iobinding(binding)
                return binding.copy_outputs_to_cpu()[0]

            calls = args.calls if batch == 1 else max(args.calls // 10, 5)
            runs = medians_ms(
                {
                    "run": lambda x=x: base.run(None, {name: x}),
                    "run_named": lambda x=x: base.run([out], {name: x}),
                    "denormal_as_zero": lambda x=x: denormals.run(None, {name: x}),
                    "io_binding": io_bound,
                },
                calls,
            )
            y = base.run(None, {name: x})[0]
            check = medians_ms({"isfinite_all": lambda y=y: np.isfinite(y).all()}, args.calls)
            print(json.dumps({"model": model, "batch_size": batch, "run_ms": runs, "check_ms": check}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
