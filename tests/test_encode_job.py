"""`sae encode`: datasets through real servers into HDF5 latents; resumable after SIGKILL, spread over servers."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import h5py
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sae.clients.jobs.encode_job import EncodeJobConfig, _create, run_encode_job
from sae.clients.jobs.encode_servers import ServerPool
from sae.clients.jobs.metrics import EncodeMetrics
from sae.clients.retry import RetryPolicy
from sae.clients.triton_client import SAEClient
from sae.core.datasets import H5Images
from sae.core.errors import EncodeJobError, InvalidInputError
from sae.core.latents_file import fingerprint, identity_of

ROOT = Path(__file__).resolve().parents[1]
N = 256  # images in the test dataset
BATCH = 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_images(path: Path, images: np.ndarray, labels: np.ndarray | None = None) -> Path:
    with h5py.File(path, "w") as f:
        f["images"] = images
        if labels is not None:
            f["labels"] = labels
            f.attrs["factor_names"] = [f"factor{i}" for i in range(labels.shape[1])]
    return path


@pytest.fixture(scope="module")
def small_data(shapes_file, tmp_path_factory) -> Path:
    with h5py.File(shapes_file, "r") as f:
        images, labels = f["images"][:N], f["labels"][:N]
    return write_images(tmp_path_factory.mktemp("encode") / "small.h5", images, labels)


def contents(path: Path) -> dict:
    """Everything an output file holds, for equality checks."""
    with h5py.File(path, "r") as f:
        found = {key: f[key][()] for key in f}
        found.update({f"attr:{k}": v for k, v in f.attrs.items()})
        found.update({f"labels:{k}": v for k, v in f["labels"].attrs.items()} if "labels" in f else {})
    return found


def assert_same_file(a: Path, b: Path) -> None:
    ca, cb = contents(a), contents(b)
    assert sorted(ca) == sorted(cb)
    for key in ca:
        if key != "attr:source_path":
            assert np.array_equal(ca[key], cb[key]), key


def committed_in(path: Path) -> int:
    try:
        with h5py.File(path, "r", locking=False) as f:
            return int(f["committed"][()])
    except (OSError, KeyError):
        return 0


# --------------------------------------------------------------------------------------------------- no server


def test_config_refuses_nonsense():
    for kwargs, match in [
        (dict(in_flight=0), "--in-flight"),
        (dict(batch_size=0), "--batch-size"),
        (dict(urls=()), "--url"),
        (dict(max_images_per_second=0), "--max-rate"),
    ]:
        with pytest.raises(ValueError, match=match):
            EncodeJobConfig(data=Path("d.h5"), out=Path("o.h5"), **kwargs)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_in_a_log_is_tqdm_meter_lines_and_on_a_terminal_a_bar():
    from sae.core.progress_bar import progress_bar

    log = io.StringIO()
    progress = progress_bar(1000, "encode", unit="images", stream=log, initial=200, log_every_s=0.0)
    progress.n = 600  # 400 images in 2 s since the (resumed) start: the rate counts only this run's images
    assert progress.line(now=progress.started + 2.0) == "encode:  60% 600/1000 [00:02<00:02, 200.00 images/s]"
    progress.update_to(700)
    progress.close()
    progress.close()
    assert log.getvalue().count("\n") == 2 and "\r" not in log.getvalue(), "plain lines in a log file, one at close"
    terminal = _Terminal()
    live = progress_bar(10, "encode", unit="images", stream=terminal, log_every_s=0.0)
    live.update_to(5)
    assert live.n == 5
    live.close()
    assert terminal.getvalue().startswith("\rencode:") and "0/10" in terminal.getvalue(), "a bar redrawn in place"


def test_pool_sends_to_the_least_busy_server_in_turn_and_rests_a_failed_one():
    urls = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    pool = ServerPool([SAEClient(u) for u in urls], cooldown_s=60.0)
    a, b, c = (pool._acquire(set()) for _ in range(3))
    assert [s.url for s in (a, b, c)] == urls, "ties go round robin"
    pool._release(b, failed=False)
    assert pool._acquire(set()).url == urls[1], "the one with nothing outstanding"
    pool._release(a, failed=True)  # a failed: rested for the cooldown
    pool._release(c, failed=False)
    assert pool._acquire(set()).url == urls[2] and pool._acquire({urls[2]}).url == urls[1]
    assert pool.failures == 1 and pool.requests_per_server() == {urls[0]: 1, urls[1]: 3, urls[2]: 2}
    pool.close()


def test_pool_names_every_server_that_failed():
    urls = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    metrics = EncodeMetrics()
    retry = RetryPolicy(attempts=2, initial_backoff_s=0.01, max_backoff_s=0.02)
    pool = ServerPool([SAEClient(u, retry=retry) for u in urls], metrics, cooldown_s=60.0)
    images = np.zeros((2, 64, 64, 3), np.uint8)
    with pytest.raises(EncodeJobError, match="encode images 0..1: no server could encode them") as err:
        pool.encode(images, "images 0..1")
    assert all(u in str(err.value) for u in urls)
    assert (
        sum(
            metrics.registry.get_sample_value(
                "sae_encode_failures_total", {"server": u, "reason": "ServerUnavailableError"}
            )
            for u in urls
        )
        == 2
    )
    with pytest.raises(EncodeJobError, match="every server failed within the last few seconds"):
        pool.encode(images)  # both are resting: no request at all
    assert pool.failures == 2
    pool.close()


def test_an_output_of_another_input_or_model_is_refused_before_any_request(shapes_file, tmp_path):
    data = H5Images(write_images(tmp_path / "a.h5", H5Images(shapes_file).read(slice(0, 8))))
    config = EncodeJobConfig(data=data.path, out=tmp_path / "out.h5", model="m", urls=(f"127.0.0.1:{free_port()}",))
    _create(config.partial, config, data, identity_of(config.model, data, fingerprint(data)), np.zeros(12, np.float32))
    before = config.partial.read_bytes()
    with pytest.raises(EncodeJobError, match=r"model: file has 'm', this run 'other'.*nothing was changed"):
        run_encode_job(EncodeJobConfig(data=data.path, out=config.out, model="other", urls=config.urls))
    other = write_images(tmp_path / "b.h5", H5Images(shapes_file).read(slice(8, 16)))
    with pytest.raises(EncodeJobError, match="source_fingerprint: file has"):
        run_encode_job(EncodeJobConfig(data=other, out=config.out, model="m", urls=config.urls))
    assert config.partial.read_bytes() == before and not config.out.exists()


def test_the_command_line_reports_a_refusal_and_an_output_that_is_not_ours(shapes_file, tmp_path, capsys):
    from sae.cli import main

    data = write_images(tmp_path / "a.h5", H5Images(shapes_file).read(slice(0, 8)))
    out = tmp_path / "out.h5"
    out.write_text("not HDF5")
    url = f"127.0.0.1:{free_port()}"
    assert main(["encode", str(data), "--out", str(out), "--url", url]) == 2
    assert f"sae encode: error: {out} exists but is not a readable file of latents" in capsys.readouterr().err
    assert out.read_text() == "not HDF5"
    out.unlink()
    assert main(["encode", str(data), "--out", str(out), "--url", url]) == 1  # a runtime failure: no server
    assert f"encode: no server reachable: encode: server at {url} unavailable" in capsys.readouterr().err
    assert not list(tmp_path.glob("out.h5*")), "nothing written without a server"


# --------------------------------------------------------------------------------------------------- real servers


def job(small_data: Path, out: Path, urls, **kwargs) -> EncodeJobConfig:
    return EncodeJobConfig(data=small_data, out=out, urls=tuple(urls), batch_size=BATCH, progress=False, **kwargs)


@pytest.fixture(scope="module")
def reference(triton, small_data, tmp_path_factory) -> Path:
    """An uninterrupted run, one request in flight (the batches every other run is compared with)."""
    out = tmp_path_factory.mktemp("reference") / "latents.h5"
    report = run_encode_job(job(small_data, out, [triton.grpc_url], in_flight=1))
    assert report.encoded == N and report.resumed_from == 0
    return out


@pytest.fixture(scope="module")
def second_server(exported_repo, tmp_path_factory):
    """A second server shared by this module's tests; no test kills it (see ``doomed_server``)."""
    from sae.serving.triton import ServerConfig, TritonServer

    server = TritonServer(
        ServerConfig(repository=exported_repo), log_path=tmp_path_factory.mktemp("second") / "server.log"
    ).start()
    yield server
    server.stop()


