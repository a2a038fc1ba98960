"""The latency harness behind `sae bench`: gRPC latencies and throughput of the served paths beside the same ONNX
graphs run in-process, server-side times from Triton's Prometheus endpoint, and perf_analyzer where it exists.

Torch-free; onnxruntime is imported only when the in-process baseline is built, and tritonclient only when a module
that talks to a server is (the names below load on first use), so ``sae.serving.bench.timing``, ``config`` and
``device`` serve benchmarks/gpu_check/check.py on a machine without tritonclient.
"""

from importlib import import_module

_HOMES = {
    "PATHS": "config",
    "BenchConfig": "config",
    "CellLimits": "config",
    "quick": "config",
    "compute_ratios": "harness",
    "run_bench": "harness",
    "write_report": "harness",
    "format_table": "table",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'sae.serving.bench' has no attribute {name!r}")
    return getattr(import_module(f"sae.serving.bench.{_HOMES[name]}"), name)
