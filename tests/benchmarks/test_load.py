"""The long load test (`make bench`): 32 clients for 60 s mixing every served model on loopback; writes JSON
(``SAE_LOAD_OUT``, default out/bench/load.json) with p50/p99, errors and the server's resident memory over time."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from clients.atomic import write_text_atomic
from reliability_helpers import run_load

pytestmark = [pytest.mark.server, pytest.mark.slow]

CLIENTS, REQUESTS, TIME_CAP_S = 32, 1_000_000, 60.0  # the time cap ends it
PLATEAU_TOLERANCE = 1.05  # the last third's peak within 5% of the middle third's: memory has stopped growing


@pytest.fixture(scope="module")
def server(exported_repo, tmp_path_factory):
    from serving.triton import ServerConfig, TritonServer

    log = tmp_path_factory.mktemp("load") / "server.log"
    with TritonServer(ServerConfig(repository=exported_repo), log_path=log) as started:
        yield started


def plateaus(series: list[tuple[float, float]]) -> bool:
    third = max(1, len(series) // 3)
    middle, last = series[third:2 * third], series[2 * third:]
    return bool(middle and last) and max(b for _, b in last) <= PLATEAU_TOLERANCE * max(b for _, b in middle)


def test_load_32_clients_60_s(server):
    report = run_load(server, CLIENTS, REQUESTS, TIME_CAP_S)
    report["memory_plateaus"] = plateaus(report["memory_series_mib"])
    out = Path(os.environ.get("SAE_LOAD_OUT", "out/bench/load.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "memory_series_mib"}, indent=1))
    assert report["errors"] == 0, report["first_errors"]