@pytest.fixture
def doomed_server(exported_repo, tmp_path):
    """A server of one test's own, for a test that kills it."""
    from sae.serving.triton import ServerConfig, TritonServer

    server = TritonServer(ServerConfig(repository=exported_repo), log_path=tmp_path / "doomed.log").start()
    yield server
    server.stop()


def run_in_thread(config: EncodeJobConfig, metrics: EncodeMetrics) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def target():
        try:
            outcome["report"] = run_encode_job(config, metrics=metrics)
        except Exception as e:  # handed to the test
            outcome["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def wait_until(condition, timeout_s: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def kill_server(server) -> None:
    os.killpg(server.pid, signal.SIGKILL)  # dies, as a crashed machine would: no graceful shutdown
    server.stop()


@pytest.mark.server
def test_an_uninterrupted_run_holds_the_latents_and_the_labels(reference, small_data, triton):
    with h5py.File(small_data, "r") as f:
        images, labels = f["images"][:], f["labels"][:]
    with SAEClient(triton.grpc_url) as client:
        expected = client.encode(images)
    found = contents(reference)
    assert found["latents"].shape == (N, 12) and np.allclose(found["latents"], expected, atol=1e-5)
    assert np.array_equal(found["labels"], labels) and list(found["labels:factor_names"])[0] == "factor0"
    assert found["committed"] == N and found["attr:source_images"] == N and found["attr:model"] == ""
    assert not reference.with_name(reference.name + ".partial").exists()


@pytest.mark.server
def test_sigkill_mid_run_then_rerun_gives_the_uninterrupted_file(reference, small_data, triton, tmp_path):
    out = tmp_path / "latents.h5"
    partial = out.with_name(out.name + ".partial")
    command = [
        sys.executable,
        "-m",
        "sae",
        "encode",
        str(small_data),
        "--out",
        str(out),
        "--url",
        triton.grpc_url,
        "--batch-size",
        str(BATCH),
        "--in-flight",
        "1",
    ]
    proc = subprocess.Popen(command + ["--max-rate", "64"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: committed_in(partial) >= 2 * BATCH or proc.poll() is not None, what="two chunks")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = committed_in(partial)
    assert 2 * BATCH <= killed_at < N, f"killed at {killed_at}: {proc.stdout.read().decode()}"
    assert not out.exists()
    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming {partial} at image {killed_at}" in rerun.stderr
    assert f"encoded {N - killed_at} images (resumed at image {killed_at})" in rerun.stdout
    assert_same_file(out, reference)
    assert not partial.exists()


@pytest.mark.server
def test_a_finished_file_is_left_alone_and_another_model_is_refused(reference, small_data, triton):
    before = reference.read_bytes()
    assert run_encode_job(job(small_data, reference, [triton.grpc_url])).encoded == 0
    with pytest.raises(EncodeJobError, match="model: file has '', this run 'shapes'"):
        run_encode_job(job(small_data, reference, [triton.grpc_url], model="shapes"))
    assert reference.read_bytes() == before


@pytest.mark.server
def test_a_partial_file_from_another_model_is_refused(small_data, triton, tmp_path):
    config = job(small_data, tmp_path / "latents.h5", [triton.grpc_url])
    data = H5Images(small_data)
    _create(config.partial, config, data, identity_of(config.model, data, fingerprint(data)), np.zeros(12, np.float32))
    with pytest.raises(EncodeJobError, match="serves a different model than the model that wrote"):
        run_encode_job(config)
    assert committed_in(config.partial) == 0


@pytest.mark.server
def test_images_of_the_wrong_size_are_refused_naming_the_input(triton, tmp_path):
    data = write_images(tmp_path / "small_images.h5", np.zeros((4, 32, 32, 3), np.uint8))
    with pytest.raises(InvalidInputError, match=r"encode at .*: input IMAGE takes images of shape \[64, 64, 3\]"):
        run_encode_job(job(data, tmp_path / "out.h5", [triton.grpc_url]))
    assert not list(tmp_path.glob("out.h5*"))


@pytest.mark.server
def test_metrics_endpoint_serves_the_counters_of_a_shared_memory_run(reference, small_data, triton, tmp_path):
    port = free_port()
    metrics = EncodeMetrics()
    thread, outcome = run_in_thread(
        job(
            small_data,
            tmp_path / "latents.h5",
            [triton.grpc_url],
            metrics_port=port,
            max_images_per_second=96,
            shared_memory=True,
        ),
        metrics,
    )

    def scrape() -> dict[str, float]:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        except OSError:
            return {}
        return {
            s.name: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name.startswith("sae_encode")
        }

    seen: dict[str, float] = {}
    wait_until(lambda: seen.update(scrape()) or seen.get("sae_encode_images_total", 0) >= BATCH, what="metrics")
    thread.join(timeout=120)
    assert "error" not in outcome, outcome.get("error")
    assert seen["sae_encode_dataset_images"] == N and seen["sae_encode_request_seconds_count"] >= 1
    value = metrics.registry.get_sample_value
    assert value("sae_encode_images_total") == N and value("sae_encode_committed_images") == N
    assert value("sae_encode_request_seconds_count", {"server": triton.grpc_url}) == N // BATCH
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)  # stopped with the job
    assert_same_file(tmp_path / "latents.h5", reference)


def _encode_requests(url: str) -> int:
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(url) as raw:
        stats = raw.get_inference_statistics("encode", as_json=True)["model_stats"][0]
    return int(stats["inference_stats"]["success"].get("count", 0))


@pytest.mark.server
def test_two_servers_share_the_work_and_give_the_same_file(reference, small_data, triton, second_server, tmp_path):
    urls = [triton.grpc_url, second_server.grpc_url]
    before = [_encode_requests(u) for u in urls]
    report = run_encode_job(job(small_data, tmp_path / "latents.h5", urls, in_flight=2))
    after = [_encode_requests(u) for u in urls]
    assert all(report.requests_per_server[u] >= 2 for u in urls), report.requests_per_server
    assert sum(report.requests_per_server.values()) == N // BATCH
    assert [a - b for a, b in zip(after, before)] == [report.requests_per_server[u] + 1 for u in urls], (
        "each server answered its share (+1: the probe every server is checked with)"
    )
    assert_same_file(tmp_path / "latents.h5", reference)


@pytest.mark.server
def test_a_server_that_dies_mid_job_hands_its_chunks_to_the_other(
    reference, small_data, triton, doomed_server, tmp_path
):
    metrics = EncodeMetrics()
    config = job(
        small_data,
        tmp_path / "latents.h5",
        [doomed_server.grpc_url, triton.grpc_url],
        in_flight=1,
        max_images_per_second=96,
    )
    thread, outcome = run_in_thread(config, metrics)
    wait_until(
        lambda: (metrics.registry.get_sample_value("sae_encode_committed_images") or 0) >= 2 * BATCH, what="two chunks"
    )
    kill_server(doomed_server)
    thread.join(timeout=120)
    assert "error" not in outcome, outcome.get("error")
    report = outcome["report"]
    assert report.failures >= 1 and report.encoded == N
    assert (
        metrics.registry.get_sample_value(
            "sae_encode_failures_total", {"server": doomed_server.grpc_url, "reason": "ServerUnavailableError"}
        )
        >= 1
    )
    assert_same_file(config.out, reference)


@pytest.mark.server
def test_the_only_server_dying_leaves_a_resumable_file(reference, small_data, triton, exported_repo, tmp_path):
    from sae.serving.triton import ServerConfig, TritonServer

    doomed = TritonServer(ServerConfig(repository=exported_repo), log_path=tmp_path / "doomed.log").start()
    metrics = EncodeMetrics()
    config = job(
        small_data, tmp_path / "latents.h5", [doomed.grpc_url], in_flight=1, max_images_per_second=96, outage_wait_s=1.0
    )
    thread, outcome = run_in_thread(config, metrics)
    try:
        wait_until(
            lambda: (metrics.registry.get_sample_value("sae_encode_committed_images") or 0) >= 2 * BATCH,
            what="two chunks",
        )
    finally:
        kill_server(doomed)
    thread.join(timeout=120)
    error = outcome.get("error")
    assert isinstance(error, EncodeJobError), outcome
    assert doomed.grpc_url in str(error) and "unavailable" in str(error)
    assert "run the same command again to resume" in str(error)
    committed = committed_in(config.partial)
    assert 2 * BATCH <= committed < N and not config.out.exists()
    with h5py.File(config.partial, "r") as f:  # nothing past the marker was taken for final
        assert np.isnan(f["latents"][committed:]).all() and not np.isnan(f["latents"][:committed]).any()
    resumed = run_encode_job(job(small_data, config.out, [triton.grpc_url], in_flight=1))
    assert resumed.resumed_from == committed
    assert_same_file(config.out, reference)
