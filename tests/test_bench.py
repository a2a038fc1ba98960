"""The latency harness (`sae bench`): its pieces on known inputs, then a tiny grid against a real server."""

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sae.serving.bench import BenchConfig, CellLimits, compute_ratios, format_table, quick, run_bench
from sae.serving.bench.config import parse_int_list
from sae.serving.bench.perf_analyzer import find_perf_analyzer, parse_csv, predicted_seconds, run_grid
from sae.serving.bench.prometheus import parse_counters, server_times
from sae.serving.bench.timing import run_cell, run_paired, summarize

PATHS = ("encode", "decode", "reconstruct", "hybrid_sample")

# Trimmed from a real Triton 2.51 /metrics page (two failure reasons, to check they are summed).
METRICS_TEXT = """\
# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="reconstruct",version="1"} 3
nv_inference_request_success{model="encode",version="1"} 3
# HELP nv_inference_request_failure Number of failed inference requests, all batch sizes
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="encode",reason="BACKEND",version="1"} 1
nv_inference_request_failure{model="encode",reason="REJECTED",version="1"} 2
# HELP nv_inference_count Number of inferences performed (does not include cached requests)
# TYPE nv_inference_count counter
nv_inference_count{model="encode",version="1"} 6
# HELP nv_inference_exec_count Number of model executions performed (does not include cached requests)
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{model="encode",version="1"} 2
# HELP nv_inference_queue_duration_us Cumulative inference queuing duration in microseconds
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{model="encode",version="1"} 210
# HELP nv_inference_compute_infer_duration_us Cumulative compute inference duration in microseconds
# TYPE nv_inference_compute_infer_duration_us counter
nv_inference_compute_infer_duration_us{model="encode",version="1"} 124817
# HELP nv_gpu_utilization GPU utilization rate [0.0 - 1.0)
# TYPE nv_gpu_utilization gauge
nv_gpu_utilization{gpu_uuid="x"} 0.5
"""

# A real perf_analyzer 2.51 `-f` report (reconstruct, batch 8, concurrency 4, on this machine).
PERF_ANALYZER_CSV = (
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
    "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency\n"
    "4,149.109,19,69946,2,183,127462,4379,3,191698,294036,320426,339921\n"
)


# ------------------------------------------------------------------------------------------------ pieces


def test_counters_are_summed_per_model_and_deltas_become_per_request_means():
    before = parse_counters(METRICS_TEXT)
    assert before["encode"]["failures"] == 3.0 and before["encode"]["requests"] == 3.0
    assert "gpu" not in str(before.keys())
    after = {m: dict(v) for m, v in before.items()}
    after["encode"].update(
        requests=5.0, executions=3.0, inferences=10.0, queue_us=210.0 + 3000.0, compute_infer_us=124817.0 + 40000.0
    )
    times = server_times(before, after, ["encode", "decode"])
    assert times["encode"]["requests"] == 2 and times["encode"]["failures"] == 0
    assert times["encode"]["queue_ms"] == pytest.approx(1.5)
    assert times["encode"]["compute_infer_ms"] == pytest.approx(20)
    assert times["encode"]["mean_batch"] == pytest.approx(4.0)
    assert times["decode"]["requests"] == 0 and times["decode"]["queue_ms"] is None  # a model never called


def test_percentiles_and_throughput_of_a_cell():
    stats = summarize([i / 1000 for i in range(1, 101)], wall_s=2.0, batch_size=8, concurrency=1)
    assert stats.p50_ms == pytest.approx(50.5) and stats.p99_ms == pytest.approx(99.01)
    assert stats.min_ms == pytest.approx(1.0) and stats.max_ms == pytest.approx(100.0)
    assert stats.requests_per_s == pytest.approx(50.0) and stats.items_per_s == pytest.approx(400.0)
    empty = summarize([], wall_s=0.0, batch_size=1, concurrency=1, errors=1, first_error="boom")
    assert empty.p50_ms is None and empty.items_per_s == 0.0 and empty.first_error == "boom"


