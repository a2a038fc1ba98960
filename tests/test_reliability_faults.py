"""Faults while serving: the server killed and restarted under `sae encode`, a python-backend stub killed."""

from __future__ import annotations

import time

import pytest
from test_encode_job import (
    BATCH,
    N,
    assert_same_file,
    kill_server,
    run_in_thread,
    small_data,  # noqa: F401  (a fixture)
)

from sae.clients.jobs.encode_job import EncodeJobConfig, run_encode_job
from sae.clients.jobs.metrics import EncodeMetrics
from sae.serving.triton import ServerConfig, TritonServer
from sae.serving.triton.process_group import _free_ports

pytestmark = [pytest.mark.server, pytest.mark.slow]

OUTAGE_S = 3.0  # how long the server stays dead before it is restarted


def _job(data, out, url, **kwargs) -> EncodeJobConfig:
    return EncodeJobConfig(data=data, out=out, urls=(url,), batch_size=BATCH, in_flight=1, progress=False, **kwargs)


def test_encode_waits_for_a_restarted_server_and_ends_with_the_same_file(exported_repo, small_data, tmp_path):
    grpc, http, metrics_port = _free_ports("127.0.0.1", 3)
    config = ServerConfig(repository=exported_repo, grpc_port=grpc, http_port=http, metrics_port=metrics_port)
    server = TritonServer(config, log_path=tmp_path / "first.log").start()
    restarted = None
    try:
        url = server.grpc_url
        reference = tmp_path / "reference.h5"
        run_encode_job(_job(small_data, reference, url))
        job = _job(small_data, tmp_path / "latents.h5", url, max_images_per_second=64, outage_wait_s=60.0)
        metrics = EncodeMetrics()
        thread, outcome = run_in_thread(job, metrics)
        deadline = time.monotonic() + 60
        while (metrics.registry.get_sample_value("sae_encode_committed_images") or 0) < 2 * BATCH:
            assert time.monotonic() < deadline and thread.is_alive(), outcome
            time.sleep(0.02)
        kill_server(server)  # a crash, no graceful shutdown
        killed = time.monotonic()
        time.sleep(OUTAGE_S)
        restarted = TritonServer(config, log_path=tmp_path / "second.log").start()
        back = time.monotonic()
        thread.join(timeout=120)
        assert "report" in outcome, outcome
        report = outcome["report"]
        assert report.encoded == N and report.failures >= 1, report
        assert_same_file(job.out, reference)
        print(
            f"server dead {back - killed:.1f} s (restart to ready {back - killed - OUTAGE_S:.1f} s); job finished "
            f"{time.monotonic() - back:.1f} s after the restart, {report.failures} failed requests"
        )
    finally:
        server.stop()
        if restarted is not None:
            restarted.stop()
