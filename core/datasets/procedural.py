"""A procedural stand-in for DeepMind's 3D-Shapes (numpy + h5py only; no torch).

The real ``3dshapes.h5`` cannot be downloaded here, so this module renders images with the same six ground-truth
factors, the same label values and the same file layout:

* ``images`` uint8 [N, 64, 64, 3] and ``labels`` float64 [N, 6];
* factors (floor_hue 10, wall_hue 10, object_hue 10, scale 8, shape 4, orientation 15), flat index row-major with
  orientation fastest, exactly like the real file.

The scene is a room corner (floor plane and two back walls) with one analytic object standing on the floor (cube,
cylinder, sphere or capsule), lit by a directional light (Lambert + ambient), with a cast shadow and a small specular
highlight on the object. ``orientation`` orbits the camera by −30°…30° about the object, so the wall corner moves in
the image; ``scale`` scales the object. Hues map to fully saturated colours through HSV.

Geometry depends only on (scale, shape, orientation): 480 combinations. For each one the rays are cast once and
per-pixel weights for floor, wall, object and specular are cached, so any image is a linear mix of the three hue
colours (plus white for the highlight) — about 0.1 ms per image.

Scores computed on this data are not comparable with the paper's numbers; label them "procedural".
"""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt

from sae.core.datasets.base import DatasetError
from sae.core.datasets.factors import (
    SHAPES3D_FACTOR_NAMES,
    SHAPES3D_FACTOR_SIZES,
    SHAPES3D_FACTOR_VALUES,
    SHAPES3D_NUM_IMAGES,
    SHAPES3D_SHAPE_NAMES,
    nearest_factor_indices,
)
from sae.core.datasets.ray_casting import Floats, bounding_sphere, hits_sphere, normalize, ray_object

__all__ = [
    "FACTOR_NAMES",
    "FACTOR_SIZES",
    "FACTOR_VALUES",
    "NUM_IMAGES",
    "SHAPE_NAMES",
    "factor_indices_from_flat",
    "flat_from_factor_indices",
    "labels_from_factor_indices",
    "factor_indices_from_labels",
    "hue_to_rgb",
    "Shapes3DRenderer",
    "subset_flat_indices",
    "write_shapes3d_h5",
    "example_grid",
]

# The grid's one home is sae.core.datasets.factors; these are its names in this module's own terms.
FACTOR_NAMES = SHAPES3D_FACTOR_NAMES
FACTOR_SIZES = SHAPES3D_FACTOR_SIZES
FACTOR_VALUES = SHAPES3D_FACTOR_VALUES
SHAPE_NAMES = SHAPES3D_SHAPE_NAMES
NUM_IMAGES = SHAPES3D_NUM_IMAGES

# Row-major strides, orientation fastest: (48000, 4800, 480, 60, 15, 1).
_STRIDES = np.array([int(np.prod(FACTOR_SIZES[k + 1 :])) for k in range(6)], dtype=np.int64)
_SIZES = np.array(FACTOR_SIZES, dtype=np.int64)


# ---------------------------------------------------------------------------------------------------------------------
# Index and label conventions
# ---------------------------------------------------------------------------------------------------------------------