def test_a_cell_stops_at_its_request_bound_and_runs_its_workers_in_parallel():
    in_flight, peak, lock = [0], [0], threading.Lock()

    def call():
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.01)
        with lock:
            in_flight[0] -= 1

    stats = run_cell([call] * 4, batch_size=2, limits=CellLimits(max_seconds=10, max_requests=12, warmup_requests=0))
    assert stats.requests == 12 and stats.errors == 0 and stats.concurrency == 4
    assert peak[0] == 4
    assert stats.p50_ms >= 10.0  # peak == 4 above shows the requests overlapped: no wall-clock bound needed


def test_a_cell_stops_at_its_time_bound_and_reports_errors():
    limits = CellLimits(max_seconds=0.1, max_requests=10_000, warmup_requests=0)
    t0 = time.perf_counter()
    stats = run_cell([lambda: time.sleep(0.02)], batch_size=1, limits=limits)
    # the time bound, not the 10,000-request bound, ended the cell (a loaded machine may fit fewer requests in)
    assert 1 <= stats.requests <= 6 and time.perf_counter() - t0 < 10

    def failing():
        raise RuntimeError("decode: LATENT has the wrong shape")

    bad = run_cell([failing, failing], batch_size=1, limits=limits)
    assert bad.requests == 0 and bad.errors == 2 and "LATENT has the wrong shape" in bad.first_error


def test_paired_cells_alternate_their_two_calls():
    order = []
    a, b = run_paired(
        lambda: order.append("a"),
        lambda: order.append("b"),
        batch_size=1,
        limits=CellLimits(max_seconds=5, max_requests=5),
    )
    assert order == ["a", "b"] * 5 and a.requests == b.requests == 5


def test_ratios_pair_each_in_process_cell_with_its_interleaved_grpc_cell():
    base = {"path": "decode", "batch_size": 8, "p50_ms": 2.0, "items_per_s": 4000.0}
    grpc = [
        {
            "path": "decode",
            "batch_size": 8,
            "concurrency": 1,
            "p50_ms": 5.0,
            "items_per_s": 1600.0,
            "interleaved_with_in_process": True,
        },
        {"path": "decode", "batch_size": 8, "concurrency": 4, "p50_ms": 9.0, "items_per_s": 3000.0},
        {"path": "encode", "batch_size": 8, "concurrency": 1, "p50_ms": 1.0, "items_per_s": 1.0},
    ]
    (ratio,) = compute_ratios(grpc, [base])["decode"]
    assert ratio["grpc_over_in_process_p50"] == pytest.approx(2.5) and ratio["interleaved"]
    assert ratio["grpc_best_concurrency"] == 4 and ratio["grpc_over_in_process_throughput"] == pytest.approx(0.75)


def test_perf_analyzer_csv_is_read_in_milliseconds():
    row = parse_csv(PERF_ANALYZER_CSV)
    assert row["concurrency"] == 4 and row["items_per_s"] == pytest.approx(149.109)
    assert row["p50_ms"] == pytest.approx(191.698) and row["p99_ms"] == pytest.approx(339.921)
    assert row["server_compute_infer_ms"] == pytest.approx(127.462)
    with pytest.raises(ValueError, match="no measurement row"):
        parse_csv(PERF_ANALYZER_CSV.splitlines()[0])


def test_a_missing_perf_analyzer_is_reported_not_raised(tmp_path):
    binary, why = find_perf_analyzer(tmp_path / "perf_analyzer")
    assert binary is None and "perf_analyzer" in why and "not an executable" in why


def test_perf_analyzer_runs_share_one_budget_and_cells_that_cannot_fit_are_left_out(tmp_path):
    limits = CellLimits(max_requests=100)
    assert predicted_seconds(requests_per_s=4.0, concurrency=1, limits=limits) == pytest.approx(10.0)  # 4 x 10 / 4
    assert predicted_seconds(requests_per_s=0.0, concurrency=1, limits=limits) == float("inf")
    cells = [
        {"path": "decode", "model": "decode", "batch_size": 256, "concurrency": 4, "requests_per_s": 1.0},
        {"path": "decode", "model": "decode", "batch_size": 1, "concurrency": 1, "requests_per_s": 0.5},
    ]
    never_run = tmp_path / "perf_analyzer"  # every prediction exceeds the budget: the binary is never started
    out = run_grid(
        never_run, "127.0.0.1:1", cells, limits, budget_s=5.0, fixed_inputs=lambda c: None, log=lambda line: None
    )
    assert [(c["batch_size"], c["concurrency"]) for c in out] == [(1, 1), (256, 4)]  # cheapest first
    assert all("perf_analyzer budget" in c["skipped"] for c in out)
    assert "predicted 80 s" in out[0]["skipped"]


