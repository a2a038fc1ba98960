"""End to end against a real Triton server: hybrid samples and reconstructions over gRPC."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from conftest import pid_alive, pids_mentioning

from sae.clients.triton_client import SAEClient
from sae.core.datasets import H5Images, split_indices
from sae.core.errors import InferenceError, InvalidInputError
from sae.export.bank import Bank

pytestmark = pytest.mark.server


def test_same_seed_same_images_other_seed_other_images(client):
    a, b, c = client.sample(16, seed=5), client.sample(16, seed=5), client.sample(16, seed=6)
    assert a.images.shape == (16, 64, 64, 3) and a.images.dtype == np.float32
    assert np.array_equal(a.images, b.images)
    assert not np.allclose(a.images, c.images)
    assert 0.0 <= a.images.min() and a.images.max() <= 1.0


def test_served_samples_take_each_variable_from_the_bank(client, exported_repo):
    bank = Bank.load(exported_repo / "sampler" / "1" / "bank.h5")
    s = client.sample(32, seed=11)
    assert s.source_index.shape == (32, 12)
    assert np.array_equal(s.latents, bank.latents[s.source_index[:, bank.variable_of_dim], np.arange(12)])
    assert s.draw_mode == "independent"
    per_dim = client.sample(8, seed=11, per_dimension=True)  # SAE-12: one dimension per variable, so the same draw
    assert np.array_equal(per_dim.latents, s.latents[:8]) and per_dim.source_index.shape == (8, 12)
    distinct = client.sample(32, seed=11, draw="distinct")
    assert distinct.draw_mode == "distinct" and all(len(set(row)) == 12 for row in distinct.source_index)


def test_independent_draws_may_take_two_variables_from_one_stored_latent(client):
    """SAE-12 from N = 128: 1 - 128!/(116! 128^12), about 41% of samples, reuse a stored latent (the distinct draw
    rules those out)."""
    s = client.sample(256, seed=0)
    repeats = np.mean([len(set(row)) < 12 for row in s.source_index])
    assert 0.28 < repeats < 0.54, repeats  # 0.413 +- 4 sigma (sigma 0.031 at 256 samples)


def test_served_images_are_the_decoded_latents(client):
    s = client.sample(4, seed=2)
    assert np.allclose(client.decode(s.latents), s.images, atol=1e-5)


def test_reconstruction_beats_the_mean_image(client, shapes_file):
    data = H5Images(shapes_file)
    test_rows = split_indices(len(data))["test"][:128]
    images = data.read(test_rows)
    target = images.astype(np.float32) / 255.0
    recon = client.reconstruct(images)
    assert recon.shape == target.shape
    mse = float(((recon - target) ** 2).mean())
    mean_image_mse = float(((target.mean(axis=0, keepdims=True) - target) ** 2).mean())
    assert mse < 0.8 * mean_image_mse, (mse, mean_image_mse)


def test_batches_larger_than_max_batch_size_are_split(client):
    images = np.random.default_rng(0).integers(0, 256, (300, 64, 64, 3), dtype=np.uint8)
    latents = client.encode(images)
    assert latents.shape == (300, 12)
    assert np.allclose(latents[290:], client.encode(images[290:]), atol=1e-5)


@pytest.mark.parametrize(
    "images,match",
    [
        (np.zeros((2, 64, 64, 3), np.float32), "IMAGE must be uint8"),
        (np.zeros((2, 32, 32, 3), np.uint8), r"IMAGE must have shape \[N>0, 64, 64, 3\]"),
        (np.zeros((0, 64, 64, 3), np.uint8), "IMAGE must have shape"),
    ],
)
def test_bad_images_are_refused_before_sending(client, images, match):
    with pytest.raises(InvalidInputError, match=match):
        client.reconstruct(images)


def test_nan_latents_are_refused(client):
    with pytest.raises(InvalidInputError, match="LATENT contains NaN"):
        client.decode(np.full((1, 12), np.nan, np.float32))


@pytest.mark.parametrize("n", [0, -3, 10**12])
def test_absurd_sample_counts_are_refused_by_the_client(client, n):
    with pytest.raises(InvalidInputError, match="NUM_SAMPLES"):
        client.sample(n, seed=0)


@pytest.mark.parametrize("n", [0, 257, 10**9])
def test_the_server_itself_refuses_absurd_sample_counts(triton, n):
    raw = grpcclient.InferenceServerClient(triton.grpc_url)
    inputs = [grpcclient.InferInput("NUM_SAMPLES", [1], "INT64"), grpcclient.InferInput("SEED", [1], "INT64")]
    inputs[0].set_data_from_numpy(np.array([n], np.int64))
    inputs[1].set_data_from_numpy(np.array([0], np.int64))
    with pytest.raises(Exception, match="NUM_SAMPLES must be in 1..256"):
        raw.infer("hybrid_sample", inputs)
    assert raw.is_server_live(), "a bad request leaves the server serving"


def test_server_stops_and_leaves_no_process(exported_repo, tmp_path):
    from sae.serving.triton import ServerConfig, TritonServer

    repo = Path(shutil.copytree(exported_repo, tmp_path / "own_repo", symlinks=True))  # not shared with `triton`
    server = TritonServer(ServerConfig(repository=repo), log_path=tmp_path / "log").start()
    with SAEClient(server.grpc_url) as c:
        assert c.sample(2, seed=0).images.shape == (2, 64, 64, 3)
    pid = server.pid
    stubs = [p for p in pids_mentioning(str(repo)) if p != pid]
    assert stubs, "python-backend stubs should be running"
    server.stop()
    assert not pid_alive(pid)
    assert not [p for p in stubs if pid_alive(p)]


def test_a_dead_server_gives_a_clear_error(exported_repo, tmp_path):
    from sae.core.errors import ServerUnavailableError
    from sae.serving.triton import ServerConfig, TritonServer

    server = TritonServer(ServerConfig(repository=exported_repo), log_path=tmp_path / "log").start()
    c = SAEClient(server.grpc_url, timeout_s=5)
    c.sample(1, seed=0)
    server.stop()
    with pytest.raises((ServerUnavailableError, InferenceError), match="hybrid_sample"):
        c.sample(1, seed=0)


def test_sae_sample_takes_a_draw_mode_and_refuses_unknown_ones(triton, tmp_path, capsys):
    from sae.cli import main

    out = tmp_path / "distinct.png"
    assert (
        main(["sample", "--n", "4", "--seed", "1", "--url", triton.grpc_url, "--out", str(out), "--draw", "distinct"])
        == 0
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (
        main(
            ["sample", "--n", "4", "--url", triton.grpc_url, "--out", str(tmp_path / "x.png"), "--draw", "per_variable"]
        )
        == 2
    )
    assert "DRAW must be one of independent, distinct, per_dimension" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
