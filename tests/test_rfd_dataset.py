"""The Robot Finger Dataset reader (sae.core.datasets.rfd), on small folders written here in the dataset's own
format."""

import gzip
import shutil

import numpy as np
import pytest
from helpers.rfd_files import (
    finger_images,
    png_bytes,
    random_factors,
    write_finger_real,
    write_finger_variant,
    write_rfd,
)

from sae.core.datasets import DatasetError, ImageSource, dataset_splits, open_dataset, shuffled_batches, varying_factors
from sae.core.datasets.rfd import RFD_FACTOR_NAMES, RFD_FACTOR_SIZES, FingerRealImages, FingerTarImages

N = 20


@pytest.fixture(scope="module")
def rfd(tmp_path_factory):
    return write_rfd(tmp_path_factory.mktemp("rfd"), n=N)


def _written(folder):
    """The images and factors a variant folder was written with, read back independently of the reader."""
    import io
    import tarfile

    from PIL import Image

    prefix = folder.name
    labels = np.load(folder / f"{prefix}_labels.npz")["labels"]
    if prefix == "finger_real":
        return np.load(folder / "finger_real_images.npz")["images"], labels
    with tarfile.open(folder / f"{prefix}_images.tar") as tar:
        images = {
            int(m.name.split("/")[-1][:-4]): np.asarray(Image.open(io.BytesIO(tar.extractfile(m).read())))
            for m in tar.getmembers()
        }
    return np.stack([images[i] for i in range(len(images))]), labels


@pytest.mark.parametrize("variant", ["finger", "finger_heldout_colors", "finger_real"])
def test_each_variant_folder_reads_its_images_and_factors(rfd, variant):
    source = open_dataset(rfd / variant)
    assert isinstance(source, ImageSource)
    assert isinstance(source, FingerRealImages if variant == "finger_real" else FingerTarImages)
    images, labels = _written(rfd / variant)
    assert source.shape == (N, 128, 128, 3) and source.image_size == 128
    np.testing.assert_array_equal(source.read(np.arange(N)), images)
    np.testing.assert_array_equal(source.read(slice(3, 9)), images[3:9])
    np.testing.assert_array_equal(source.read_factors(np.array([0, 7, 19])), labels[[0, 7, 19]])
    assert source.factor_names == RFD_FACTOR_NAMES and source.factor_sizes == RFD_FACTOR_SIZES
    assert source.has_labels and len(source.rows) == N


def test_the_datasets_folder_means_its_training_variant(rfd):
    source = open_dataset(rfd)
    assert isinstance(source, FingerTarImages) and source.path == rfd / "finger" / "finger_images.tar"
    np.testing.assert_array_equal(source.read(np.array([4])), _written(rfd / "finger")[0][[4]])


def test_constant_factors_are_marked_for_the_metrics(rfd):
    source = open_dataset(rfd)
    assert [source.factor_names[k] for k in varying_factors(source)] == [
        "colour",
        "joint0",
        "joint1",
        "joint2",
        "x",
        "y",
        "angle",
    ]


def test_finger_real_images_are_memory_mapped(rfd):
    assert isinstance(open_dataset(rfd / "finger_real").images, np.memmap)


def test_tar_members_are_found_by_their_number_not_their_order(tmp_path):
    """The reader indexes the tar once and reads each row's own member, whatever order the tar stores them in."""
    import io
    import tarfile

    factors = random_factors(6, seed=3)
    images = finger_images(factors)
    folder = write_finger_variant(tmp_path, images, factors)
    with tarfile.open(folder / "finger_images.tar", "w") as tar:
        for i in (4, 1, 5, 0, 3, 2):
            data = png_bytes(images[i])
            info = tarfile.TarInfo(f"finger/images/{i}.png")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    source = open_dataset(folder)
    np.testing.assert_array_equal(source.read(np.array([2, 4])), images[[2, 4]])


