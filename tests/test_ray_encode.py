"""`sae encode --engine ray` on a local Ray cluster (2 CPUs) against a real Triton server: the merged shards equal the
single-process file byte for byte, also after an actor is killed mid-run, and a rerun after the driver is killed
encodes only the missing shards.

Ray is the `scale` extra: without it these tests skip, except in CI (CI=true), where they must run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

if os.environ.get("CI") == "true":
    import ray  # CI installs the scale extra: a missing Ray is a failure there, not a skip
else:
    ray = pytest.importorskip("ray", reason="the scale extra (Ray) is not installed")

from sae.clients.jobs.encode_job import EncodeJobConfig, run_encode_job
from sae.clients.jobs.encode_servers import ServerPool
from sae.clients.jobs.ray_encode.actor import ShardEncoder
from sae.clients.jobs.ray_encode.config import RayEncodeConfig
from sae.clients.jobs.ray_encode.job import _manifest_for, run_ray_encode
from sae.clients.jobs.ray_encode.shards import complete_shards, merge_shards, read_manifest, shard_path
from sae.clients.triton_client import SAEClient
from sae.core.datasets import open_dataset
from tests.conftest import FIXTURE_IMAGES, pid_alive, pids_mentioning
from tests.test_encode_job import free_port

ROOT = Path(__file__).resolve().parents[1]
BATCH = 256  # the encoder's max_batch_size: no two requests fit one server batch, so none is ever merged
SHARD_ROWS = 256
SHARDS = FIXTURE_IMAGES // SHARD_ROWS
RATE = 384  # images/s per actor in the kill tests: two actors take about 3 s, time to kill one mid-run

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def ray_cluster():
    """One local cluster for the module; every driver below (in-process or a subprocess) joins it."""
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING", _node_ip_address="127.0.0.1"
    )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(triton, shapes_file, tmp_path_factory) -> Path:
    """Today's single-process `sae encode` with the same batch size, one request in flight."""
    out = tmp_path_factory.mktemp("ray-reference") / "latents.h5"
    run_encode_job(
        EncodeJobConfig(
            data=shapes_file, out=out, urls=(triton.grpc_url,), in_flight=1, batch_size=BATCH, progress=False
        )
    )
    return out


def ray_config(shapes_file: Path, out: Path, triton, **changes) -> RayEncodeConfig:
    return RayEncodeConfig(
        data=shapes_file,
        out=out,
        urls=(triton.grpc_url,),
        actors=2,
        batch_size=BATCH,
        shard_rows=SHARD_ROWS,
        progress=False,
        **changes,
    )


