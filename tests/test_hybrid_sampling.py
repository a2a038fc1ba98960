"""The sampler's draws and the traversal, tested directly on the code the server runs (repository/templates)."""

import math

import numpy as np
import pytest

from sae.core.draw import DRAW_MODES as CLIENT_DRAW_MODES
from sae.repository.templates.common import BadRequest
from sae.repository.templates.sampler_model import (
    DISTINCT,
    DRAW_MODES,
    INDEPENDENT,
    PER_DIMENSION,
    draw_controlled,
    draw_hybrid,
    draw_mode,
    draw_prior,
)
from sae.repository.templates.traverse_model import traversal

SAE4 = np.repeat(np.arange(4), 3)  # SAE-4: 4 variables of 3 dimensions


@pytest.fixture
def bank():
    return np.random.default_rng(1).normal(size=(128, 12)).astype(np.float32)


@pytest.fixture
def base():
    return np.random.default_rng(2).normal(size=(1, 12)).astype(np.float32)


def repeat_probability(k: int, n: int) -> float:
    """Chance that k independent uniform choices among n items are not all different: 1 - n!/((n-k)! n^k)."""
    return 1.0 - math.prod((n - i) / n for i in range(k))


def share_with_a_repeat(source: np.ndarray) -> float:
    """Share of samples (rows) in which two groups come from the same stored vector."""
    ordered = np.sort(source, axis=1)
    return float((np.diff(ordered, axis=1) == 0).any(axis=1).mean())


@pytest.mark.parametrize("mode", [INDEPENDENT, DISTINCT])
def test_each_variable_chunk_is_the_same_chunk_of_a_stored_vector(bank, mode):
    latents, source = draw_hybrid(bank, SAE4, 64, seed=7, mode=mode)
    assert latents.shape == (64, 12) and source.shape == (64, 4)
    for n in range(64):
        for v in range(4):
            chunk = slice(3 * v, 3 * v + 3)
            matches = np.flatnonzero((bank[:, chunk] == latents[n, chunk]).all(axis=1))
            assert source[n, v] in matches


@pytest.mark.parametrize("k,n_stored", [(12, 128), (3, 4)])
def test_independent_draws_repeat_stored_vectors_as_often_as_chance_says(k, n_stored):
    """The paper's hybrid sampling chooses each variable independently and uniformly from the N stored latents, so
    a sample reuses a stored vector with probability 1 - N!/((N-k)! N^k) (k=12, N=128: about 41%)."""
    bank = np.random.default_rng(0).normal(size=(n_stored, k)).astype(np.float32)
    draws = 20_000
    _, source = draw_hybrid(bank, np.arange(k), draws, seed=1)
    p = repeat_probability(k, n_stored)
    sigma = math.sqrt(p * (1 - p) / draws)
    assert abs(share_with_a_repeat(source) - p) < 5 * sigma, (share_with_a_repeat(source), p, sigma)
    assert 0.4 < repeat_probability(12, 128) < 0.42


@pytest.mark.parametrize("k,n_stored", [(12, 128), (3, 4), (4, 4)])
def test_distinct_draws_never_repeat_a_stored_vector_within_a_sample(k, n_stored):
    bank = np.random.default_rng(0).normal(size=(n_stored, k)).astype(np.float32)
    _, source = draw_hybrid(bank, np.arange(k), 5_000, seed=1, mode=DISTINCT)
    assert share_with_a_repeat(source) == 0.0
    assert np.bincount(source.ravel(), minlength=n_stored).min() > 0


def test_distinct_draw_refuses_a_bank_smaller_than_the_variables():
    with pytest.raises(ValueError, match="at least as many stored latents as variables"):
        draw_hybrid(np.zeros((3, 4), np.float32), np.arange(4), 2, seed=0, mode=DISTINCT)


def test_draw_modes_are_named_alike_on_both_sides_of_the_wire():
    assert DRAW_MODES == CLIENT_DRAW_MODES == (INDEPENDENT, DISTINCT, PER_DIMENSION)
    assert draw_mode(None, False) == INDEPENDENT, "the paper's independent draw is the default"
    assert draw_mode(None, True) == PER_DIMENSION and draw_mode(b"distinct", False) == DISTINCT
    assert draw_mode(b"per_dimension", True) == PER_DIMENSION
    with pytest.raises(BadRequest, match="DRAW must be one of independent, distinct, per_dimension"):
        draw_mode(b"groups", False)
    with pytest.raises(BadRequest, match="PER_DIMENSION=true .* DRAW asks for distinct"):
        draw_mode(b"distinct", True)


