"""The latency harness behind `sae bench`: gRPC latencies and throughput of the served paths beside the same ONNX
graphs run in-process, server-side times from Triton's Prometheus endpoint, and perf_analyzer where it exists.

Torch-free; onnxruntime is imported only when the in-process baseline is built.
"""
from clients.bench.config import PATHS, BenchConfig, CellLimits, quick
from clients.bench.harness import compute_ratios, run_bench, write_report
from clients.bench.table import format_table

__all__ = ["PATHS", "BenchConfig", "CellLimits", "compute_ratios", "format_table", "quick", "run_bench",
           "write_report"]