def test_bad_grids_are_refused_with_the_argument_named():
    with pytest.raises(ValueError, match="--batch-sizes"):
        parse_int_list("1,eight", "--batch-sizes")
    with pytest.raises(ValueError, match="batch sizes"):
        BenchConfig(url="127.0.0.1:1", batch_sizes=(0, 8))
    with pytest.raises(ValueError, match="paths"):
        BenchConfig(url="127.0.0.1:1", paths=("encode", "traverse_all"))
    with pytest.raises(ValueError, match="max_requests"):
        CellLimits(max_requests=0)
    cfg = quick(BenchConfig(url="127.0.0.1:1", model="big"))
    assert cfg.batch_sizes == (1, 8) and cfg.limits.max_seconds == 0.5 and cfg.model_name("encode") == "big_encode"


# ------------------------------------------------------------------------------------------------ against a server


@pytest.mark.server
def test_harness_measures_every_path_beside_in_process_with_server_times(triton, exported_repo):
    config = BenchConfig(
        url=triton.grpc_url,
        metrics_url=triton.metrics_url,
        repo=exported_repo,
        batch_sizes=(1, 2, 300),
        concurrency=(1, 2),
        use_perf_analyzer=False,
        limits=CellLimits(max_seconds=0.3, max_requests=4, warmup_requests=1, max_in_flight_items=3),
    )
    lines = []
    report = run_bench(config, log=lines.append)

    cells = report["grpc"]["cells"]
    measured = {(p, 1, 1) for p in PATHS} | {(p, 1, 2) for p in PATHS} | {(p, 2, 1) for p in PATHS}
    assert {(c["path"], c["batch_size"], c["concurrency"]) for c in cells} == measured
    assert all(c["errors"] == 0 and c["requests"] >= 1 and c["p50_ms"] > 0 for c in cells)
    skipped = {(s["path"], s["batch_size"], s.get("concurrency")) for s in report["skipped"]}
    assert skipped == {(p, 300, None) for p in PATHS} | {(p, 2, 2) for p in PATHS}  # over the limit; 2 x 2 > 3
    for cell in cells:  # Triton's counters moved by exactly this cell's requests, in every step of the path
        server = cell["server"]
        served = report["models"][cell["path"]]
        assert set(server) == {cell["model"], *served["components"], *filter(None, [served["decodes_through"]])}
        for model, times in server.items():
            assert times["requests"] == cell["requests"], (cell["path"], cell["concurrency"], model, server)
            assert times["queue_ms"] >= 0 and times["compute_infer_ms"] > 0, (model, times)
    assert report["models"]["reconstruct"]["components"] == []  # one model each: no ensemble steps
    assert report["models"]["hybrid_sample"]["components"] == []
    assert report["models"]["hybrid_sample"]["decodes_through"] == "decode"  # BLS: decode's counters are read too
    assert all(
        cell["server"]["decode"]["executions_per_request"] <= 1 for cell in cells if cell["path"] == "hybrid_sample"
    )

    assert set(report["p50_ratio_by_path"]) == set(PATHS)
    for path in PATHS:
        assert [r["batch_size"] for r in report["ratios"][path]] == [1, 2]
        assert all(r["interleaved"] and r["grpc_over_in_process_p50"] > 0 for r in report["ratios"][path])
    assert report["perf_analyzer"] == {"available": False, "reason": "turned off (--no-perf-analyzer)"}
    table = format_table(report)
    assert all(path in table for path in PATHS) and "in-process" in table and "skipped encode batch 300" in table
    assert "skipped decode batch 2 concurrency 2: 2 x 2 items in flight > max_in_flight_items 3" in table
    assert json.loads(json.dumps(report)) == report  # JSON-ready as it is


