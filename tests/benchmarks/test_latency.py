"""pytest-benchmark suite: each served path through gRPC and in-process (ONNX Runtime), side by side per group.

Skipped by the default test run (pyproject's addopts has --benchmark-skip); `make bench` runs it with
--benchmark-only, and its last test runs the `sae bench` harness on the same server and writes its JSON (with the
gRPC / in-process ratio per path) to $SAE_BENCH_OUT (default out/bench/latency.json).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from sae.serving.bench import BenchConfig, format_table, quick, run_bench, write_report
from sae.serving.bench.grpc_runner import GrpcRunner
from sae.serving.bench.inprocess import InProcessRunner
from sae.serving.bench.served import describe_served
from sae.serving.bench.workloads import path_inputs

ROOT = Path(__file__).resolve().parents[2]
PATHS = ("encode", "decode", "reconstruct", "hybrid_sample")
BATCH_SIZES = (1, 64)
ROUNDS = {1: 30, 64: 8}  # bounded: the slowest case (reconstruct, batch 64) stays within a few seconds

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def bench_config(triton, exported_repo) -> BenchConfig:
    return BenchConfig(url=triton.grpc_url, metrics_url=triton.metrics_url, repo=exported_repo)


@pytest.fixture(scope="module")
def grpc(bench_config):
    with GrpcRunner(bench_config.url) as runner:
        yield runner


@pytest.fixture(scope="module")
def served(grpc, bench_config):
    return describe_served(grpc.client(0), bench_config)


@pytest.fixture(scope="module")
def in_process(bench_config) -> InProcessRunner:
    return InProcessRunner(bench_config.repo, bench_config)


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("transport", ["grpc", "in_process"])
def test_path_latency(benchmark, transport, path, batch_size, grpc, served, in_process):
    paths, shapes = served
    inputs = path_inputs(path, batch_size, shapes, seed=0, latents=in_process.bank)
    if transport == "grpc":
        call = grpc.calls(paths[path].model, inputs, 1)[0]
    else:
        call = in_process.call(path, inputs)
    benchmark.group = f"{path} batch {batch_size}"
    benchmark.extra_info.update(transport=transport, model=paths[path].model, batch_size=batch_size)
    outputs = benchmark.pedantic(call, rounds=ROUNDS[batch_size], iterations=1, warmup_rounds=1)
    image = outputs.get("IMAGE", outputs.get("RECONSTRUCTION"))
    latent = outputs.get("LATENT")
    assert (image if image is not None else latent).shape[0] == batch_size


def test_harness_grid_writes_latency_json(benchmark, bench_config):
    """The `sae bench` grid on the same server (quick unless SAE_BENCH_GRID=full); its wall time is the figure
    pytest-benchmark records, its JSON the figures that matter."""
    config = bench_config if os.environ.get("SAE_BENCH_GRID") == "full" else quick(bench_config)
    perf_analyzer = os.environ.get("SAE_PERF_ANALYZER")
    config = replace(config, perf_analyzer=Path(perf_analyzer) if perf_analyzer else None)
    report = benchmark.pedantic(run_bench, args=(config,), kwargs={"log": lambda line: None}, rounds=1, iterations=1)
    out = write_report(report, Path(os.environ.get("SAE_BENCH_OUT", ROOT / "out" / "bench" / "latency.json")))
    print(format_table(report))
    print(f"wrote {out}")
    benchmark.extra_info["p50_ratio_by_path"] = report["p50_ratio_by_path"]
    benchmark.extra_info["latency_json"] = str(out)
    assert set(report["p50_ratio_by_path"]) == set(PATHS)
    assert all(c["errors"] == 0 for c in report["grpc"]["cells"] + report["in_process"]["cells"])