def factor_indices_from_flat(flat_index: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Flat indices [N] (0 ≤ i < 480,000) → factor indices [N, 6] (int64), row-major, orientation fastest."""
    flat = np.asarray(flat_index, dtype=np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= NUM_IMAGES):
        raise DatasetError(f"flat indices must lie in [0, {NUM_IMAGES})")
    indices: npt.NDArray[np.int64] = (flat[..., None] // _STRIDES) % _SIZES
    return indices


def flat_from_factor_indices(idx: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Factor indices [N, 6] → flat indices [N] (int64); inverse of :func:`factor_indices_from_flat`."""
    idx = _check_factor_indices(idx)
    flat: npt.NDArray[np.int64] = idx @ _STRIDES
    return flat


def labels_from_factor_indices(idx: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Factor indices [N, 6] (int) → label values [N, 6] (float64), as stored in the real ``labels`` dataset."""
    idx = _check_factor_indices(idx)
    labels: npt.NDArray[np.float64] = np.stack([FACTOR_VALUES[k][idx[..., k]] for k in range(6)], axis=-1).astype(
        np.float64
    )
    return labels


def factor_indices_from_labels(labels: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Label values [N, 6] (float) → factor indices [N, 6] (int64), matching each value to the nearest grid value."""
    return nearest_factor_indices(labels, FACTOR_VALUES)[0]


def _check_factor_indices(indices: npt.ArrayLike) -> npt.NDArray[np.int64]:
    idx = np.asarray(indices)
    if idx.shape[-1:] != (6,):
        raise DatasetError(f"factor indices must have shape [..., 6], got {idx.shape}")
    if not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"factor indices must be integers, got dtype {idx.dtype}")
    idx = idx.astype(np.int64, copy=False)
    if idx.size and ((idx < 0).any() or (idx >= _SIZES).any()):
        raise DatasetError(f"factor indices out of range for sizes {FACTOR_SIZES}")
    checked: npt.NDArray[np.int64] = idx
    return checked


def hue_to_rgb(hue: npt.ArrayLike, saturation: float = 1.0, value: float = 1.0) -> npt.NDArray[np.float64]:
    """HSV → RGB in [0, 1] for hues in [0, 1) (vectorised); returns [..., 3] float64."""
    h = (np.asarray(hue, dtype=np.float64) % 1.0) * 6.0
    k = (np.array([5.0, 3.0, 1.0]) + h[..., None]) % 6.0
    rgb: npt.NDArray[np.float64] = value - value * saturation * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return rgb


class Shapes3DRenderer:
    """Renders procedural 3D-Shapes images from factor indices.

    Geometry (which pixel sees floor, wall or object, and how brightly it is lit) depends only on
    (scale, shape, orientation); it is ray-cast once per combination on first use (``supersample``² rays per pixel)
    and cached as per-pixel weights, so rendering a batch is a gather and a small matrix product.
    """

    # Scene constants (world: y up, object at the origin, room corner at x = z = ROOM).
    ROOM = 2.3  # the back walls are the planes x = ROOM and z = ROOM
    CAM_DIST = 6.5
    CAM_ELEVATION = 26.0  # degrees
    CAM_AZIMUTH = 45.0  # degrees at orientation 0: the camera looks straight into the room corner
    CAM_TARGET = (0.0, 0.9, 0.0)
    FOV = 32.0  # degrees, full field of view
    LIGHT = (-0.15, 0.85, -0.55)  # direction towards the light
    AMBIENT = 0.45
    DIFFUSE = 0.55
    SHADOW = 0.45  # fraction of the direct light that still reaches shadowed floor (soft-looking shadow)
    SPECULAR = 0.45
    SHININESS = 40.0

    def __init__(self, image_size: int = 64, supersample: int = 2) -> None:
        if image_size < 4 or supersample < 1:
            raise DatasetError("image_size must be ≥ 4 and supersample ≥ 1")
        self.image_size = int(image_size)
        self.supersample = int(supersample)
        ngeo = FACTOR_SIZES[3] * FACTOR_SIZES[4] * FACTOR_SIZES[5]
        # weights[g, pixel, k] for k = floor, wall, object, specular (float32; 480 × 4096 × 4 × 4 B ≈ 31 MiB at 64²).
        self._weights = np.zeros((ngeo, self.image_size * self.image_size, 4), dtype=np.float32)
        self._ready = np.zeros(ngeo, dtype=bool)
        self._light = normalize(np.array(self.LIGHT, dtype=np.float64))
        # Unit ray directions in camera space (right, up, forward), rows of s×s sub-pixels, top-left first.
        ns = self.image_size * self.supersample
        half = np.tan(np.deg2rad(self.FOV) / 2.0)
        c = ((np.arange(ns) + 0.5) / ns * 2.0 - 1.0) * half
        u, v = np.meshgrid(c, -c)  # u: columns left→right, v: rows top→bottom
        self._cam_dirs = normalize(np.stack([u, v, np.ones_like(u)], axis=-1).reshape(-1, 3))

    # -- geometry ---------------------------------------------------------------------------------------------------

    @staticmethod
    def geometry_index(
        scale_idx: npt.ArrayLike, shape_idx: npt.ArrayLike, orientation_idx: npt.ArrayLike
    ) -> npt.NDArray[np.int64]:
        """Index 0…479 of a (scale, shape, orientation) combination (same row-major order as the flat index)."""
        index: npt.NDArray[np.int64] = (np.asarray(scale_idx) * FACTOR_SIZES[4] + np.asarray(shape_idx)) * FACTOR_SIZES[
            5
        ] + np.asarray(orientation_idx)
        return index

    def _camera_rays(self, orientation_deg: float) -> tuple[Floats, Floats]:
        """Camera position and unit ray directions [(H·s)², 3] (row-major pixels, s×s sub-pixels each)."""
        az = np.deg2rad(self.CAM_AZIMUTH + orientation_deg)
        el = np.deg2rad(self.CAM_ELEVATION)
        target = np.array(self.CAM_TARGET)
        eye = target + self.CAM_DIST * np.array([-np.sin(az) * np.cos(el), np.sin(el), -np.cos(az) * np.cos(el)])
        fwd = normalize(target - eye)
        right = normalize(np.cross(fwd, [0.0, 1.0, 0.0]))
        up = np.cross(right, fwd)
        return eye, self._cam_dirs @ np.stack([right, up, fwd])

    def _room(self, o: Floats, d: Floats) -> tuple[Floats, npt.NDArray[np.int64]]:
        """Nearest hit of the floor (y = 0) or the back walls (x = ROOM, z = ROOM).

        Returns (t, surface) with surface 0 = floor, 1 = wall x = ROOM, 2 = wall z = ROOM; a ray that hits nothing
        (impossible with the default camera) gets t = inf and surface 2."""
        with np.errstate(divide="ignore", invalid="ignore"):
            tf = np.where(d[:, 1] < -1e-9, -o[1] / d[:, 1], np.inf)
            twx = np.where(d[:, 0] > 1e-9, (self.ROOM - o[0]) / d[:, 0], np.inf)
            twz = np.where(d[:, 2] > 1e-9, (self.ROOM - o[2]) / d[:, 2], np.inf)
        ts = np.stack([tf, twx, twz])
        k = np.argmin(ts, axis=0)
        t = np.take_along_axis(ts, k[None], axis=0)[0]
        k[~np.isfinite(t)] = 2
        return t, k

    def _trace(self, scale_idx: int, shape_idx: int, orientation_idx: int) -> tuple[Floats, npt.NDArray[np.bool_]]:
        """Cast the s×s sub-pixel rays of one geometry.

        Returns (weights [(H·s)², 4] float64: floor, wall, object shading and specular; object hit mask)."""
        scale = float(FACTOR_VALUES[3][scale_idx])
        shape = int(shape_idx)
        L = self._light
        eye, d = self._camera_rays(float(FACTOR_VALUES[5][orientation_idx]))
        t_room, surface = self._room(eye, d)
        miss = ~np.isfinite(t_room)
        center, radius = bounding_sphere(shape, scale)

        # Object: exact intersection only for rays that reach its bounding sphere.
        cand = np.flatnonzero(hits_sphere(eye, d, center, radius))
        t_c, n_c = ray_object(eye[None, :], d[cand], shape, scale)
        hit = t_c < t_room[cand]
        obj, n_obj, d_obj = cand[hit], n_c[hit], d[cand[hit]]
        is_obj = np.zeros(d.shape[0], dtype=bool)
        is_obj[obj] = True

        # Room surfaces: Lambert + ambient, darkened where the object blocks the light (cast shadow).
        room_normals = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
        lam = np.clip(room_normals @ L, 0.0, 1.0)[surface]
        p = eye + np.where(miss, 0.0, t_room)[:, None] * d
        p = p + 1e-4 * room_normals[surface]
        sh = np.flatnonzero(~is_obj & ~miss & hits_sphere(p, L[None, :], center, radius))
        t_sh, _ = ray_object(p[sh], L[None, :], shape, scale)
        lit = np.ones(d.shape[0])
        lit[sh[np.isfinite(t_sh)]] = self.SHADOW
        shade_room = np.where(miss, 1.0, self.AMBIENT + self.DIFFUSE * lam * lit)

        # Object shading: Lambert + ambient, and a Blinn–Phong highlight (white, added on top).
        lam_o = np.clip(n_obj @ L, 0.0, 1.0)
        half_vec = normalize(L[None, :] - d_obj)
        spec = self.SPECULAR * np.clip(np.einsum("ij,ij->i", n_obj, half_vec), 0.0, 1.0) ** self.SHININESS

        w = np.zeros((d.shape[0], 4))
        w[:, 0] = np.where(~is_obj & (surface == 0), shade_room, 0.0)
        w[:, 1] = np.where(~is_obj & (surface != 0), shade_room, 0.0)
        w[obj, 2] = self.AMBIENT + self.DIFFUSE * lam_o
        w[obj, 3] = np.where(lam_o > 0.0, spec, 0.0)
        return w, is_obj

    def _downsample(self, a: Floats) -> Floats:
        """Box-filter s×s sub-pixel values [(H·s)², ...] to pixels [H, W, ...]."""
        s, n = self.supersample, self.image_size
        pixels: Floats = a.reshape(n, s, n, s, *a.shape[1:]).mean(axis=(1, 3))
        return pixels

    def _cast(self, scale_idx: int, shape_idx: int, orientation_idx: int) -> npt.NDArray[np.float32]:
        """Ray-cast one geometry; returns [H*W, 4] float32 weights (floor, wall, object, specular)."""
        w, _ = self._trace(scale_idx, shape_idx, orientation_idx)
        weights: npt.NDArray[np.float32] = self._downsample(w).reshape(-1, 4).astype(np.float32)
        return weights

    def _ensure(self, geo: npt.NDArray[np.int64]) -> None:
        todo = np.unique(geo[~self._ready[geo]])
        for g in todo:
            g = int(g)
            orient = g % FACTOR_SIZES[5]
            shape = (g // FACTOR_SIZES[5]) % FACTOR_SIZES[4]
            scale = g // (FACTOR_SIZES[5] * FACTOR_SIZES[4])
            self._weights[g] = self._cast(scale, shape, orient)
            self._ready[g] = True

    def precompute(self) -> None:
        """Ray-cast all 480 geometries now (otherwise each is cast on first use)."""
        self._ensure(np.arange(self._ready.size))

    def geometry_weights(self, scale_idx: int, shape_idx: int, orientation_idx: int) -> npt.NDArray[np.float32]:
        """Cached weights [4, H, W] float32: floor, wall and object coverage × shading, and the specular term."""
        g = int(self.geometry_index(scale_idx, shape_idx, orientation_idx))
        self._ensure(np.array([g]))
        n = self.image_size
        weights: npt.NDArray[np.float32] = self._weights[g].T.reshape(4, n, n).copy()
        return weights

    def object_mask(
        self, scale_idx: int, shape_idx: int, orientation_idx: int, threshold: float = 0.5
    ) -> npt.NDArray[np.bool_]:
        """Boolean [H, W]: pixels at least ``threshold`` covered by the object."""
        obj = self._coverage(scale_idx, shape_idx, orientation_idx)
        return obj >= threshold

    def _coverage(self, scale_idx: int, shape_idx: int, orientation_idx: int) -> Floats:
        """Fraction [H, W] of each pixel's rays that hit the object."""
        _, is_obj = self._trace(scale_idx, shape_idx, orientation_idx)
        return self._downsample(is_obj.astype(np.float64))

    # -- rendering --------------------------------------------------------------------------------------------------

    def render(self, factor_idx: npt.ArrayLike, batch: int = 512) -> npt.NDArray[np.uint8]:
        """Factor indices [N, 6] (int) → images uint8 [N, H, W, 3]."""
        idx = _check_factor_indices(factor_idx)
        single = idx.ndim == 1
        idx = idx.reshape(-1, 6)
        geo = self.geometry_index(idx[:, 3], idx[:, 4], idx[:, 5])
        self._ensure(geo)
        n = self.image_size
        out = np.empty((idx.shape[0], n, n, 3), dtype=np.uint8)
        hues = np.stack([FACTOR_VALUES[k][idx[:, k]] for k in range(3)], axis=1)  # [N, 3]
        colours = np.ones((idx.shape[0], 4, 3), dtype=np.float32)  # rows: floor, wall, object, white (specular)
        colours[:, :3] = hue_to_rgb(hues)
        colours *= 255.0
        for i in range(0, idx.shape[0], batch):
            j = min(i + batch, idx.shape[0])
            img = np.matmul(self._weights[geo[i:j]], colours[i:j])  # [b, H*W, 3]
            np.clip(img, 0.0, 255.0, out=img)
            img += 0.5
            out[i:j] = img.astype(np.uint8).reshape(j - i, n, n, 3)
        return out[0] if single else out

    def render_flat(self, flat_index: npt.ArrayLike) -> npt.NDArray[np.uint8]:
        """Flat indices [N] → images uint8 [N, H, W, 3] (image ``i`` of the full 480k grid)."""
        return self.render(factor_indices_from_flat(flat_index))


# ---------------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------------


def subset_flat_indices(n: int | None, seed: int = 0) -> npt.NDArray[np.int64]:
    """Flat indices written by :func:`write_shapes3d_h5`: all of them, or ``n`` distinct ones, sorted, from ``seed``."""
    if n is None:
        return np.arange(NUM_IMAGES, dtype=np.int64)
    if not 0 < n <= NUM_IMAGES:
        raise DatasetError(f"n must be in 1…{NUM_IMAGES} or None")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(NUM_IMAGES, size=int(n), replace=False)).astype(np.int64)


def write_shapes3d_h5(
    path: str | os.PathLike[str],
    n: int | None = None,
    seed: int = 0,
    chunk: int = 4096,
    *,
    compression: str | None = None,
    renderer: Shapes3DRenderer | None = None,
) -> None:
    """Write a procedural ``3dshapes.h5``.

    ``n=None`` writes the full factorial grid (480,000 images, in the real file's order); otherwise ``n`` distinct
    grid points chosen with ``seed``, sorted by flat index. Datasets ``images`` uint8 [N, 64, 64, 3] (chunked by 256
    images) and ``labels`` float64 [N, 6]; attributes ``factor_names``, ``factor_sizes``, ``procedural`` (True) and
    ``seed``. Images are rendered and written ``chunk`` at a time, so memory stays bounded. ``compression`` is passed
    to h5py: the default None writes raw data (12 KiB per image; the full grid is 5.6 GB and took ~80 s on 2 cores),
    ``"gzip"`` about 310 MB for the full grid (~100 s; reading decompresses ~9 ms per 256-image chunk).
    """
    import h5py

    from sae.core.atomic import atomic_write

    flat = subset_flat_indices(n, seed)
    renderer = renderer or Shapes3DRenderer()
    size = renderer.image_size
    total = flat.shape[0]
    chunk = max(1, int(chunk))
    with atomic_write(path) as tmp, h5py.File(tmp, "w") as f:  # a killed `sae data` leaves no partial file
        images = f.create_dataset(
            "images",
            shape=(total, size, size, 3),
            dtype=np.uint8,
            chunks=(min(256, total), size, size, 3),
            compression=compression,
        )
        labels = f.create_dataset("labels", shape=(total, 6), dtype=np.float64, compression=compression)
        f.attrs["factor_names"] = np.array(FACTOR_NAMES, dtype=h5py.string_dtype())
        f.attrs["factor_sizes"] = np.array(FACTOR_SIZES, dtype=np.int64)
        f.attrs["procedural"] = True
        f.attrs["seed"] = int(seed)
        for i in range(0, total, chunk):
            j = min(i + chunk, total)
            idx = factor_indices_from_flat(flat[i:j])
            images[i:j] = renderer.render(idx)
            labels[i:j] = labels_from_factor_indices(idx)


# ---------------------------------------------------------------------------------------------------------------------
# Example grid
# ---------------------------------------------------------------------------------------------------------------------


def example_grid(path: str | os.PathLike[str], seed: int = 0) -> None:
    """Write a PNG grid (15 columns of 64×64 tiles): rows 1–6 sweep one factor each over all its values
    (floor hue, wall hue, object hue, scale, shape, orientation) from a base point drawn with ``seed``; row 7 shows
    15 random images."""
    from sae.core.png import image_grid, write_png

    rng = np.random.default_rng(seed)
    # Base point: three distinct hues and a random shape from ``seed``; mid-range scale, orientation −12.9°.
    base = np.array([*rng.choice(10, size=3, replace=False), 5, rng.integers(4), 4], dtype=np.int64)
    ncols = max(FACTOR_SIZES)
    renderer = Shapes3DRenderer()
    size = renderer.image_size
    blank = np.full((size, size, 3), 255, np.uint8)
    tiles = []
    for k, nvals in enumerate(FACTOR_SIZES):
        idx = np.repeat(base[None], nvals, axis=0)
        idx[:, k] = np.arange(nvals)
        row = list(renderer.render(idx))
        tiles += row + [blank] * (ncols - nvals)
    random_idx = factor_indices_from_flat(rng.choice(NUM_IMAGES, size=ncols, replace=False))
    tiles += list(renderer.render(random_idx))
    write_png(path, image_grid(np.stack(tiles), ncols=ncols, pad=2))
