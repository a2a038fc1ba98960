"""The sampler's draws and the traversal, tested directly on the code the server runs (export/triton_templates)."""
import numpy as np
import pytest

from export.triton_templates.sampler_model import draw_controlled, draw_hybrid
from export.triton_templates.traverse_model import traversal

SAE4 = np.repeat(np.arange(4), 3)  # SAE-4: 4 variables of 3 dimensions


@pytest.fixture
def bank():
    return np.random.default_rng(1).normal(size=(128, 12)).astype(np.float32)


@pytest.fixture
def base():
    return np.random.default_rng(2).normal(size=(1, 12)).astype(np.float32)


def test_each_variable_chunk_is_the_same_chunk_of_a_stored_vector(bank):
    latents, source = draw_hybrid(bank, SAE4, 64, seed=7)
    assert latents.shape == (64, 12) and source.shape == (64, 4)
    for n in range(64):
        for v in range(4):
            chunk = slice(3 * v, 3 * v + 3)
            matches = np.flatnonzero((bank[:, chunk] == latents[n, chunk]).all(axis=1))
            assert source[n, v] in matches
        assert len(set(source[n])) == 4, "chunks of one sample come from different stored vectors"


def test_per_dimension_draw_mixes_dimensions_of_one_variable(bank):
    latents, source = draw_hybrid(bank, SAE4, 64, seed=7, per_dimension=True)
    assert source.shape == (64, 12)
    assert np.array_equal(latents, bank[source, np.arange(12)])
    assert (source[:, 0] != source[:, 1]).all()


def test_same_seed_same_draw_other_seed_other_draw(bank):
    partition = np.arange(12)
    a, _ = draw_hybrid(bank, partition, 16, seed=3)
    b, _ = draw_hybrid(bank, partition, 16, seed=3)
    c, _ = draw_hybrid(bank, partition, 16, seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_draw_is_uniform_over_the_bank(bank):
    _, source = draw_hybrid(bank, np.arange(12), 4000, seed=0)
    counts = np.bincount(source.ravel(), minlength=128)
    expected = source.size / 128
    assert counts.min() > 0.7 * expected and counts.max() < 1.3 * expected


@pytest.mark.parametrize("per_dimension", [False, True])
def test_mask_all_true_is_the_plain_hybrid_draw(bank, base, per_dimension):
    plain = draw_hybrid(bank, SAE4, 16, seed=5, per_dimension=per_dimension)
    masked = draw_controlled(bank, SAE4, 16, 5, per_dimension, base, np.ones(4, bool))
    assert np.array_equal(plain[0], masked[0]) and np.array_equal(plain[1], masked[1])


@pytest.mark.parametrize("per_dimension", [False, True])
def test_mask_all_false_keeps_the_base(bank, base, per_dimension):
    latents, source = draw_controlled(bank, SAE4, 5, 5, per_dimension, base, np.zeros(4, bool))
    assert np.array_equal(latents, np.repeat(base, 5, axis=0))
    assert (source == -1).all() and source.shape == (5, 12 if per_dimension else 4)


def test_masked_variables_are_redrawn_the_others_kept(bank):
    bases = np.random.default_rng(3).normal(size=(8, 12)).astype(np.float32)  # one base per sample
    mask = np.array([True, False, True, False])
    latents, source = draw_controlled(bank, SAE4, 8, 9, False, bases, mask)
    kept = ~mask[SAE4]
    assert np.array_equal(latents[:, kept], bases[:, kept])
    assert (source[:, ~mask] == -1).all() and (source[:, mask] >= 0).all()
    for v in np.flatnonzero(mask):
        chunk = slice(3 * v, 3 * v + 3)
        assert np.array_equal(latents[:, chunk], bank[source[:, v], chunk])


def test_per_dimension_mask_applies_to_each_dimension_of_a_variable(bank, base):
    mask = np.array([False, True, False, False])
    latents, source = draw_controlled(bank, SAE4, 6, 2, True, base, mask)
    assert np.array_equal(latents[:, 3:6], bank[source[:, 3:6], np.arange(3, 6)])
    assert (source[:, 3:6] >= 0).all() and (np.delete(source, [3, 4, 5], axis=1) == -1).all()
    assert np.array_equal(np.delete(latents, [3, 4, 5], axis=1), np.repeat(np.delete(base, [3, 4, 5], axis=1), 6, 0))


def test_traversal_sweeps_one_dimension_from_min_to_max():
    start = np.arange(12, dtype=np.float32)
    lo, hi = -np.ones(12, np.float32), np.full(12, 3.0, np.float32)
    latents = traversal(start, 4, 5, lo, hi)
    assert latents.shape == (5, 12) and latents.dtype == np.float32
    assert np.allclose(latents[:, 4], [-1, 0, 1, 2, 3])
    assert np.array_equal(np.delete(latents, 4, axis=1), np.repeat(np.delete(start, 4)[None], 5, axis=0))
