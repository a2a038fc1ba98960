"""The long load test (`make bench`): 32 clients for 60 s (``SAE_LOAD_SECONDS``) mixing every served model on
loopback; writes JSON (``SAE_LOAD_OUT``; ``make bench-load`` sets out/bench/load.json) with p50/p99, Triton's
executions per request of each model, errors and the server's resident memory over time and per minute."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers.reliability import run_load

from sae.core.atomic import write_text_atomic

# Minutes of load: out of the default run (`make test`), run by `make bench-load`, which sets SAE_LOAD_OUT.
pytestmark = [
    pytest.mark.server,
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("SAE_LOAD_OUT"), reason="run by make bench-load"),
]

CLIENTS, REQUESTS = 32, 1_000_000
TIME_CAP_S = float(os.environ.get("SAE_LOAD_SECONDS") or 60.0)  # the time cap ends it (LOAD_SECONDS=180)
PLATEAU_TOLERANCE = 1.05  # the last third's peak within 5% of the middle third's: memory has stopped growing


@pytest.fixture(scope="module")
def server(exported_repo, tmp_path_factory):
    from sae.serving.triton import ServerConfig, TritonServer

    log = tmp_path_factory.mktemp("load") / "server.log"
    with TritonServer(ServerConfig(repository=exported_repo), log_path=log) as started:
        yield started


def plateaus(series: list[tuple[float, float]]) -> bool:
    third = max(1, len(series) // 3)
    middle, last = series[third : 2 * third], series[2 * third :]
    return bool(middle and last) and max(b for _, b in last) <= PLATEAU_TOLERANCE * max(b for _, b in middle)


def per_minute(series: list[tuple[float, float]]) -> list[float]:
    """Resident memory at the end of each whole minute of the run (and at its end), MiB."""
    marks, out = [60.0 * m for m in range(1, int(series[-1][0] // 60) + 1)], []
    for mark in marks:
        out.append(max(b for t, b in series if t <= mark))
    return out + [series[-1][1]]


def test_load_32_clients_60_s(server):
    report = run_load(server, CLIENTS, REQUESTS, TIME_CAP_S)
    report["memory_plateaus"] = plateaus(report["memory_series_mib"])
    report["memory_per_minute_mib"] = per_minute(report["memory_series_mib"])
    out = Path(os.environ["SAE_LOAD_OUT"])
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "memory_series_mib"}, indent=1))
    assert report["errors"] == 0, report["first_errors"]
    assert report["memory_plateaus"], (
        "resident memory still grows in the last third of the run",
        report["memory_series_mib"],
    )


def _with_arena(repo: Path, dst: Path, arena: bool) -> Path:
    """A copy of ``repo`` whose encode/decode set the python-backend parameter ``cpu_mem_arena``."""
    import shutil

    copy = Path(shutil.copytree(repo, dst, symlinks=True))
    for role in ("encode", "decode"):
        config = copy / role / "config.pbtxt"
        config.write_text(
            config.read_text()
            + '\nparameters {\n  key: "cpu_mem_arena"\n  value { string_value: "'
            + ("1" if arena else "0")
            + '" }\n}\n'
        )
    return copy


def test_cpu_arena_bounds_memory_after_large_batches(exported_repo, tmp_path):
    """Resident memory with ONNX Runtime's CPU arena on and off: after small load, after 10 batch-256 decode +
    encode requests, and after more small load (``SAE_ARENA_OUT``, default out/bench/arena.json)."""
    import numpy as np
    from helpers.reliability import resident_bytes, server_processes

    from sae.clients.triton_client import SAEClient
    from sae.serving.triton import ServerConfig, TritonServer

    results = {}
    for arena in (True, False):
        repo = _with_arena(exported_repo, tmp_path / f"arena_{int(arena)}", arena)
        with TritonServer(ServerConfig(repository=repo), log_path=tmp_path / f"arena_{int(arena)}.log") as server:

            def mib():
                return round(resident_bytes(server_processes(server)) / 2**20, 1)

            row = {"ready_mib": mib(), "after_small_load_mib": run_load(server, 8, 10**6, 10.0)["memory_after_mib"]}
            with SAEClient(server.grpc_url, timeout_s=120) as client:
                for _ in range(10):
                    client.decode(np.random.default_rng(0).normal(size=(256, 12)).astype(np.float32))
                    client.encode(np.zeros((256, 64, 64, 3), np.uint8))
            row["after_10_batch_256_mib"] = mib()
            row["after_more_small_load_mib"] = run_load(server, 8, 10**6, 10.0)["memory_after_mib"]
            row["dev_shm_mib"] = round(
                sum(p.stat().st_size for p in Path("/dev/shm").glob(f"{server._shm_prefix}*")) / 2**20, 1
            )
            results[f"cpu_mem_arena={int(arena)}"] = row
    out = Path(os.environ.get("SAE_ARENA_OUT", "out/bench/arena.json"))
    write_text_atomic(out, json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=1))
    assert results["cpu_mem_arena=0"]["after_10_batch_256_mib"] < results["cpu_mem_arena=1"]["after_10_batch_256_mib"]