def test_exclude_splits_and_batches_work_on_rfd(rfd):
    source = open_dataset(rfd, exclude={"colour": [0, 1, 2, 3]})
    kept = source.read_factors(source.rows)
    assert len(source.rows) < N and (kept[:, 1] >= 4).all()
    splits = dataset_splits(source)
    assert set(np.concatenate(list(splits.values()))) == set(source.rows.tolist())
    batch = next(shuffled_batches(source, splits["train"], 2, np.random.default_rng(0)))
    assert batch.shape == (2, 128, 128, 3) and batch.dtype == np.uint8
    with pytest.raises(ValueError, match="leaves out all 1 values of 'shape'"):
        open_dataset(rfd, exclude={"shape": [0]})


# --- bad files: one clear error naming the file ----------------------------------------------------------------------


def _variant(tmp_path, n=5, **kwargs):
    factors = random_factors(n, seed=1)
    return write_finger_variant(tmp_path, finger_images(factors), factors, **kwargs), factors


def test_missing_member_is_named(tmp_path):
    import io
    import tarfile

    folder, _ = _variant(tmp_path)
    with tarfile.open(folder / "finger_images.tar", "w") as tar:
        for i in (0, 1, 2, 4, 5):
            info = tarfile.TarInfo(f"images/{i}.png")
            data = png_bytes(np.zeros((128, 128, 3), np.uint8))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DatasetError, match=r"finger_images\.tar: member 3\.png is missing"):
        open_dataset(folder)


def test_corrupt_png_is_named_with_its_member(tmp_path):
    folder, _ = _variant(tmp_path, members={3: b"\x89PNG\r\n\x1a\n garbage"})
    source = open_dataset(folder)
    source.read(np.array([0, 1, 2]))
    with pytest.raises(DatasetError, match=r"finger_images\.tar member 3\.png: unreadable PNG"):
        source.read(np.array([2, 3]))


@pytest.mark.parametrize(
    "write, count, message",
    [
        (write_finger_variant, 3, r"finger_images\.tar: 0\.png is 64×64, RFD images are 128×128"),
        (write_finger_real, 4, r"finger_real_images\.npz: 'images' must be uint8 \[N, 128, 128, 3\]"),
    ],
    ids=["png-in-tar", "finger-real-npz"],
)
def test_images_of_the_wrong_size_are_refused(tmp_path, write, count, message):
    factors = random_factors(count)
    folder = write(tmp_path, finger_images(factors, size=64), factors)
    with pytest.raises(DatasetError, match=message):
        open_dataset(folder)


def test_labels_with_the_wrong_key_are_named(tmp_path):
    folder, factors = _variant(tmp_path)
    np.savez(folder / "finger_labels.npz", label=factors)
    with pytest.raises(DatasetError, match=r"finger_labels\.npz has no 'labels' array \(found: \['label'\]\)"):
        open_dataset(folder)


def test_label_rows_must_match_the_images(tmp_path):
    folder, factors = _variant(tmp_path)
    np.savez(folder / "finger_labels.npz", labels=factors[:-1])
    with pytest.raises(DatasetError, match=r"finger_labels\.npz: 'labels' has 4 rows but there are 5 images"):
        open_dataset(folder)


def test_labels_must_be_factor_indices(tmp_path):
    folder, factors = _variant(tmp_path)
    bad = factors.copy()
    bad[2, 8] = 10  # angle has 10 values
    np.savez(folder / "finger_labels.npz", labels=bad)
    with pytest.raises(DatasetError, match=r"finger_labels\.npz: label 10 of factor 'angle' \(row 2\)"):
        open_dataset(folder)


def test_pickled_labels_are_refused_not_unpickled(tmp_path):
    folder, factors = _variant(tmp_path)
    np.savez(folder / "finger_labels.npz", labels=factors.astype(object))
    with pytest.raises(DatasetError, match=r"finger_labels\.npz: 'labels' is a pickled object array"):
        open_dataset(folder)


