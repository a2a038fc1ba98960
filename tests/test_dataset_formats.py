"""MPI3D (.npz) and CelebA (folder of JPEGs) readers, on small files written here in each real format."""

import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest
from PIL import Image

from sae.core.datasets import (
    MPI3D_FACTOR_NAMES,
    MPI3D_FACTOR_SIZES,
    DatasetError,
    ImageSource,
    JpegFolder,
    NpzImages,
    batches_in_order,
    dataset_splits,
    open_dataset,
    shuffled_batches,
    split_indices,
    uncompress_npz,
)


def _tagged_images(n, size=64):
    """uint8 [n, size, size, 3] whose pixel (0, 0) spells the row number (red + 256 × green)."""
    images = np.zeros((n, size, size, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(n) % 256
    images[:, 0, 0, 1] = np.arange(n) // 256
    images[:, 1:, :, 2] = (np.arange(n) % 251)[:, None, None]
    return images


def _tags(images):
    return images[:, 0, 0, 0].astype(int) + 256 * images[:, 0, 0, 1].astype(int)


@pytest.fixture(scope="module")
def mpi3d(tmp_path_factory):
    path = tmp_path_factory.mktemp("mpi3d") / "mpi3d_toy.npz"
    images = _tagged_images(400)
    np.savez(path, images=images)
    return path, images


# --- MPI3D -----------------------------------------------------------------------------------------------------------


def test_mpi3d_npz_reads_images_and_derives_labels_from_the_index(mpi3d):
    path, images = mpi3d
    data = open_dataset(path)
    assert isinstance(data, NpzImages) and isinstance(data, ImageSource)
    assert data.shape == (400, 64, 64, 3) and len(data) == 400 and data.image_size == 64
    assert data.factor_names == MPI3D_FACTOR_NAMES and data.factor_sizes == (6, 6, 2, 3, 3, 40, 40)
    assert data.has_labels and np.array_equal(data.rows, np.arange(400))
    assert np.array_equal(data.read(slice(10, 20)), images[10:20])
    rows = np.array([0, 39, 40, 41, 399])
    assert np.array_equal(data.read(rows), images[rows])
    labels = data.read_labels(rows)
    assert labels.dtype == np.int64
    assert labels.tolist() == [
        [0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 39],
        [0, 0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 1, 1],
        [0, 0, 0, 0, 0, 9, 39],
    ]
    every = data.read_factors(slice(None))
    assert np.array_equal(every, np.stack(np.unravel_index(np.arange(400), MPI3D_FACTOR_SIZES), axis=1))


def test_mpi3d_labels_follow_the_full_grid_row_major(tmp_path):
    # a full-length file (1,036,800 rows of 1×1 pixels, 3 MB): the last row has every factor at its last value
    np.savez(tmp_path / "full.npz", images=np.zeros((1_036_800, 1, 1, 3), np.uint8))
    data = open_dataset(tmp_path / "full.npz")
    rows = np.array([1_036_799, 172_800 + 4800 + 2, 28_800 + 14_400 + 1600 + 40])
    assert data.read_labels(rows).tolist() == [[5, 5, 1, 2, 2, 39, 39], [1, 0, 0, 1, 0, 0, 2], [0, 1, 1, 0, 1, 1, 0]]
    assert np.array_equal(
        data.read_factors(slice(None, None, 997)),
        np.stack(np.unravel_index(np.arange(0, 1_036_800, 997), MPI3D_FACTOR_SIZES), axis=1),
    )
    with pytest.raises(IndexError, match="full.npz: row indices must be integers in 0…1036799"):
        data.read_labels(np.array([1_036_800]))


def test_mpi3d_exclusion_keeps_splits_disjoint_and_free_of_the_value(mpi3d):
    path, images = mpi3d
    data = open_dataset(path, exclude={"horizontal_axis": [0, 3], "vertical_axis": [39]})
    factors = np.stack(np.unravel_index(np.arange(400), MPI3D_FACTOR_SIZES), axis=1)
    keep = ~np.isin(factors[:, 5], [0, 3]) & (factors[:, 6] != 39)
    assert np.array_equal(data.rows, np.flatnonzero(keep))
    splits = dataset_splits(data, seed=1)
    joined = np.concatenate(list(splits.values()))
    assert len(np.unique(joined)) == len(joined) == keep.sum()
    for rows in splits.values():
        f = data.read_factors(rows)
        assert not np.isin(f[:, 5], [0, 3]).any() and not (f[:, 6] == 39).any()
    with pytest.raises(ValueError, match="'object_size'.*index 2 is out of range"):
        open_dataset(path, exclude={"object_size": [2]})


def test_mpi3d_is_memory_mapped_not_loaded(tmp_path):
    path = tmp_path / "mpi3d_real.npz"
    n = 2000  # 24.6 MB of images
    np.savez(path, images=_tagged_images(n))
    tracemalloc.start()
    try:
        data = open_dataset(path)
        row = data.read(np.array([1234]))
        one = data.read(slice(1999, 2000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(data.images, np.memmap) and data.images.mode == "r"
    assert peak < 2 * 2**20, f"opening and reading 2 rows allocated {peak} bytes of a {n * 12288}-byte array"
    assert _tags(row).tolist() == [1234] and _tags(one).tolist() == [1999]
    assert not isinstance(row, np.memmap) and row.flags.writeable  # a copy: the caller may keep or change it


def test_batches_stream_rows_of_an_npz(mpi3d):
    path, _ = mpi3d
    data = open_dataset(path, exclude={"vertical_axis": [0]})
    train = dataset_splits(data)["train"]
    seen = _tags(
        np.concatenate(list(shuffled_batches(data, train, 16, np.random.default_rng(0), block=16, blocks_per_buffer=2)))
    )
    assert len(seen) == len(train) // 16 * 16 and set(seen) <= set(train) and len(set(seen)) == len(seen)
    in_order = np.concatenate([im for _, im in batches_in_order(data, train, 50)])
    assert np.array_equal(_tags(in_order), train)


def test_small_compressed_npz_is_read_whole_with_a_warning(tmp_path):
    path = tmp_path / "c.npz"
    images = _tagged_images(30)
    np.savez_compressed(path, images=images)
    with pytest.warns(UserWarning, match="compressed; reading all"):
        data = open_dataset(path)
    assert np.array_equal(data.read(np.array([0, 29])), images[[0, 29]])
    assert not isinstance(data.images, np.memmap)


def test_large_compressed_npz_is_refused_and_uncompress_npz_fixes_it(tmp_path):
    path = tmp_path / "c.npz"
    images = _tagged_images(30)
    np.savez_compressed(path, images=images, other=np.arange(3))
    with pytest.raises(DatasetError, match=r"c.npz: 'images' is compressed.*uncompress_npz"):
        NpzImages(path, inflate_limit=1000)
    out = uncompress_npz(path, tmp_path / "u.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "compressed" warning any more
        data = open_dataset(out)
    assert isinstance(data.images, np.memmap)
    assert np.array_equal(data.read(slice(None)), images)
    assert np.array_equal(np.load(out)["other"], np.arange(3))


# --- corrupt or wrong .npz files -------------------------------------------------------------------------------------


def test_truncated_npz_is_reported(mpi3d, tmp_path):
    path = tmp_path / "cut.npz"
    path.write_bytes(mpi3d[0].read_bytes()[:100_000])
    with pytest.raises(DatasetError, match="cut.npz: not a readable .npz .zip. file.*truncated"):
        open_dataset(path)


def test_npz_whose_data_is_shorter_than_its_header_says_is_reported(tmp_path):
    path = tmp_path / "short.npz"
    header = tmp_path / "h.npy"
    np.save(header, np.zeros((10, 64, 64, 3), np.uint8))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("images.npy", header.read_bytes()[:5000])
    with pytest.raises(DatasetError, match="short.npz: 'images' .10, 64, 64, 3. needs 122880 bytes.*truncated"):
        open_dataset(path)


def test_npz_member_that_is_not_npy_is_reported(tmp_path):
    path = tmp_path / "junk.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("images.npy", b"this is not numpy")
    with pytest.raises(DatasetError, match="junk.npz: 'images' is not a .npy array"):
        open_dataset(path)


def test_not_a_zip_at_all_is_reported(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("hello")
    with pytest.raises(DatasetError, match="text.npz: not a readable .npz"):
        open_dataset(path)


def test_npz_without_images_names_what_it_found(tmp_path):
    np.savez(tmp_path / "x.npz", pixels=np.zeros((2, 64, 64, 3), np.uint8), labels=np.zeros(2))
    with pytest.raises(DatasetError, match=r"x.npz: no 'images' array \(found: \['labels', 'pixels'\]\)"):
        open_dataset(tmp_path / "x.npz")


@pytest.mark.parametrize(
    "array",
    [np.zeros((4, 64, 64, 3), np.float32), np.zeros((4, 64, 64), np.uint8), np.zeros((4, 64, 32, 3), np.uint8)],
    ids=["float32", "no-channels", "not-square"],
)
def test_npz_with_wrong_dtype_or_shape_is_refused(tmp_path, array):
    np.savez(tmp_path / "w.npz", images=array)
    with pytest.raises(DatasetError, match=f"w.npz: 'images' must be uint8 .N, H, W, 3.*got {array.dtype}"):
        open_dataset(tmp_path / "w.npz")


def test_npz_longer_than_the_mpi3d_grid_is_refused(tmp_path):
    np.savez(tmp_path / "big.npz", images=np.zeros((1_036_801, 1, 1, 3), np.uint8))
    with pytest.raises(DatasetError, match="1036801 rows, more than the 1036800 points"):
        open_dataset(tmp_path / "big.npz")


def test_corrupt_compressed_member_is_reported(tmp_path):
    path = tmp_path / "bad.npz"
    rng = np.random.default_rng(0)
    np.savez_compressed(path, images=rng.integers(0, 4, (20, 64, 64, 3), dtype=np.uint8))
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = bytes(64)
    path.write_bytes(bytes(raw))
    with pytest.warns(UserWarning), pytest.raises(DatasetError, match="bad.npz: 'images' cannot be decompressed"):
        open_dataset(path)


# --- CelebA ----------------------------------------------------------------------------------------------------------

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _banded(width, height):
    """Red | green | blue bands along the long side, the centred square green: a centre crop keeps only green."""
    image = Image.new("RGB", (width, height), GREEN)
    side = min(width, height)
    if width > height:
        lo, hi = (width - side) // 2, (width - side) // 2 + side
        image.paste(RED, (0, 0, lo, height))
        image.paste(BLUE, (hi, 0, width, height))
    else:
        lo, hi = (height - side) // 2, (height - side) // 2 + side
        image.paste(RED, (0, 0, width, lo))
        image.paste(BLUE, (0, hi, width, height))
    return image


@pytest.fixture(scope="module")
def celeba(tmp_path_factory):
    folder = tmp_path_factory.mktemp("celeba") / "img_align_celeba"
    folder.mkdir()
    sizes = {"000003.jpg": (178, 218), "000001.jpg": (200, 100), "000002.JPEG": (31, 47), "000004.jpg": (80, 160)}
    for name, (w, h) in sizes.items():
        _banded(w, h).save(folder / name, quality=95)
    (folder / "list_attr_celeba.txt").write_text("not an image")
    return folder


def test_celeba_folder_is_read_in_sorted_order_cropped_and_resized(celeba):
    data = open_dataset(celeba)
    assert isinstance(data, JpegFolder) and isinstance(data, ImageSource)
    assert [f.name for f in data.files] == ["000001.jpg", "000002.JPEG", "000003.jpg", "000004.jpg"]
    assert data.shape == (4, 128, 128, 3) and data.image_size == 128 and len(data) == 4
    assert not data.has_labels and data.factor_names == () and data.factor_sizes == ()
    images = data.read(slice(None))
    assert images.dtype == np.uint8 and images.shape == (4, 128, 128, 3)
    # Squashing without the crop would put red and blue in the outer quarters; JPEG chroma bleeds only at the edge.
    inner = images[:, 16:-16, 16:-16].astype(int)
    assert np.abs(inner - GREEN).max() < 16, "the centre crop must keep only the green square"
    assert np.abs(images.astype(int) - GREEN).mean() < 12
    for row, file in enumerate(data.files):  # exactly Pillow's crop + resize
        with Image.open(file) as im:
            w, h = im.size
            s = min(w, h)
            box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
            expected = np.asarray(im.convert("RGB").crop(box).resize((128, 128), Image.Resampling.BICUBIC))
        assert np.array_equal(images[row], expected), file.name
    assert np.array_equal(data.read(np.array([1, 3])), images[[1, 3]])


def test_celeba_archive_folder_size_option_and_grayscale(celeba, tmp_path):
    data = open_dataset(celeba.parent, celeba_size=64)  # the folder the archive was extracted into
    assert data.path == celeba and data.shape == (4, 64, 64, 3)
    Image.new("L", (50, 70), 200).save(tmp_path / "grey.jpg")
    grey = open_dataset(tmp_path).read(slice(None))
    assert grey.shape == (1, 128, 128, 3) and abs(int(grey[0, 64, 64, 0]) - 200) <= 2


def test_celeba_has_no_labels_or_factors(celeba):
    data = open_dataset(celeba)
    with pytest.raises(DatasetError, match="has no labels"):
        data.read_labels(slice(None))
    with pytest.raises(DatasetError, match="has no factors"):
        data.read_factors(slice(None))
    with pytest.raises(ValueError, match="has no factors to exclude"):
        open_dataset(celeba, exclude={"smiling": [1]})
    assert np.array_equal(dataset_splits(data)["train"], split_indices(4)["train"])


def test_celeba_batches_decode_only_the_rows_asked_for(celeba, monkeypatch):
    data = open_dataset(celeba)
    decoded = []
    real = data._decode
    monkeypatch.setattr(data, "_decode", lambda f: decoded.append(f.name) or real(f))
    batches = list(shuffled_batches(data, np.array([0, 2]), 2, np.random.default_rng(0)))
    assert len(batches) == 1 and batches[0].shape == (2, 128, 128, 3)
    assert sorted(decoded) == ["000001.jpg", "000003.jpg"]


# --- corrupt or wrong JPEG folders -----------------------------------------------------------------------------------


def test_unreadable_jpeg_is_named(tmp_path):
    _banded(64, 80).save(tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    data = open_dataset(tmp_path)
    assert data.read(slice(0, 1)).shape == (1, 128, 128, 3)
    with pytest.raises(DatasetError, match=r"b\.jpg: unreadable JPEG"):
        data.read(slice(None))


def test_truncated_jpeg_is_named(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (120, 100, 3), dtype=np.uint8)).save(tmp_path / "full.jpg", quality=90)
    raw = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "full.jpg").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match=r"full\.jpg: unreadable JPEG \(.*truncated"):
        open_dataset(tmp_path).read(np.array([0]))


def test_folder_without_jpegs_says_what_it_found(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"holds no JPEG files.*readme.txt"):
        open_dataset(tmp_path)


def test_threaded_decoding_matches_serial_and_still_names_a_bad_file(tmp_path):
    import pickle

    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (60 + i, 50, 3), dtype=np.uint8)).save(tmp_path / f"{i:03d}.jpg")
    serial, threaded = JpegFolder(tmp_path, threads=1), JpegFolder(tmp_path, threads=2)
    assert np.array_equal(threaded.read(slice(None)), serial.read(slice(None)))
    assert threaded._pool is not None, "12 files on 2 threads should use the pool"
    again = pickle.loads(pickle.dumps(threaded))
    assert np.array_equal(again.read(np.array([0, 11])), serial.read(np.array([0, 11])))
    threaded.close()
    (tmp_path / "007.jpg").write_bytes(b"broken")
    with pytest.raises(DatasetError, match=r"007\.jpg: unreadable JPEG"):
        JpegFolder(tmp_path, threads=2).read(slice(None))
    with pytest.raises(ValueError, match="threads must be ≥ 1"):
        JpegFolder(tmp_path, threads=0)