@pytest.mark.server
def test_in_process_does_the_servers_work(triton, exported_repo):
    """The baseline is only a baseline if it computes what the server computes, from the same files."""
    from sae.serving.bench.grpc_runner import GrpcRunner
    from sae.serving.bench.inprocess import InProcessRunner
    from sae.serving.bench.served import describe_served
    from sae.serving.bench.workloads import path_inputs

    config = BenchConfig(url=triton.grpc_url, repo=exported_repo)
    local = InProcessRunner(exported_repo, config)
    with GrpcRunner(triton.grpc_url) as grpc:
        served, shapes = describe_served(grpc.client(0), config)
        assert (shapes.height, shapes.width, shapes.latent_dim) == (64, 64, 12)
        for path in PATHS:
            inputs = path_inputs(path, 3, shapes, seed=7, latents=local.bank)
            remote = grpc.calls(served[path].model, inputs, 1)[0]()
            mine = local.call(path, inputs)()
            for name, array in mine.items():
                assert remote[name].shape == array.shape, (path, name)
                assert np.allclose(remote[name], array, atol=1e-4), (path, name)


@pytest.mark.server
def test_without_a_repository_the_baseline_is_skipped_and_a_wrong_name_is_named(triton):
    config = BenchConfig(
        url=triton.grpc_url,
        metrics_url=None,
        paths=("decode",),
        batch_sizes=(2,),
        concurrency=(1,),
        use_perf_analyzer=False,
        limits=CellLimits(max_seconds=0.2, max_requests=2, warmup_requests=0),
    )
    report = run_bench(config, log=lambda line: None)
    assert "--repo" in report["in_process"]["skipped"] and report["ratios"] == {}
    assert report["grpc"]["cells"][0]["requests"] == 2 and report["grpc"]["cells"][0]["server"] is None
    assert report["grpc"]["server_times_error"] == "no metrics URL given"
    assert "in-process baseline skipped: no --repo given" in format_table(report)
    with pytest.raises(ValueError, match="model 'nosuch_decode': no config from the server .*unknown model"):
        run_bench(BenchConfig(url=triton.grpc_url, model="nosuch", paths=("decode",)), log=lambda line: None)


@pytest.mark.server
def test_perf_analyzer_measures_beside_the_harness_where_its_binary_exists(triton):
    binary, why = find_perf_analyzer(
        Path(os.environ["SAE_PERF_ANALYZER"]) if os.environ.get("SAE_PERF_ANALYZER") else None
    )
    if binary is None:  # optional by design (issue 5): the harness says so in its JSON, as checked above
        pytest.skip(why)
    config = BenchConfig(
        url=triton.grpc_url,
        paths=("decode", "hybrid_sample"),
        batch_sizes=(2,),
        concurrency=(1,),
        perf_analyzer=binary,
        perf_analyzer_budget_s=60,
        limits=CellLimits(max_seconds=0.2, max_requests=5, warmup_requests=1),
    )
    section = run_bench(config, log=lambda line: None)["perf_analyzer"]
    assert section["available"] and section["version"]
    assert {c["path"] for c in section["cells"]} == {"decode", "hybrid_sample"}
    for cell in section["cells"]:
        assert "error" not in cell and "skipped" not in cell, cell
        assert cell["p50_ms"] > 0 and cell["items_per_s"] > 0 and cell["concurrency"] == 1


