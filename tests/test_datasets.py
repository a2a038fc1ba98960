import h5py
import numpy as np
import pytest

from clients.datasets import DatasetError, H5Images, batches_in_order, shuffled_batches, split_indices


def _write(path, n=100, size=8, dtype=np.uint8):
    with h5py.File(path, "w") as f:
        f["images"] = (np.arange(n)[:, None, None, None] % 256 * np.ones((1, size, size, 3))).astype(dtype)
        f["labels"] = np.arange(n, dtype=np.float64)[:, None].repeat(6, 1)
    return path


def test_split_is_70_10_20_disjoint_complete_and_deterministic():
    a, b = split_indices(1000, seed=3), split_indices(1000, seed=3)
    assert [len(a[k]) for k in ("train", "val", "test")] == [700, 100, 200]
    assert all(np.array_equal(a[k], b[k]) for k in a)
    joined = np.concatenate(list(a.values()))
    assert len(np.unique(joined)) == 1000
    assert not np.array_equal(split_indices(1000, seed=4)["test"], a["test"])


def test_shuffled_batches_visit_each_row_at_most_once_and_in_random_order(tmp_path):
    data = H5Images(_write(tmp_path / "d.h5", n=100))
    rows = split_indices(100)["train"]
    batches = list(shuffled_batches(data, rows, 16, np.random.default_rng(0), window=32))
    seen = np.concatenate([b[:, 0, 0, 0] for b in batches]).astype(int)
    assert len(seen) == 70 // 16 * 16 and len(np.unique(seen)) == len(seen)
    assert set(seen) <= set(rows)
    assert not np.all(np.diff(seen) > 0), "rows should be shuffled"


def test_batches_in_order_cover_every_row_once(tmp_path):
    data = H5Images(_write(tmp_path / "d.h5", n=50))
    rows = np.arange(50)
    got = [(r, im) for r, im in batches_in_order(data, rows, 16)]
    assert [len(r) for r, _ in got] == [16, 16, 16, 2]
    assert np.array_equal(np.concatenate([im[:, 0, 0, 0] for _, im in got]), rows)


def test_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(DatasetError, match="sae data"):
        H5Images(tmp_path / "nope.h5")


def test_corrupt_file_is_reported_not_crashed_on(tmp_path):
    path = tmp_path / "bad.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 100)
    with pytest.raises(DatasetError, match="not a readable HDF5"):
        H5Images(path)


def test_truncated_file_is_reported(tmp_path):
    path = _write(tmp_path / "t.h5", n=400, size=16)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError):
        data = H5Images(path)
        data.read(np.arange(400))


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_wrong_image_dtype_is_refused(tmp_path, dtype):
    with pytest.raises(DatasetError, match="uint8"):
        H5Images(_write(tmp_path / "f.h5", dtype=dtype))


def test_file_without_images_names_what_it_found(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["pixels"] = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(DatasetError, match="pixels"):
        H5Images(tmp_path / "x.h5")
