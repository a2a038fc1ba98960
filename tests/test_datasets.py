import h5py
import numpy as np
import pytest

from sae.core.datasets import (
    SHAPES3D_FACTOR_NAMES,
    SHAPES3D_FACTOR_SIZES,
    SHAPES3D_FACTOR_VALUES,
    DatasetError,
    H5Images,
    ImageSource,
    NpzImages,
    batches_in_order,
    dataset_splits,
    open_dataset,
    parse_exclude,
    procedural,
    shuffled_batches,
    split_indices,
)


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
    batches = list(shuffled_batches(data, rows, 16, np.random.default_rng(0), block=8, blocks_per_buffer=2))
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


# --- open_dataset, factors, exclusion and splits ---------------------------------------------------------------------


def _write_shapes3d(path, step=800, attrs=False):
    """A small file in the real 3dshapes.h5 layout: every ``step``-th grid point, images tagged with their row."""
    flat = np.arange(0, procedural.NUM_IMAGES, step)
    idx = procedural.factor_indices_from_flat(flat)
    with h5py.File(path, "w") as f:
        images = np.zeros((len(flat), 8, 8, 3), np.uint8)
        images[:, 0, 0, 0] = np.arange(len(flat)) % 256
        images[:, 0, 0, 1] = np.arange(len(flat)) // 256
        f["images"] = images
        f["labels"] = procedural.labels_from_factor_indices(idx)
        if attrs:  # like the procedural files
            f.attrs["factor_names"] = np.array(procedural.FACTOR_NAMES, dtype=h5py.string_dtype())
            f.attrs["factor_sizes"] = np.array(procedural.FACTOR_SIZES)
    return path, idx


def _row_tags(images):
    return images[:, 0, 0, 0].astype(int) + 256 * images[:, 0, 0, 1].astype(int)


def test_shapes3d_constants_match_the_procedural_generator():
    assert SHAPES3D_FACTOR_NAMES == procedural.FACTOR_NAMES
    assert SHAPES3D_FACTOR_SIZES == procedural.FACTOR_SIZES
    assert all(np.array_equal(a, b) for a, b in zip(SHAPES3D_FACTOR_VALUES, procedural.FACTOR_VALUES))


@pytest.mark.parametrize("attrs", [False, True], ids=["real-layout", "procedural-attrs"])
def test_shapes3d_h5_has_the_six_factors_and_reads_them_from_labels(tmp_path, attrs):
    path, idx = _write_shapes3d(tmp_path / "3dshapes.h5", attrs=attrs)
    data = open_dataset(path)
    assert isinstance(data, H5Images) and isinstance(data, ImageSource)
    assert data.factor_names == procedural.FACTOR_NAMES and data.factor_sizes == procedural.FACTOR_SIZES
    assert np.array_equal(data.rows, np.arange(len(idx)))
    assert np.array_equal(data.read_factors(slice(None)), idx)
    assert np.array_equal(data.read_factors(np.array([3, 10])), idx[[3, 10]])
    assert data.read(slice(0, 4)).shape == (4, 8, 8, 3)


def test_excluding_the_sphere_removes_it_from_every_split(tmp_path):
    path, idx = _write_shapes3d(tmp_path / "3dshapes.h5")
    data = open_dataset(path, exclude={"shape": [2]})
    assert np.array_equal(data.rows, np.flatnonzero(idx[:, 4] != 2))
    assert 0 < len(data.rows) < len(data)
    full = split_indices(len(data), seed=0)
    splits = dataset_splits(data, seed=0)
    for name, rows in splits.items():
        assert len(rows) and not np.any(idx[rows, 4] == 2), name
        assert not np.any(data.read_factors(rows)[:, 4] == 2)
        assert np.all(np.isin(rows, full[name])), "a kept row must stay in the split it has without exclude"
    joined = np.concatenate(list(splits.values()))
    assert len(np.unique(joined)) == len(joined) == len(data.rows)
    assert np.array_equal(np.sort(joined), data.rows)
    # the images read for a split are the rows asked for
    got = np.concatenate([im for _, im in batches_in_order(data, splits["test"], 64)])
    assert np.array_equal(_row_tags(got), splits["test"])


def test_excluding_several_factors_keeps_only_rows_with_none_of_the_values(tmp_path):
    path, idx = _write_shapes3d(tmp_path / "3dshapes.h5", step=97)
    data = open_dataset(path, exclude={"shape": [2, 3], "floor_hue": [0], "orientation": []})
    keep = ~np.isin(idx[:, 4], [2, 3]) & (idx[:, 0] != 0)
    assert np.array_equal(data.rows, np.flatnonzero(keep))
    batches = list(shuffled_batches(data, dataset_splits(data)["train"], 32, np.random.default_rng(0)))
    tags = _row_tags(np.concatenate(batches))
    assert np.all(keep[tags]) and len(np.unique(tags)) == len(tags)


