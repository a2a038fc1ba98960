"""The counter-based draw: its integer arithmetic, and the numpy reference against the ONNX graph bit for bit."""

import numpy as np
import onnxruntime as ort
import pytest

from sae.core.draw import DISTINCT, DRAW_MODES, INDEPENDENT, PER_DIMENSION, bounded, key_hash, mix, source_index
from sae.export.draw_graph import draw_model

SAE4 = np.repeat(np.arange(4), 3)


def test_mix_is_splitmix64():
    """splitmix64 from state 0 gives 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, ... (Vigna's reference outputs); its
    k-th output is mix applied to (k - 1) * gamma."""
    gamma = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        states = np.arange(3, dtype=np.uint64) * gamma
    assert [int(v) for v in mix(states)] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def test_bounded_is_the_exact_multiply_high():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, size=2000, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, 2000, np.uint64)
    for n in (1, 2, 7, 128, 1000, 2**20, 2**32 - 1):
        got = bounded(hashes, n)
        assert [int(g) for g in got] == [(int(h) * n) >> 64 for h in hashes]
        assert got.min() >= 0 and got.max() < n
    assert int(bounded(np.uint64(2**64 - 1), 2**32 - 1)) == 2**32 - 2


def test_bounded_refuses_a_range_it_cannot_reduce_to():
    for n in (0, 2**32):
        with pytest.raises(ValueError, match="range of an index must be in 1..2"):
            bounded(np.uint64(5), n)


def test_key_hash_depends_on_each_key_word_and_refuses_a_negative_seed():
    base = key_hash(3, np.uint64(4), np.uint64(5))
    assert base != key_hash(4, np.uint64(4), np.uint64(5)) != key_hash(3, np.uint64(5), np.uint64(5))
    assert base != key_hash(3, np.uint64(4), np.uint64(6)) and key_hash(3, np.uint64(4), np.uint64(5)) == base
    with pytest.raises(ValueError, match="seed must be in 0..2"):
        key_hash(-1, np.uint64(0), np.uint64(0))


def test_a_sample_depends_only_on_seed_and_its_index():
    """The counter-based draw: the first rows of a larger draw are the smaller draw of the same seed."""
    for mode in DRAW_MODES:
        groups = 12 if mode == PER_DIMENSION else 4
        assert np.array_equal(source_index(9, 5, groups, 128, mode), source_index(9, 40, groups, 128, mode)[:5])


@pytest.mark.parametrize("num_stored,num_groups", [(4, 4), (5, 3), (128, 12)])
def test_distinct_draw_is_a_uniform_arrangement(num_stored, num_groups):
    source = source_index(1, 20_000, num_groups, num_stored, DISTINCT)
    assert (np.sort(source, axis=1)[:, 1:] != np.sort(source, axis=1)[:, :-1]).all()
    for g in range(num_groups):  # each position takes each stored vector with chance 1/N
        counts = np.bincount(source[:, g], minlength=num_stored)
        expected = len(source) / num_stored
        assert np.abs(counts - expected).max() < 6 * np.sqrt(expected)


@pytest.mark.parametrize("mode", DRAW_MODES)
def test_onnx_graph_draws_what_numpy_draws(mode):
    """Hundreds of (seed, count) pairs, edge seeds included: identical SOURCE_INDEX and LATENT."""
    bank = np.random.default_rng(1).normal(size=(128, 12)).astype(np.float32)
    session = ort.InferenceSession(draw_model(bank, SAE4, mode).SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2)
    seeds = [0, 1, 2**32 - 1, 2**32, 2**63 - 1, *rng.integers(0, 2**63 - 1, size=295)]
    counts = [1, 256, *rng.integers(1, 257, size=298)]
    groups = 12 if mode == PER_DIMENSION else 4
    dims = np.arange(12) if mode == PER_DIMENSION else SAE4
    for seed, count in zip(seeds, counts):
        latents, source = session.run(
            None, {"NUM_SAMPLES": np.array([count], np.int64), "SEED": np.array([seed], np.int64)}
        )
        expected = source_index(int(seed), int(count), groups, 128, mode)
        assert np.array_equal(source, expected), (mode, seed, count)
        assert np.array_equal(latents, bank[expected[:, dims], np.arange(12)])


def test_graph_refuses_a_distinct_draw_the_bank_cannot_serve():
    with pytest.raises(ValueError, match="at least as many stored latents as variables"):
        draw_model(np.zeros((3, 4), np.float32), np.arange(4), DISTINCT)
    with pytest.raises(ValueError, match="draw mode must be one of"):
        draw_model(np.zeros((3, 4), np.float32), np.arange(4), "per_variable")
    assert INDEPENDENT == DRAW_MODES[0]


# SOURCE_INDEX pinned as literals (computed once from core/draw.py, bank of 128, latent of 12; 4 groups otherwise):
# a change to the draw made alike in numpy and in the ONNX graph still fails here.
PINNED_SOURCE_INDEX = {
    (INDEPENDENT, 0, 4): [[17, 33, 73, 104], [74, 86, 122, 94], [15, 100, 44, 19], [31, 30, 64, 41]],
    (INDEPENDENT, 12345, 3): [[84, 53, 12, 29], [16, 24, 110, 29], [127, 54, 6, 2]],
    (DISTINCT, 0, 4): [[17, 33, 74, 104], [74, 86, 122, 95], [15, 100, 45, 22], [31, 0, 65, 43]],
    (DISTINCT, 12345, 3): [[84, 54, 13, 31], [16, 25, 111, 31], [127, 55, 8, 5]],
    (PER_DIMENSION, 0, 4): [
        [17, 33, 73, 104, 0, 97, 60, 33, 12, 126, 86, 65],
        [74, 86, 122, 94, 95, 99, 87, 55, 126, 16, 93, 76],
        [15, 100, 44, 19, 77, 103, 71, 91, 58, 78, 116, 91],
        [31, 30, 64, 41, 110, 18, 18, 15, 79, 123, 36, 122],
    ],
    (PER_DIMENSION, 12345, 3): [
        [84, 53, 12, 29, 115, 38, 111, 47, 46, 20, 120, 22],
        [16, 24, 110, 29, 86, 28, 64, 69, 76, 96, 14, 84],
        [127, 54, 6, 2, 2, 77, 73, 73, 58, 44, 15, 63],
    ],
}


@pytest.mark.parametrize("mode,seed,count", sorted(PINNED_SOURCE_INDEX))
def test_source_index_equals_the_pinned_table(mode, seed, count):
    groups = 12 if mode == PER_DIMENSION else 4
    got = source_index(seed, count, groups, 128, mode)
    assert got.dtype == np.int64 and got.tolist() == PINNED_SOURCE_INDEX[(mode, seed, count)]