def wait_until(condition, timeout_s: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def encoder_actor_pids() -> list[int]:
    """The pool's actor processes (Ray titles each worker after the class it runs)."""
    return pids_mentioning("ShardEncoder")


def test_merged_shards_equal_the_single_process_file_bitwise(ray_cluster, triton, shapes_file, reference, tmp_path):
    from sae.cli import main

    out = tmp_path / "shards"
    report = run_ray_encode(ray_config(shapes_file, out, triton))
    assert (report.encoded, report.skipped, report.failed) == (SHARDS, 0, [])
    assert report.encoded_images == FIXTURE_IMAGES and len(report.block_seconds) == SHARDS
    manifest = read_manifest(out)
    assert manifest.images == FIXTURE_IMAGES and manifest.label_key == "labels" and manifest.failed == []
    with h5py.File(shard_path(out, manifest.shards()[1]), "r") as shard, h5py.File(reference, "r") as single:
        assert shard.attrs["rows_start"] == SHARD_ROWS and int(shard["committed"][()]) == SHARD_ROWS
        assert np.array_equal(shard["latents"][()], single["latents"][SHARD_ROWS : 2 * SHARD_ROWS])
        assert np.array_equal(shard["labels"][()], single["labels"][SHARD_ROWS : 2 * SHARD_ROWS])
    merged = tmp_path / "latents.h5"
    assert main(["encode", "--merge", str(out), "--out", str(merged)]) == 0
    assert merged.read_bytes() == reference.read_bytes(), "the merged file is the single-process file"
    again = run_ray_encode(ray_config(shapes_file, out, triton))
    assert (again.encoded, again.skipped) == (0, SHARDS), "a finished folder is left alone"


def test_an_actor_killed_mid_run_leaves_a_complete_identical_result(
    ray_cluster, triton, shapes_file, reference, tmp_path
):
    out = tmp_path / "shards"
    outcome: dict = {}
    wait_until(lambda: not encoder_actor_pids(), what="the actors of earlier runs to go")  # the victim is this run's

    def target():
        try:
            outcome["report"] = run_ray_encode(ray_config(shapes_file, out, triton, max_images_per_second=RATE))
        except Exception as e:  # handed to the test
            outcome["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    wait_until(lambda: len(complete_shards(out)) >= 1 and len(encoder_actor_pids()) >= 2, what="a shard")
    victim = encoder_actor_pids()[0]
    done_at_kill = len(complete_shards(out))
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=180)
    assert done_at_kill < SHARDS, "the actor was killed before the run ended"
    assert not pid_alive(victim)
    assert "error" not in outcome, outcome.get("error")
    report = outcome["report"]
    assert report.failed == [] and report.encoded == SHARDS
    merged = merge_shards(out, tmp_path / "latents.h5").out
    assert merged.read_bytes() == reference.read_bytes()


def test_a_rerun_after_the_driver_is_killed_encodes_only_the_missing_shards(
    ray_cluster, triton, shapes_file, reference, tmp_path
):
    out = tmp_path / "shards"
    command = [
        sys.executable,
        "-m",
        "sae",
        "encode",
        str(shapes_file),
        "--out",
        str(out),
        "--engine",
        "ray",
        "--address",
        ray_cluster,
        "--url",
        triton.grpc_url,
        "--batch-size",
        str(BATCH),
        "--shard-rows",
        str(SHARD_ROWS),
        "--actors",
        "2",
    ]
    driver = subprocess.Popen(
        command + ["--max-rate", str(RATE)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_until(lambda: len(complete_shards(out)) >= 2 or driver.poll() is not None, what="two shards")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    wait_until(lambda: not encoder_actor_pids(), what="the killed job's actors to go")
    before = {s: os.stat(shard_path(out, s)) for s in complete_shards(out)}
    assert 2 <= len(before) < SHARDS, f"killed with {len(before)} shards: {driver.stdout.read().decode()}"
    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"encoded {SHARDS - len(before)} of {SHARDS} shards" in rerun.stdout
    assert f"{len(before)} were already done" in rerun.stdout
    for shard, stat in before.items():  # the shards done before the kill were not written again
        now = os.stat(shard_path(out, shard))
        assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns), shard
    assert merge_shards(out, tmp_path / "latents.h5").out.read_bytes() == reference.read_bytes()


def test_a_block_whose_servers_keep_failing_comes_back_failed_naming_its_rows(triton, shapes_file, reference, tmp_path):
    config = ray_config(shapes_file, tmp_path / "shards", triton, block_attempts=2, outage_wait_s=0.0)
    data = open_dataset(shapes_file)
    manifest = _manifest_for(config, data)
    with h5py.File(reference, "r") as f:
        manifest.probe_latent = f.attrs["probe_latent"].tolist()
    encoder = ShardEncoder(config, manifest, node_ip="127.0.0.1", actor_id="test")  # in this process, no Ray
    shard = manifest.shards()[3]
    block = {"row": np.arange(shard.start, shard.stop), "image": data.read(slice(shard.start, shard.stop))}
    live = encoder.pool
    encoder.pool = ServerPool([SAEClient(f"127.0.0.1:{free_port()}")], cooldown_s=0.0)  # nothing listens there
    failed = encoder(block)
    assert failed["status"][0] == "failed" and (failed["start"][0], failed["stop"][0]) == (shard.start, shard.stop)
    assert "try 2 of 2" in failed["error"][0] and "images 768..1023" in failed["error"][0]
    assert not shard_path(config.out, shard).exists()
    encoder.pool.close()
    encoder.pool = live  # the server is back: the same block goes through
    assert encoder(block)["status"][0] == "done"
    with h5py.File(shard_path(config.out, shard), "r") as f, h5py.File(reference, "r") as single:
        assert np.array_equal(f["latents"][()], single["latents"][shard.start : shard.stop])
    torn = encoder({"row": block["row"][1:], "image": block["image"][1:]})
    assert torn["status"][0] == "failed" and "exactly one planned shard" in torn["error"][0]