@pytest.mark.server
def test_sae_bench_starts_its_own_server_and_writes_json(exported_repo, tmp_path, capsys):
    from sae.cli import main

    out = tmp_path / "bench" / "latency.json"
    code = main(
        [
            "bench",
            "--repo",
            str(exported_repo),
            "--out",
            str(out),
            "--paths",
            "decode,hybrid_sample",
            "--batch-sizes",
            "4",
            "--concurrency",
            "1",
            "--max-requests",
            "3",
            "--warmup",
            "1",
            "--no-perf-analyzer",
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    captured = capsys.readouterr()
    assert json.loads(captured.out) == report, "--json prints the report the file holds"
    assert set(report["p50_ratio_by_path"]) == {"decode", "hybrid_sample"}
    assert report["device_info"]["device"] == "cpu" and report["device_info"]["gpu"] is None
    # every cell's own served model answered its 3 requests (hybrid_sample is one model, not decode behind a sampler)
    assert all(c["server"][c["model"]]["requests"] == 3 for c in report["grpc"]["cells"])
    assert (out.parent / "tritonserver.log").is_file()
    assert "gRPC/in-proc p50" in captured.err and f"wrote {out}" in captured.err, "with --json the table is on stderr"


# ------------------------------------------------------------------------------------------------ targets, compare


def _bench_report(encode_b1=(1.4, 0.5), hybrid_b1=(2.0, 1.0), b64=1.02, encode_c8=3600.0, hybrid_c8=1400.0):
    """A report holding just what the targets read: interleaved ratios and concurrency-8 cells."""

    def ratio(batch, grpc_ms, local_ms):
        return {
            "batch_size": batch,
            "grpc_concurrency": 1,
            "grpc_p50_ms": grpc_ms,
            "in_process_p50_ms": local_ms,
            "grpc_over_in_process_p50": grpc_ms / local_ms,
        }

    ratios = {path: [ratio(64, 10.0 * b64, 10.0)] for path in PATHS}
    ratios["encode"].insert(0, ratio(1, *encode_b1))
    ratios["decode"].insert(0, ratio(1, 2.0, 1.5))
    ratios["hybrid_sample"].insert(0, ratio(1, *hybrid_b1))
    cells = [
        {"path": "encode", "batch_size": 64, "concurrency": 8, "requests": 10, "items_per_s": encode_c8, "p50_ms": 5.0},
        {
            "path": "hybrid_sample",
            "batch_size": 64,
            "concurrency": 8,
            "requests": 10,
            "items_per_s": hybrid_c8,
            "p50_ms": 9.0,
        },
    ]
    return {"ratios": ratios, "grpc": {"cells": cells}}


def test_serving_targets_are_read_from_the_interleaved_ratios_and_the_concurrency_8_cells():
    from sae.serving.bench.targets import judge

    targets = {t["target"]: t for t in judge(_bench_report())}
    assert targets["encode_b1_added_ms"]["value"] == pytest.approx(0.9)
    assert targets["encode_b1_added_ms"]["met"] is False
    assert targets["decode_b1_added_ms"]["value"] == pytest.approx(0.5) and targets["decode_b1_added_ms"]["met"]
    assert targets["hybrid_sample_b1_p50_ratio"]["value"] == pytest.approx(2.0)
    assert targets["hybrid_sample_b1_p50_ratio"]["met"] is False
    assert all(targets[f"{p}_b64_c1_p50_ratio"]["met"] for p in PATHS)
    assert targets["encode_b64_c8_items_per_s"]["met"] and targets["hybrid_sample_b64_c8_items_per_s"]["met"] is False
    empty = judge({"ratios": {}, "grpc": {"cells": []}})
    assert all(t["value"] is None and t["met"] is None for t in empty)  # not measured is not "not met"


def test_a_comparison_table_puts_the_repositories_side_by_side_with_each_target_judged():
    from sae.serving.bench.compare import markdown, merge
    from sae.serving.bench.targets import judge

    def per_path(path, grpc_ms):
        cell = {
            "path": path,
            "model": path,
            "batch_size": 1,
            "concurrency": 1,
            "p50_ms": grpc_ms,
            "items_per_s": 1000 / grpc_ms,
            "requests": 5,
            "errors": 0,
            "interleaved_with_in_process": True,
        }
        base = {"path": path, "batch_size": 1, "concurrency": 1, "p50_ms": 1.0, "items_per_s": 1000.0}
        return {
            "schema": "s",
            "created": "c",
            "url": "u",
            "metrics_url": None,
            "model_prefix": "",
            "host": {},
            "grid": {"paths": [path]},
            "models": {path: {}},
            "in_process": {"cells": [base]},
            "grpc": {"cells": [cell], "server_times_error": None},
            "skipped": [],
            "wall_s": 1.0,
        }

    before = merge([per_path("encode", 2.0), per_path("decode", 3.0)])
    after = merge([per_path("encode", 1.5), per_path("decode", 1.4)])
    assert before["grid"]["paths"] == ["encode", "decode"] and len(before["grpc"]["cells"]) == 2
    assert before["ratios"]["decode"][0]["grpc_over_in_process_p50"] == pytest.approx(3.0)
    result = {
        "labels": ["before", "after"],
        "reports": {"before": before, "after": after},
        "targets": {"before": judge(before), "after": judge(after)},
        "load_average_end": [1.0, 2.0, 3.0],
        "wall_s": 2.0,
    }
    table = markdown(result)
    assert "| encode | 1 | 1 | 2.00 | 2.00x | 1.00 | 500 | 1.50 | 1.50x | 0.50 | 667 |" in table
    assert "| decode batch 1 p50 added by serving (ms) | <= 0.6 | 2.000 (not met) | 0.400 (met) |" in table
    assert "not measured" in table  # hybrid_sample was not in this grid
    with pytest.raises(ValueError, match="at least two"):
        from sae.serving.bench.compare import run_compare

        run_compare([])


def test_device_info_is_null_on_the_cpu_and_a_wrong_device_is_refused_by_name(monkeypatch):
    from sae.serving.bench import device

    cpu = device.device_info("cpu")
    assert cpu["device"] == "cpu"
    assert all(cpu[k] is None for k in ("gpu", "gpu_driver", "gpu_memory_mib", "gpu_count", "torch", "onnxruntime"))
    with pytest.raises(ValueError, match="--device 'tpu'"):
        BenchConfig(url="127.0.0.1:1", device="tpu")

    class Listing:  # what `nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,...` prints
        returncode = 0
        stdout = "NVIDIA H200, 570.124.06, 143771\nNVIDIA H200, 570.124.06, 143771\n"

    monkeypatch.setattr(device.subprocess, "run", lambda *a, **k: Listing())
    cuda = device.device_info("cuda")
    assert (cuda["gpu"], cuda["gpu_driver"], cuda["gpu_memory_mib"], cuda["gpu_count"]) == (
        "NVIDIA H200",
        "570.124.06",
        143771,
        2,
    )
    assert cuda["torch"] == device.package_version("torch") and cuda["torch"] is not None
    assert cuda["onnxruntime"] == device.package_version("onnxruntime")


@pytest.mark.server
def test_compare_repos_serves_two_repositories_and_writes_json_and_a_judged_table(exported_repo, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "compare.json"
    done = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve().parents[1] / "benchmarks" / "compare_repos.py"),
            "--repo",
            str(exported_repo),
            "--repo",
            str(exported_repo),
            "--label",
            "a",
            "--label",
            "b",
            "--batch-sizes",
            "1",
            "--concurrency",
            "1",
            "--max-requests",
            "3",
            "--warmup",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["labels"] == ["a", "b"]
    for label in ("a", "b"):
        report = result["reports"][label]
        assert report["grid"]["paths"] == list(PATHS)
        assert {(c["path"], c["batch_size"], c["concurrency"]) for c in report["grpc"]["cells"]} == {
            (p, 1, 1) for p in PATHS
        }
        assert all(c["errors"] == 0 and c["requests"] == 3 for c in report["grpc"]["cells"])
        targets = {t["target"]: t for t in result["targets"][label]}
        assert targets["encode_b1_added_ms"]["value"] is not None and targets["encode_b1_added_ms"]["met"] is not None
        assert targets["encode_b64_c8_items_per_s"]["met"] is None  # batch 64 was not in this grid
    table = out.with_suffix(".md").read_text()
    assert "| a p50 ms | a ratio |" in table and "| b p50 ms |" in table and "not measured" in table


def test_hop_breakdown_turns_statistics_deltas_into_per_request_milliseconds():
    from benchmarks.hop_breakdown import per_request_ms, timed_pair

    before = {
        "queue": (10, 1_000_000),
        "compute_input": (10, 0),
        "compute_infer": (10, 5_000_000),
        "compute_output": (10, 0),
        "success": (10, 9_000_000),
    }
    after = {
        "queue": (14, 1_200_000),
        "compute_input": (14, 40_000),
        "compute_infer": (14, 7_000_000),
        "compute_output": (10, 0),
        "success": (14, 12_000_000),
    }
    ms = per_request_ms(before, after)
    assert ms["queue_ms"] == pytest.approx(0.05) and ms["compute_infer_ms"] == pytest.approx(0.5)
    assert ms["request_ms"] == pytest.approx(0.75) and ms["compute_input_ms"] == pytest.approx(0.01)
    assert np.isnan(ms["compute_output_ms"])  # no request counted: unknown, not zero
    order = []
    remote, local = timed_pair(lambda: order.append("r"), lambda: order.append("l"), 3)
    assert order == ["r", "l"] * 3 and len(remote) == len(local) == 3
