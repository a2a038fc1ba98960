"""The sampler's draw, tested directly on the code the server runs."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

SAMPLER = Path(__file__).resolve().parents[1] / "model_repository" / "sampler" / "1" / "model.py"


@pytest.fixture(scope="module")
def draw_hybrid():
    spec = importlib.util.spec_from_file_location("sampler_model", SAMPLER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.draw_hybrid


@pytest.fixture
def bank():
    return np.random.default_rng(1).normal(size=(128, 12)).astype(np.float32)


def test_each_variable_chunk_is_the_same_chunk_of_a_stored_vector(draw_hybrid, bank):
    partition = np.repeat(np.arange(4), 3)  # SAE-4: 4 variables of 3 dimensions
    latents, source = draw_hybrid(bank, partition, 64, seed=7)
    assert latents.shape == (64, 12) and source.shape == (64, 4)
    for n in range(64):
        for v in range(4):
            chunk = slice(3 * v, 3 * v + 3)
            matches = np.flatnonzero((bank[:, chunk] == latents[n, chunk]).all(axis=1))
            assert source[n, v] in matches
        assert len(set(source[n])) == 4, "chunks of one sample come from different stored vectors"


def test_per_dimension_draw_mixes_dimensions_of_one_variable(draw_hybrid, bank):
    partition = np.repeat(np.arange(4), 3)
    latents, source = draw_hybrid(bank, partition, 64, seed=7, per_dimension=True)
    assert source.shape == (64, 12)
    assert np.array_equal(latents, bank[source, np.arange(12)])
    assert (source[:, 0] != source[:, 1]).all()


def test_same_seed_same_draw_other_seed_other_draw(draw_hybrid, bank):
    partition = np.arange(12)
    a, _ = draw_hybrid(bank, partition, 16, seed=3)
    b, _ = draw_hybrid(bank, partition, 16, seed=3)
    c, _ = draw_hybrid(bank, partition, 16, seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_draw_is_uniform_over_the_bank(draw_hybrid, bank):
    _, source = draw_hybrid(bank, np.arange(12), 4000, seed=0)
    counts = np.bincount(source.ravel(), minlength=128)
    expected = source.size / 128
    assert counts.min() > 0.7 * expected and counts.max() < 1.3 * expected