def test_info_needs_nine_factor_sizes_and_the_right_size(tmp_path):
    folder, _ = _variant(tmp_path)
    np.savez(folder / "finger_info.npz", num_factor_values=np.array([8, 30]))
    with pytest.raises(DatasetError, match=r"finger_info\.npz: 'num_factor_values' must give 9 positive sizes"):
        open_dataset(folder)
    np.savez(folder / "finger_info.npz", num_factor_values=np.array(RFD_FACTOR_SIZES), dataset_size=np.array(6))
    with pytest.raises(DatasetError, match=r"finger_info\.npz: 'dataset_size' is 6 but there are 5 images"):
        open_dataset(folder)
    (folder / "finger_info.npz").unlink()
    with pytest.raises(DatasetError, match=r"RFD file .*finger_info\.npz does not exist"):
        open_dataset(folder)


def test_compressed_or_missing_tar_is_named(tmp_path):
    folder, _ = _variant(tmp_path)
    tar = folder / "finger_images.tar"
    with open(tar, "rb") as fin, gzip.open(folder / "tmp.gz", "wb") as fout:
        shutil.copyfileobj(fin, fout)
    (folder / "tmp.gz").replace(tar)
    with pytest.raises(DatasetError, match=r"finger_images\.tar is not a readable uncompressed tar"):
        open_dataset(folder)
    tar.unlink()
    with pytest.raises(DatasetError, match=r"RFD file .*finger_images\.tar does not exist"):
        open_dataset(folder)


def test_unknown_variant_is_named(rfd):
    from sae.core.datasets.rfd import rfd_variant_folder

    with pytest.raises(ValueError, match="RFD variant 'finger_fake' is not one of"):
        rfd_variant_folder(rfd, "finger_fake")
    assert rfd_variant_folder(rfd, "finger_real") == (rfd / "finger_real", "finger_real")


# --- the metrics skip single-valued factors --------------------------------------------------------------------------


def test_disentanglement_metrics_skip_the_constant_factors():
    """Scores with RFD's constant shape and size columns equal the scores without them."""
    pytest.importorskip("sklearn")
    from sae.evaluation.disentanglement import dci, evaluate_all

    rng = np.random.default_rng(0)
    factors = random_factors(600, seed=5)
    varying = [k for k, s in enumerate(RFD_FACTOR_SIZES) if s > 1]
    codes = factors[:, varying] + 0.3 * rng.standard_normal((600, len(varying)))
    tr, te = slice(0, 400), slice(400, 600)
    full = evaluate_all(codes[tr], factors[tr], codes[te], factors[te], fast=True)
    reduced = evaluate_all(codes[tr], factors[tr][:, varying], codes[te], factors[te][:, varying], fast=True)
    assert full["skipped_factors"] == [0, 2] and reduced["skipped_factors"] == []
    for name, value in reduced["summary"].items():
        assert full["summary"][name] == pytest.approx(value), name
    assert full["sap"]["factors_used"] == varying and len(full["sap"]["sap_per_factor"]) == len(varying)
    assert dci(codes[tr], factors[tr], codes[te], factors[te], "lasso")["skipped_factors"] == [0, 2]
    with pytest.raises(ValueError, match="every factor takes a single value"):
        dci(codes[tr], factors[tr][:, [0, 2]], codes[te], factors[te][:, [0, 2]], "lasso")


def test_a_read_fetches_only_its_rows_members(rfd, monkeypatch):
    """Streaming: reading two rows reads those two PNGs' bytes from the tar and nothing else."""
    import os
    import tarfile

    source = open_dataset(rfd / "finger")
    with tarfile.open(source.path) as tar:
        sizes = {int(m.name.split("/")[-1][:-4]): m.size for m in tar.getmembers()}
    read = []
    real_pread = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, offset: read.append(n) or real_pread(fd, n, offset))
    source.read(np.array([6, 11]))
    assert read == [sizes[6], sizes[11]]


def test_readers_pickle_for_worker_processes(rfd):
    import pickle

    for variant in ("finger", "finger_real"):
        source = open_dataset(rfd / variant)
        source.read(np.array([0]))
        copy = pickle.loads(pickle.dumps(source))
        np.testing.assert_array_equal(copy.read(np.array([1, 2])), source.read(np.array([1, 2])))
        np.testing.assert_array_equal(copy.read_factors(copy.rows), source.read_factors(source.rows))