def test_without_exclude_the_splits_are_split_indices(tmp_path):
    data = open_dataset(_write_shapes3d(tmp_path / "3dshapes.h5")[0])
    expected = split_indices(len(data), seed=5)
    assert all(np.array_equal(dataset_splits(data, seed=5)[k], expected[k]) for k in expected)


@pytest.mark.parametrize(
    "exclude, message",
    [
        ({"colour": [1]}, "unknown factor 'colour'.*floor_hue"),
        ({"shape": [4]}, "'shape'.*index 4 is out of range.*0…3"),
        ({"shape": [-1]}, "index -1 is out of range"),
        ({"scale": [0.75]}, "'scale'.*0.75 is not a factor index"),
        ({"shape": [0, 1, 2, 3]}, "all 4 values of 'shape'"),
        ({"shape": 2}, "must be a list"),
    ],
)
def test_bad_exclude_names_the_factor_or_value(tmp_path, exclude, message):
    path, _ = _write_shapes3d(tmp_path / "3dshapes.h5")
    with pytest.raises(ValueError, match=message):
        open_dataset(path, exclude=exclude)


def test_exclude_on_a_file_without_factors_is_refused(tmp_path):
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["images"] = np.zeros((10, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="no factors"):
        open_dataset(tmp_path / "plain.h5", exclude={"shape": [2]})
    assert open_dataset(tmp_path / "plain.h5").factor_sizes == ()


def test_off_grid_3dshapes_labels_are_reported(tmp_path):
    path = _write(tmp_path / "d.h5", n=20)  # 6 label columns holding 0…19: not 3D-Shapes values
    data = open_dataset(path)
    with pytest.raises(DatasetError, match="label .* of factor 'floor_hue' is not one of its values"):
        data.read_factors(slice(None))


def test_unknown_suffix_and_missing_path_are_reported(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DatasetError, match="unknown dataset format '.csv'"):
        open_dataset(tmp_path / "x.csv")
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(tmp_path / "missing.npz")


def test_readers_pickle_for_worker_processes(tmp_path):
    import pickle

    h5 = open_dataset(_write_shapes3d(tmp_path / "3dshapes.h5")[0], exclude={"shape": [2]})
    h5.read(slice(0, 1))
    npz = tmp_path / "m.npz"
    np.savez(npz, images=np.arange(5 * 64 * 64 * 3, dtype=np.uint64).astype(np.uint8).reshape(5, 64, 64, 3))
    for data in (h5, NpzImages(npz)):
        copy = pickle.loads(pickle.dumps(data))
        assert np.array_equal(copy.rows, data.rows)
        assert np.array_equal(copy.read(slice(0, 3)), data.read(slice(0, 3)))


def test_parse_exclude_reads_the_command_line_spelling(tmp_path):
    assert parse_exclude(["shape=2", "floor_hue=0,1", "shape=3"]) == {"shape": [2, 3], "floor_hue": [0, 1]}
    assert parse_exclude([]) == {}
    for bad, message in [
        ("shape", "expected FACTOR=INDEX"),
        ("shape=", "expected FACTOR=INDEX"),
        ("scale=0.75", "values must be factor indices"),
    ]:
        with pytest.raises(ValueError, match=f"--exclude '{bad}': {message}"):
            parse_exclude([bad])
    path, idx = _write_shapes3d(tmp_path / "3dshapes.h5")
    assert np.array_equal(open_dataset(path, exclude=parse_exclude(["shape=2"])).rows, np.flatnonzero(idx[:, 4] != 2))
    with pytest.raises(ValueError, match="read-only"):
        SHAPES3D_FACTOR_VALUES[4][0] = 1.0  # shared constants are read-only


def test_shuffled_batches_mix_the_whole_file_not_one_stretch_of_it(tmp_path):
    """Files are in factor-grid order: a batch must not come from one contiguous stretch (one floor hue)."""
    n = 16384
    with h5py.File(tmp_path / "grid.h5", "w") as f:
        f.create_dataset(
            "images",
            data=np.repeat((np.arange(n) // 4096).astype(np.uint8), 12).reshape(n, 2, 2, 3),
            chunks=(256, 2, 2, 3),
        )
    data = H5Images(tmp_path / "grid.h5")
    slowest_factor = [
        len(np.unique(b[:, 0, 0, 0])) for b in shuffled_batches(data, np.arange(n), 32, np.random.default_rng(0))
    ]
    assert np.mean(slowest_factor) > 3.5, "each batch should hold most of the 4 values of the slowest factor"
