"""Streamed `sae sample` (clients/jobs/sample_writer.py): content equal to one client.sample call, bounded memory, and
clear errors for bad outputs."""

import tracemalloc

import h5py
import numpy as np
import pytest

from sae.clients.jobs import sample_writer as sw
from sae.clients.request_plans import part_seed
from sae.clients.results import HybridSamples


def fake_sampler(size: int = 8, dim: int = 4):
    """Samples determined by (count, seed) alone, like the server's sampler."""

    def sample(count: int, seed: int) -> HybridSamples:
        rng = np.random.default_rng(seed)
        return HybridSamples(
            rng.random((count, size, size, 3), dtype=np.float32),
            rng.standard_normal((count, dim), dtype=np.float32),
            rng.integers(0, 128, (count, dim)),
            "independent",
        )

    return sample


def reference(n: int, seed: int, limit: int) -> HybridSamples:
    """What a split client.sample(n, seed) joins: part p drawn with part_seed(seed, p)."""
    sample = fake_sampler()
    parts = [sample(min(limit, n - start), part_seed(seed, p)) for p, start in enumerate(range(0, n, limit))]
    return HybridSamples(
        *(np.concatenate([getattr(p, k) for p in parts]) for k in ("images", "latents", "source_index")), "independent"
    )


def test_h5_and_npz_hold_every_part_in_order(tmp_path):
    run = sw.SampleRun(n=23, seed=5, limit=7)
    expected = reference(23, 5, 7)
    sw.stream_samples(fake_sampler(), run, tmp_path / "s.h5", progress=False)
    sw.stream_samples(fake_sampler(), run, tmp_path / "s.npz", progress=False)
    with h5py.File(tmp_path / "s.h5") as f:
        h5 = {k: f[k][:] for k in ("images", "latents", "source_index")}
    npz = dict(np.load(tmp_path / "s.npz"))
    for arrays in (h5, npz):
        assert arrays["images"].dtype == np.uint8
        np.testing.assert_array_equal(arrays["images"], np.rint(expected.images * 255).astype(np.uint8))
        np.testing.assert_array_equal(arrays["latents"], expected.latents)
        np.testing.assert_array_equal(arrays["source_index"], expected.source_index)


def test_png_tiles_are_named_and_sized_by_tile(tmp_path, monkeypatch):
    monkeypatch.setattr(sw, "PNG_TILE_SAMPLES", 10)
    tiles = sw.write_png_tiles(tmp_path / "s.png", sw.sample_chunks(fake_sampler(), sw.SampleRun(25, 0, 7)), 25, 10)
    assert [p.name for p in tiles] == ["s_0000.png", "s_0001.png", "s_0002.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in tiles)
    one = sw.write_png_tiles(tmp_path / "one.png", sw.sample_chunks(fake_sampler(), sw.SampleRun(9, 0, 7)), 9, 10)
    assert one == [tmp_path / "one.png"]
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    "out, n, message",
    [
        ("s.jpg", 4, "unknown format '.jpg'"),
        ("s", 4, "no suffix"),
        ("s.npz", sw.NPZ_MAX_SAMPLES + 1, "write .h5 instead"),
    ],
)
def test_bad_outputs_are_one_clear_error(tmp_path, out, n, message):
    with pytest.raises(ValueError, match=message) as e:
        sw.stream_samples(fake_sampler(), sw.SampleRun(n, 0, 256), tmp_path / out, progress=False)
    assert "--out" in str(e.value)
    assert not list(tmp_path.iterdir())


def test_a_failing_run_leaves_no_file(tmp_path):
    def failing(count, seed):
        if seed != 0:
            raise RuntimeError("server gone")
        return fake_sampler()(count, seed)

    with pytest.raises(RuntimeError):
        sw.stream_samples(failing, sw.SampleRun(20, 0, 8), tmp_path / "s.h5", progress=False)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("suffix", [".h5", ".png"])
def test_peak_memory_is_bounded_by_a_chunk_not_by_n(tmp_path, monkeypatch, suffix):
    monkeypatch.setattr(sw, "PNG_TILE_SAMPLES", 64)  # PNG memory is bounded by a tile

    def peak(n: int) -> int:
        tracemalloc.start()
        sw.stream_samples(fake_sampler(size=16), sw.SampleRun(n, 0, 32), tmp_path / f"{n}{suffix}", progress=False)
        _, high = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return high

    small, large = peak(64), peak(2048)  # 2048 16x16 float samples: 6 MiB of images alone
    assert large < 2 * 1024 * 1024
    assert large < 2 * small + 512 * 1024


@pytest.mark.server
def test_streamed_h5_equals_one_client_sample_call(triton, tmp_path):
    from sae.clients.triton_client import SAEClient
    from sae.core.draw import to_uint8

    with SAEClient(triton.grpc_url) as client:
        limit = client.max_samples()
        n = 2 * limit + 3
        expected = client.sample(n, seed=11)
        paths = sw.stream_samples(
            lambda count, seed: client.sample(count, seed=seed),
            sw.SampleRun(n, 11, limit),
            tmp_path / "s.h5",
            progress=False,
        )
    with h5py.File(paths[0]) as f:
        np.testing.assert_array_equal(f["images"][:], to_uint8(expected.images))
        np.testing.assert_array_equal(f["latents"][:], expected.latents)
        np.testing.assert_array_equal(f["source_index"][:], expected.source_index)
