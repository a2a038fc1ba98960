"""The one-hop sampling and reconstruction models against a real Triton server: no ensemble, the counter-based draw
a client can recompute, and the uint8 image output."""

import numpy as np
import pytest

from sae.core.datasets import H5Images
from sae.core.draw import source_index, to_uint8
from sae.core.errors import InvalidInputError
from sae.export.bank import Bank

pytestmark = pytest.mark.server


def test_sampling_and_reconstruction_are_one_model_each(client):
    for model in ("hybrid_sample", "reconstruct"):
        config = client.model_config(model)
        assert config.get("platform") != "ensemble" and config["backend"] == "python", model
    assert client.model_info("hybrid_sample").steps == ()
    assert client.max_samples() == 256, "the one-hop model's own max_samples parameter"


@pytest.mark.parametrize("draw", ["independent", "distinct", "per_dimension"])
def test_a_client_recomputes_source_index_from_the_seed(client, exported_repo, draw):
    bank = Bank.load(exported_repo / "hybrid_sample" / "1" / "bank.h5")
    groups = bank.latent_dim if draw == "per_dimension" else bank.num_variables
    for seed, n in [(0, 1), (7, 33), (2**63 - 1, 5), (123456789, 256)]:
        samples = client.sample(n, seed=seed, draw=draw)
        assert np.array_equal(samples.source_index, source_index(seed, n, groups, len(bank.latents), draw))


def test_uint8_images_are_the_rounded_fp32_images(client):
    both = client.infer(
        "hybrid_sample",
        {"NUM_SAMPLES": np.array([16], np.int64), "SEED": np.array([4], np.int64)},
        ["IMAGE", "IMAGE_U8", "LATENT"],
    )
    assert both["IMAGE_U8"].dtype == np.uint8 and both["IMAGE_U8"].shape == both["IMAGE"].shape
    expected = np.rint(np.clip(both["IMAGE"], 0, 1) * 255).astype(np.uint8)
    assert np.array_equal(both["IMAGE_U8"], expected) and np.array_equal(both["IMAGE_U8"], to_uint8(both["IMAGE"]))
    small = client.sample(16, seed=4, image_dtype="uint8")
    assert small.images.dtype == np.uint8 and np.array_equal(small.images, both["IMAGE_U8"])
    assert np.array_equal(small.latents, both["LATENT"])


def test_an_unknown_image_dtype_is_refused_by_name(client):
    with pytest.raises(InvalidInputError, match="image_dtype must be one of float32, uint8"):
        client.sample(2, seed=0, image_dtype="float16")


def test_one_hop_reconstruction_equals_decode_of_encode(client, shapes_file):
    images = H5Images(shapes_file).read(np.arange(8))
    assert np.allclose(client.reconstruct(images), client.decode(client.encode(images)), atol=1e-5)
