"""A short bounded load test on loopback: concurrent clients mixing every served model, zero errors."""

from __future__ import annotations

import json

import pytest
from conftest import module_server
from helpers.reliability import run_load

pytestmark = [pytest.mark.server, pytest.mark.slow]

CLIENTS, REQUESTS, TIME_CAP_S = 8, 1500, 15.0


@pytest.fixture(scope="module")
def server(exported_repo, tmp_path_factory):
    with module_server(exported_repo, tmp_path_factory, "load") as started:
        yield started


def test_concurrent_clients_mixing_every_model_get_no_error(server):
    report = run_load(server, CLIENTS, REQUESTS, TIME_CAP_S)
    print(json.dumps({k: v for k, v in report.items() if k != "memory_series_mib"}, indent=1))
    assert report["errors"] == 0, report["first_errors"]
    assert report["requests_done"] > 0 and set(report["per_model"]) == {
        "encode",
        "decode",
        "reconstruct",
        "hybrid_sample",
        "traverse",
    }
    assert report["requests_done"] == REQUESTS or report["seconds"] >= TIME_CAP_S
    assert report["p99_ms"] < 10_000
