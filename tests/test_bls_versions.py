"""The roles that decode through ``NAME_decode`` by BLS (hybrid and prior samples, traversals) call the decoder of
their own version, against a real Triton server. A repository whose decoder serves another version than its samplers
(what a polling server sees between two folder swaps of an export or a rollback) answers UNAVAILABLE, which the
client retries and then reports, instead of decoding one version's latents with another version's decoder; the
roles that decode themselves keep answering."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import copy_repository, short_run

pytestmark = [pytest.mark.server, pytest.mark.slow]

NAME, CONFIG, STEPS = "vae", "betavae-tiny", 20  # a kind with a prior: a set with every role


@pytest.fixture(scope="module")
def server(tmp_path_factory, shapes_file):
    """The set exported once, then its decoder's only version folder renumbered 1 -> 2: Triton serves decoder 2 and
    samplers 1."""
    from sae.export.model_set import export_run
    from sae.repository.layout import versions
    from sae.serving.triton import ServerConfig, TritonServer

    run = short_run(tmp_path_factory, shapes_file, CONFIG, STEPS)
    repo = copy_repository(tmp_path_factory.mktemp("bls-versions") / "model_repository")
    export_run(run, repo, name=NAME)
    decode = repo / f"{NAME}_decode"
    assert versions(decode) == [1] and versions(repo / f"{NAME}_hybrid_sample") == [1]
    (decode / "1").rename(decode / "2")
    log = tmp_path_factory.mktemp("bls-versions-server") / "server.log"
    with TritonServer(ServerConfig(repository=repo), log_path=log) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    from sae.clients.retry import RetryPolicy
    from sae.clients.triton_client import SAEClient

    with SAEClient(server.grpc_url, model=NAME, retry=RetryPolicy(attempts=2, initial_backoff_s=0.01)) as c:
        c.wait_ready(timeout_s=60)
        c.wait_ready(timeout_s=60, role="prior_sample")
        yield c


def test_a_sampler_whose_decoder_version_is_gone_answers_unavailable_not_another_versions_images(client):
    from sae.core.errors import ServerUnavailableError

    calls = {
        "hybrid_sample": lambda: client.sample(n=2, seed=0),
        "prior_sample": lambda: client.prior_sample(n=2, seed=0),
        "traverse": lambda: client.traverse(np.zeros(12, np.float32), dimension=0, steps=3),
    }
    for role, call in calls.items():
        with pytest.raises(ServerUnavailableError, match=rf"{NAME}_{role}: {NAME}_decode version 1 is not loaded"):
            call()


def test_the_decoder_itself_and_the_roles_that_decode_in_process_still_answer(client, shapes_file):
    import h5py

    with h5py.File(shapes_file, "r") as f:
        images = f["images"][:2]
    latents = client.encode(images)
    assert latents.shape == (2, 12) and np.isfinite(latents).all()
    decoded = client.decode(latents)
    assert decoded.shape == (2, 64, 64, 3) and np.isfinite(decoded).all()
    reconstructed = client.reconstruct(images)
    assert reconstructed.shape == (2, 64, 64, 3) and np.abs(reconstructed - decoded).max() <= 1e-5
