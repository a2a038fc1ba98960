"""Eager PyTorch vs the exported runtimes (TorchScript, ONNX Runtime fp32 and fp16) on the same inputs.

An output passes when every element satisfies ``|runtime - eager| <= atol + rtol * |eager|`` (numpy's allclose
rule). The tolerances are set a decade or more above the differences measured on the tiny models (README, "Export"):
fp32 runtimes differ from eager by float rounding only; the fp16 graph by fp16 rounding of weights and activations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sae.export.graphs import GraphSpec, graph_input

RUNTIMES = ("torchscript", "onnx", "onnx_fp16")


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float


TOLERANCES = {
    "torchscript": Tolerance(atol=1e-5, rtol=1e-5),  # the same kernels as eager: measured 0
    "onnx": Tolerance(atol=1e-4, rtol=1e-4),  # ONNX Runtime's fp32 kernels: measured <= 3e-6
    "onnx_fp16": Tolerance(atol=3e-2, rtol=3e-2),  # fp16 weights and activations: measured <= 3e-3
}


@dataclass(frozen=True)
class ParityResult:
    graph: str  # encode / decode
    runtime: str  # one of RUNTIMES
    batch_size: int
    max_abs_diff: float
    tolerance: Tolerance
    ok: bool  # every element within atol + rtol * |eager|

    def __str__(self) -> str:
        return (
            f"{self.graph} {self.runtime} batch {self.batch_size}: max |diff| {self.max_abs_diff:.2e} "
            f"(atol {self.tolerance.atol:g}, rtol {self.tolerance.rtol:g}) {'ok' if self.ok else 'FAILED'}"
        )


class Runner:
    """One exported file, called like the eager module: torch tensor in, numpy array out."""

    def __init__(self, runtime: str, path: Path):
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
        self.runtime = runtime
        if runtime == "torchscript":
            from sae.export.torchscript import load_torchscript

            self.module, self.torch_version = load_torchscript(path)
        else:
            import onnxruntime as ort

            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        if self.runtime == "torchscript":
            with torch.no_grad():
                return self.module(x).numpy()
        return self.session.run(None, {self.input_name: x.numpy()})[0]


def compare(
    graph: str,
    spec: GraphSpec,
    files: dict[str, Path],
    batch_sizes=(1, 7),
    tolerances: dict[str, Tolerance] = TOLERANCES,
) -> list[ParityResult]:
    """Each runtime's output against eager, on fresh inputs of each batch size (seeded by the batch size)."""
    runners = {runtime: Runner(runtime, path) for runtime, path in files.items()}
    results = []
    for b in batch_sizes:
        x = graph_input(spec, b, seed=b)
        with torch.no_grad():
            expected = spec.module(x).numpy()
        for runtime, run in runners.items():
            got = run(x)
            if got.shape != expected.shape:
                raise ValueError(f"{graph} {runtime} batch {b}: shape {got.shape}, eager gives {expected.shape}")
            tol = tolerances[runtime]
            diff = np.abs(got.astype(np.float64) - expected)
            within = bool(np.all(diff <= tol.atol + tol.rtol * np.abs(expected)))
            results.append(ParityResult(graph, runtime, b, float(diff.max()), tol, within))
    return results