def test_per_dimension_draw_mixes_dimensions_of_one_variable(bank):
    latents, source = draw_hybrid(bank, SAE4, 64, seed=7, mode=PER_DIMENSION)
    assert source.shape == (64, 12)
    assert np.array_equal(latents, bank[source, np.arange(12)])
    by_variable = source.reshape(64, 4, 3)
    assert (by_variable != by_variable[:, :, :1]).any(axis=(1, 2)).all(), "every sample mixes a variable's dimensions"
    assert (source[:, 0] != source[:, 1]).mean() > 0.95, "dimensions 0 and 1 share a source with chance 1/128"


@pytest.mark.parametrize("mode", DRAW_MODES)
def test_same_seed_same_draw_other_seed_other_draw(bank, mode):
    partition = np.arange(12)
    a, _ = draw_hybrid(bank, partition, 16, seed=3, mode=mode)
    b, _ = draw_hybrid(bank, partition, 16, seed=3, mode=mode)
    c, _ = draw_hybrid(bank, partition, 16, seed=4, mode=mode)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("mode", DRAW_MODES)
def test_draw_is_uniform_over_the_bank(bank, mode):
    _, source = draw_hybrid(bank, np.arange(12), 4000, seed=0, mode=mode)
    counts = np.bincount(source.ravel(), minlength=128)
    expected = source.size / 128
    assert counts.min() > 0.7 * expected and counts.max() < 1.3 * expected


def test_unknown_draw_mode_is_refused_by_name(bank):
    with pytest.raises(ValueError, match="draw mode must be one of independent, distinct, per_dimension"):
        draw_hybrid(bank, SAE4, 2, seed=0, mode="per_variable")


@pytest.mark.parametrize("mode", DRAW_MODES)
def test_mask_all_true_is_the_plain_hybrid_draw(bank, base, mode):
    plain = draw_hybrid(bank, SAE4, 16, seed=5, mode=mode)
    masked = draw_controlled(bank, SAE4, 16, 5, mode, base, np.ones(4, bool))
    assert np.array_equal(plain[0], masked[0]) and np.array_equal(plain[1], masked[1])


@pytest.mark.parametrize("mode", DRAW_MODES)
def test_mask_all_false_keeps_the_base(bank, base, mode):
    latents, source = draw_controlled(bank, SAE4, 5, 5, mode, base, np.zeros(4, bool))
    assert np.array_equal(latents, np.repeat(base, 5, axis=0))
    assert (source == -1).all() and source.shape == (5, 12 if mode == PER_DIMENSION else 4)


def test_masked_variables_are_redrawn_the_others_kept(bank):
    bases = np.random.default_rng(3).normal(size=(8, 12)).astype(np.float32)  # one base per sample
    mask = np.array([True, False, True, False])
    latents, source = draw_controlled(bank, SAE4, 8, 9, INDEPENDENT, bases, mask)
    kept = ~mask[SAE4]
    assert np.array_equal(latents[:, kept], bases[:, kept])
    assert (source[:, ~mask] == -1).all() and (source[:, mask] >= 0).all()
    for v in np.flatnonzero(mask):
        chunk = slice(3 * v, 3 * v + 3)
        assert np.array_equal(latents[:, chunk], bank[source[:, v], chunk])


def test_per_dimension_mask_applies_to_each_dimension_of_a_variable(bank, base):
    mask = np.array([False, True, False, False])
    latents, source = draw_controlled(bank, SAE4, 6, 2, PER_DIMENSION, base, mask)
    assert np.array_equal(latents[:, 3:6], bank[source[:, 3:6], np.arange(3, 6)])
    assert (source[:, 3:6] >= 0).all() and (np.delete(source, [3, 4, 5], axis=1) == -1).all()
    assert np.array_equal(np.delete(latents, [3, 4, 5], axis=1), np.repeat(np.delete(base, [3, 4, 5], axis=1), 6, 0))


def test_prior_draw_is_seeded_and_follows_the_stored_moments():
    mean, std = np.array([0.0, 2.0, -1.0], np.float32), np.array([1.0, 0.5, 3.0], np.float32)
    a, b, c = draw_prior(mean, std, 20_000, 4), draw_prior(mean, std, 20_000, 4), draw_prior(mean, std, 20_000, 5)
    assert a.shape == (20_000, 3) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.allclose(a.mean(axis=0), mean, atol=5 * std / np.sqrt(20_000))
    assert np.allclose(a.std(axis=0), std, rtol=0.03)


def test_traversal_sweeps_one_dimension_from_min_to_max():
    start = np.arange(12, dtype=np.float32)
    lo, hi = -np.ones(12, np.float32), np.full(12, 3.0, np.float32)
    latents = traversal(start, 4, 5, lo, hi)
    assert latents.shape == (5, 12) and latents.dtype == np.float32
    assert np.allclose(latents[:, 4], [-1, 0, 1, 2, 3])
    assert np.array_equal(np.delete(latents, 4, axis=1), np.repeat(np.delete(start, 4)[None], 5, axis=0))
