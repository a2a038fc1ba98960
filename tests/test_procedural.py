"""Tests for the numpy-only procedural 3D-Shapes generator and the stdlib PNG writer."""

from __future__ import annotations

import struct
import zlib

import h5py
import numpy as np
import pytest

from sae.core.datasets.procedural import (
    FACTOR_NAMES,
    FACTOR_SIZES,
    FACTOR_VALUES,
    NUM_IMAGES,
    Shapes3DRenderer,
    example_grid,
    factor_indices_from_flat,
    factor_indices_from_labels,
    flat_from_factor_indices,
    hue_to_rgb,
    labels_from_factor_indices,
    subset_flat_indices,
    write_shapes3d_h5,
)
from sae.core.png import encode_png, image_grid, write_png


@pytest.fixture(scope="module")
def renderer() -> Shapes3DRenderer:
    return Shapes3DRenderer()


@pytest.fixture(scope="module")
def subset_file(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("shapes") / "subset.h5")
    write_shapes3d_h5(path, n=300, seed=7, chunk=128)  # several chunks, last one partial
    return path


def decode_png(data: bytes) -> np.ndarray:
    """Minimal PNG decoder for 8-bit, non-interlaced images written with filter type 0."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    tags = []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF, f"bad CRC in {tag!r}"
        tags.append(tag)
        if tag == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    assert tags[0] == b"IHDR" and tags[-1] == b"IEND"
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and interlace == 0
    channels = {0: 1, 4: 2, 2: 3, 6: 4}[colour]
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + width * channels)
    assert (raw[:, 0] == 0).all(), "writer should use filter type 0"
    return raw[:, 1:].reshape(height, width, channels)


# --- index and label conventions --------------------------------------------------------------------------------


def test_factor_values_match_real_dataset():
    assert FACTOR_NAMES == ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    assert FACTOR_SIZES == (10, 10, 10, 8, 4, 15)
    assert NUM_IMAGES == 480_000
    for k in range(3):
        np.testing.assert_allclose(FACTOR_VALUES[k], np.arange(10) / 10)
    np.testing.assert_allclose(FACTOR_VALUES[3], np.linspace(0.75, 1.25, 8))
    np.testing.assert_array_equal(FACTOR_VALUES[4], [0, 1, 2, 3])
    np.testing.assert_allclose(FACTOR_VALUES[5], np.linspace(-30, 30, 15))
    assert [len(v) for v in FACTOR_VALUES] == list(FACTOR_SIZES)


def test_flat_index_round_trip_and_row_major_order():
    flat = np.arange(NUM_IMAGES)
    idx = factor_indices_from_flat(flat)
    assert idx.shape == (NUM_IMAGES, 6) and np.issubdtype(idx.dtype, np.integer)
    # Row-major with orientation fastest is exactly the order of np.ndindex over the factor sizes.
    expected = np.stack(np.unravel_index(flat, FACTOR_SIZES), axis=1)
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_array_equal(idx[:3], [[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 2]])
    np.testing.assert_array_equal(idx[15], [0, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(idx[48_000], [1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(flat_from_factor_indices(idx), flat)
    labels = labels_from_factor_indices(idx[::997])
    assert labels.dtype == np.float64
    np.testing.assert_array_equal(factor_indices_from_labels(labels), idx[::997])
    with pytest.raises(ValueError, match=r"flat indices must lie in \[0, 480000\)"):
        factor_indices_from_flat(np.array([NUM_IMAGES]))
    with pytest.raises(ValueError, match=r"factor indices out of range for sizes \(10, 10, 10, 8, 4, 15\)"):
        labels_from_factor_indices(np.array([[0, 0, 0, 8, 0, 0]]))


def test_labels_from_factor_indices_values():
    labels = labels_from_factor_indices(np.array([[0, 9, 3, 7, 2, 14], [1, 0, 0, 0, 3, 0]]))
    np.testing.assert_allclose(labels, [[0.0, 0.9, 0.3, 1.25, 2.0, 30.0], [0.1, 0.0, 0.0, 0.75, 3.0, -30.0]])


def test_hue_to_rgb_is_saturated_hsv():
    np.testing.assert_allclose(hue_to_rgb(np.array([0.0, 1 / 3, 2 / 3])), np.eye(3), atol=1e-12)
    rgb = hue_to_rgb(FACTOR_VALUES[0])
    assert np.allclose(rgb.max(axis=1), 1.0) and np.allclose(rgb.min(axis=1), 0.0)  # full saturation and value
    assert len({tuple(np.round(c, 6)) for c in rgb}) == 10


# --- files --------------------------------------------------------------------------------------------------------


def test_subset_file_layout(subset_file, renderer):
    with h5py.File(subset_file, "r") as f:
        images, labels = f["images"], f["labels"]
        assert images.shape == (300, 64, 64, 3) and images.dtype == np.uint8
        assert labels.shape == (300, 6) and labels.dtype == np.float64
        assert images.chunks is not None and images.chunks[1:] == (64, 64, 3)
        assert [str(s) for s in f.attrs["factor_names"]] == list(FACTOR_NAMES)
        assert tuple(int(s) for s in f.attrs["factor_sizes"]) == FACTOR_SIZES
        assert bool(f.attrs["procedural"]) is True and int(f.attrs["seed"]) == 7
        imgs, labs = images[:], labels[:]
    idx = factor_indices_from_labels(labs)
    flat = flat_from_factor_indices(idx)
    assert (np.diff(flat) > 0).all(), "distinct grid points sorted by flat index"
    for k in range(6):  # every label is one of the real label values
        assert np.isin(labs[:, k], FACTOR_VALUES[k]).all()
    np.testing.assert_array_equal(labs, labels_from_factor_indices(idx))
    # Images match their labels (the file is rendered chunk by chunk, the last chunk partial).
    np.testing.assert_array_equal(imgs[::37], renderer.render(idx[::37]))
    np.testing.assert_array_equal(imgs[-1], renderer.render(idx[-1:])[0])
    assert imgs.std() > 10


def test_subset_determinism_by_seed(subset_file, tmp_path):
    same, other = tmp_path / "same.h5", tmp_path / "other.h5"
    write_shapes3d_h5(same, n=300, seed=7, chunk=1000)  # different chunking, same content
    write_shapes3d_h5(other, n=300, seed=8)
    with h5py.File(subset_file, "r") as a, h5py.File(same, "r") as b, h5py.File(other, "r") as c:
        np.testing.assert_array_equal(a["labels"][:], b["labels"][:])
        np.testing.assert_array_equal(a["images"][:], b["images"][:])
        assert not np.array_equal(a["labels"][:], c["labels"][:])


def test_full_grid_indices_and_subset_selection():
    """n=None selects every grid point in flat (real-file) order; a subset is distinct, sorted and seed-determined."""
    np.testing.assert_array_equal(subset_flat_indices(None), np.arange(NUM_IMAGES))
    a, b = subset_flat_indices(1000, seed=1), subset_flat_indices(1000, seed=2)
    assert len(np.unique(a)) == 1000 and (np.diff(a) > 0).all() and a.min() >= 0 and a.max() < NUM_IMAGES
    np.testing.assert_array_equal(a, subset_flat_indices(1000, seed=1))
    assert not np.array_equal(a, b)
    with pytest.raises(ValueError, match="n must be in 1…480000 or None"):
        subset_flat_indices(NUM_IMAGES + 1)


# --- rendering -----------------------------------------------------------------------------------------------------

BASE = np.array([2, 5, 8, 4, 0, 7])


def _render_one(renderer, **changes) -> np.ndarray:
    idx = BASE.copy()
    for name, value in changes.items():
        idx[FACTOR_NAMES.index(name)] = value
    return renderer.render(idx[None])[0].astype(np.int16)


def test_render_shape_dtype_and_single(renderer):
    imgs = renderer.render(np.stack([BASE, BASE]))
    assert imgs.shape == (2, 64, 64, 3) and imgs.dtype == np.uint8
    np.testing.assert_array_equal(renderer.render(BASE), imgs[0])
    np.testing.assert_array_equal(imgs[0], imgs[1])
    with pytest.raises(ValueError, match=r"factor indices out of range for sizes \(10, 10, 10, 8, 4, 15\)"):
        renderer.render(np.array([[0, 0, 0, 0, 4, 0]]))


@pytest.mark.parametrize("k", range(6))
def test_each_factor_changes_the_image(renderer, k):
    base = _render_one(renderer)
    for value in range(FACTOR_SIZES[k]):
        if value == BASE[k]:
            continue
        diff = np.abs(_render_one(renderer, **{FACTOR_NAMES[k]: value}) - base).max(axis=-1)
        assert (diff > 8).sum() >= 20, f"{FACTOR_NAMES[k]}={value} barely changes the image"


def test_hue_factors_change_only_their_region(renderer):
    w = renderer.geometry_weights(BASE[3], BASE[4], BASE[5])  # floor, wall, object, specular
    assert w.shape == (4, 64, 64)
    regions = {"floor_hue": w[0] > 0, "wall_hue": w[1] > 0, "object_hue": (w[2] > 0) | (w[3] > 0)}
    for k, name in enumerate(("floor_hue", "wall_hue", "object_hue")):
        assert regions[name].sum() > 100, f"{name} region is tiny"
        for value in (BASE[k] + 3) % 10, (BASE[k] + 5) % 10:
            changed = (_render_one(renderer, **{name: value}) != _render_one(renderer)).any(axis=-1)
            assert changed.sum() > 0.5 * regions[name].sum()
            assert not (changed & ~regions[name]).any(), f"{name} changed pixels outside its region"
    # The object sits inside the image, with room visible around it, and the regions cover the picture.
    assert regions["floor_hue"][-1].all() and (regions["wall_hue"][0] | regions["floor_hue"][0]).all()
    assert not regions["object_hue"][[0, -1]].any() and not regions["object_hue"][:, [0, -1]].any()


def test_geometry_weights_are_a_partition(renderer):
    cov = [renderer._coverage(4, s, 7) for s in range(4)]
    for s in range(4):
        w = renderer.geometry_weights(4, s, 7)
        assert (w >= 0).all() and (w[:3] <= 1 + 1e-6).all()
        # Every pixel is covered by floor, wall or object: the shaded weights are positive everywhere.
        assert (w[:3].sum(axis=0) > renderer.AMBIENT - 1e-6).all()
        assert 0 < cov[s].sum() < 64 * 64 / 4


def test_distinct_shapes_give_distinct_object_masks(renderer):
    for scale, orient in ((0, 0), (7, 7), (3, 14)):
        masks = [renderer.object_mask(scale, s, orient) for s in range(4)]
        for m in masks:
            assert m.sum() > 40
            ys, xs = np.nonzero(m)
            assert 0.35 * 64 < ys.mean() < 0.85 * 64 and 0.3 * 64 < xs.mean() < 0.7 * 64  # on the floor, central
        for a in range(4):
            for b in range(a + 1, 4):
                iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
                assert iou < 0.9, f"shapes {a} and {b} look alike (IoU {iou:.2f})"


def test_scale_grows_the_object(renderer):
    for shape in range(4):
        areas = [renderer.object_mask(s, shape, 7).sum() for s in range(8)]
        assert all(b > a for a, b in zip(areas, areas[1:])), areas


def test_orientation_moves_the_room_corner(renderer):
    """The vertical seam between the two back walls moves left to right as the camera orbits."""

    def corner_column(orient):
        _, surface = renderer._room(*renderer._camera_rays(float(FACTOR_VALUES[5][orient])))
        top_row = surface.reshape(128, 128)[0]  # supersampled top row: wall x = ROOM (1), then wall z = ROOM (2)
        return int(np.argmax(top_row == 2))

    cols = [corner_column(o) for o in range(15)]
    assert all(b > a for a, b in zip(cols, cols[1:])), cols
    assert cols[0] < 32 and cols[-1] > 96 and abs(cols[7] - 64) <= 2


def test_object_casts_a_shadow(renderer):
    w = renderer.geometry_weights(5, 0, 14)
    floor = w[0]
    full = floor[w[0] > 0].max()
    shadowed = (floor > 0) & (floor < full - 0.1) & (w[1] == 0) & (w[2] == 0)
    assert shadowed.sum() > 20


# --- PNG -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [None, 1, 3, 4])
def test_png_round_trip(tmp_path, channels):
    rng = np.random.default_rng(0)
    shape = (17, 23) if channels is None else (17, 23, channels)
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)
    path = tmp_path / "x.png"
    write_png(path, image)
    decoded = decode_png(path.read_bytes())
    np.testing.assert_array_equal(decoded.reshape(image.shape), image)
    assert encode_png(image) == path.read_bytes()
    with pytest.raises(TypeError):
        write_png(path, image.astype(np.float32))


def test_image_grid_layout():
    imgs = np.stack([np.full((4, 5, 3), i, np.uint8) for i in range(5)])
    grid = image_grid(imgs, ncols=3, pad=2)
    assert grid.shape == (2 + 2 * 6, 2 + 3 * 7, 3) and grid.dtype == np.uint8
    assert (grid[2:6, 2:7] == 0).all() and (grid[2:6, 9:14] == 1).all() and (grid[8:12, 9:14] == 4).all()
    assert (grid[8:12, 16:21] == 255).all()  # empty cell
    assert (grid[:2] == 255).all() and (grid[:, :2] == 255).all()


def test_example_grid_png(tmp_path):
    path = tmp_path / "grid.png"
    example_grid(path, seed=3)
    image = decode_png(path.read_bytes())
    assert image.shape == (2 + 7 * 66, 2 + 15 * 66, 3)
    tile = image[2:66, 2:66]
    assert tile.std() > 10  # a rendered scene, not a blank tile
