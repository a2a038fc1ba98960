"""Image datasets read from disk in windows, so memory stays bounded: 3D-Shapes, MPI3D, CelebA and RFD.

Torch-free (numpy and h5py; Pillow imported when a JPEG or PNG is decoded), so that the trainer and the client-side
batch jobs read data the same way. :func:`open_dataset` picks the reader from what the path is:

* ``.h5`` / ``.hdf5`` — :class:`H5Images`: ``images`` uint8 [N, H, W, 3] and optionally ``labels`` float64 [N, K]. The
  real ``3dshapes.h5`` and the procedural files of :mod:`training.data.procedural` read the same way.
* ``.npz`` — :class:`NpzImages` (MPI3D toy / realistic / real): ``images`` uint8 [N, 64, 64, 3], memory-mapped from
  the zip; the seven factors follow from the row index (row-major), so the file holds no labels.
* a folder of JPEGs — :class:`JpegFolder` (aligned CelebA): each image is centre-cropped to a square and resized to
  128×128 when read; no factors.
* the Robot Finger Dataset's folder ``robot_finger_datasets/`` (its ``finger`` variant) or one of its variant
  folders ``finger/``, ``finger_heldout_colors/``, ``finger_real/`` — :mod:`clients.rfd`: 128×128 PNGs read by row
  from a tar (or, for ``finger_real``, a memory-mapped ``.npz``), nine factors from ``*_labels.npz``.

Every reader has the same interface (:class:`ImageSource`). ``exclude`` leaves out factor values, e.g.
``{"shape": [2]}`` drops every sphere from 3D-Shapes (the paper's extrapolation experiment). Its values are factor
*indices* (0 … size − 1, in the order of the factor's sorted label values; for 3D-Shapes' ``shape`` 0 cube,
1 cylinder, 2 sphere, 3 capsule), never label values, so the same spelling works for every dataset. The excluded images
stay in the file; ``rows`` lists the rows that remain. On a command line, :func:`parse_exclude` reads
``shape=2 floor_hue=0,1``.
"""
from __future__ import annotations

import numbers
import os
import shutil
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

import h5py
import numpy as np

SPLIT_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}

# 3D-Shapes (kept equal to training.data.procedural, which clients may not import; a test checks it).
SHAPES3D_FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
SHAPES3D_FACTOR_VALUES: tuple[np.ndarray, ...] = tuple(np.require(v, requirements="O") for v in (
    np.arange(10) / 10.0, np.arange(10) / 10.0, np.arange(10) / 10.0,
    np.linspace(0.75, 1.25, 8), np.arange(4.0), np.linspace(-30.0, 30.0, 15),
))
for _values in SHAPES3D_FACTOR_VALUES:
    _values.setflags(write=False)
SHAPES3D_FACTOR_SIZES = tuple(len(v) for v in SHAPES3D_FACTOR_VALUES)

MPI3D_FACTOR_NAMES = ("object_color", "object_shape", "object_size", "camera_height", "background_color",
                      "horizontal_axis", "vertical_axis")
MPI3D_FACTOR_SIZES = (6, 6, 2, 3, 3, 40, 40)
MPI3D_NUM_IMAGES = int(np.prod(MPI3D_FACTOR_SIZES))  # 1,036,800

CELEBA_IMAGE_SIZE = 128
JPEG_SUFFIXES = (".jpg", ".jpeg")
# A compressed .npz member up to this many bytes (uncompressed) is read whole, with a warning; larger ones are refused.
NPZ_INFLATE_LIMIT = 256 * 2**20
_FACTOR_BLOCK = 65536  # rows per block when scanning factors for ``exclude``
_LABEL_TOLERANCE = 1e-4  # how far a stored label may lie from its grid value


class DatasetError(ValueError):
    """A data file is missing, corrupt or not in the expected format."""


Exclude = Mapping[str, Sequence[int]]


@runtime_checkable
class ImageSource(Protocol):
    """What every reader offers. ``read`` takes a slice or increasing row indices and returns uint8 [n, H, W, 3]."""

    path: Path
    shape: tuple[int, ...]
    has_labels: bool
    slice_reads: bool  # True: reading a contiguous slice and selecting rows beats reading just the rows
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]

    def __len__(self) -> int: ...
    @property
    def image_size(self) -> int: ...
    @property
    def rows(self) -> np.ndarray: ...
    def read(self, indices: np.ndarray | slice) -> np.ndarray: ...
    def read_labels(self, indices: np.ndarray | slice) -> np.ndarray: ...
    def read_factors(self, indices: np.ndarray | slice) -> np.ndarray: ...
    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------------------------------
# Excluding factor values
# ---------------------------------------------------------------------------------------------------------------------


def _check_exclude(exclude: Exclude | None, source) -> dict[int, np.ndarray]:
    """{factor column: excluded indices}; ValueError naming the factor or value that is wrong."""
    if not exclude:
        return {}
    if not isinstance(exclude, Mapping):
        raise ValueError(f"exclude must map factor names to lists of factor indices, got {type(exclude).__name__}")
    if not source.factor_names:
        raise ValueError(f"exclude={dict(exclude)} but {source.path} has no factors to exclude values of")
    spec = {}
    for name, values in exclude.items():
        if name not in source.factor_names:
            raise ValueError(f"exclude: unknown factor {name!r} for {source.path}; "
                             f"its factors are {list(source.factor_names)}")
        k = source.factor_names.index(name)
        size = source.factor_sizes[k]
        if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
            raise ValueError(f"exclude[{name!r}] must be a list of factor indices, got {values!r}")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise ValueError(f"exclude[{name!r}]: {v!r} is not a factor index; values are indices "
                                 f"0…{size - 1} (not label values)")
            if not 0 <= int(v) < size:
                raise ValueError(f"exclude[{name!r}]: index {int(v)} is out of range; {name!r} has {size} values "
                                 f"(indices 0…{size - 1})")
        chosen = np.unique(np.asarray(values, dtype=np.int64))
        if len(chosen) == size:
            raise ValueError(f"exclude[{name!r}] leaves out all {size} values of {name!r}; nothing would remain")
        if len(chosen):
            spec[k] = chosen
    return spec


def parse_exclude(items: Sequence[str]) -> dict[str, list[int]]:
    """Command-line spelling → ``exclude``: ``["shape=2", "floor_hue=0,1"]`` → ``{"shape": [2], "floor_hue": [0, 1]}``."""
    exclude: dict[str, list[int]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise ValueError(f"--exclude {item!r}: expected FACTOR=INDEX[,INDEX...], e.g. shape=2")
        try:
            indices = [int(v) for v in values.split(",")]
        except ValueError:
            raise ValueError(f"--exclude {item!r}: values must be factor indices (integers), e.g. shape=2") from None
        exclude.setdefault(name.strip(), []).extend(indices)
    return exclude


def _usable_rows(source, exclude: Exclude | None) -> np.ndarray:
    """Sorted row indices (int64, read-only) whose factors take none of the excluded values."""
    spec = _check_exclude(exclude, source)
    n = len(source)
    if not spec:
        rows = np.arange(n, dtype=np.int64)
    else:
        kept = []
        for lo in range(0, n, _FACTOR_BLOCK):
            hi = min(lo + _FACTOR_BLOCK, n)
            factors = source.read_factors(slice(lo, hi))
            drop = np.zeros(hi - lo, dtype=bool)
            for k, values in spec.items():
                drop |= np.isin(factors[:, k], values)
            kept.append(lo + np.flatnonzero(~drop))
        rows = np.concatenate(kept).astype(np.int64) if kept else np.empty(0, np.int64)
        if len(rows) == 0:
            raise ValueError(f"exclude={dict(exclude)} leaves no images in {source.path}")
    rows.setflags(write=False)
    return rows


def _row_range(indices: np.ndarray | slice, n: int, path: Path) -> np.ndarray:
    """Row numbers a slice or index array selects, with a clear error for rows outside the file."""
    if isinstance(indices, slice):
        return np.arange(n)[indices]
    idx = np.asarray(indices)
    if idx.size and (not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 or idx.max() >= n):
        raise IndexError(f"{path}: row indices must be integers in 0…{n - 1}, got {idx.dtype} "
                         f"{idx.min() if idx.size else ''}…{idx.max() if idx.size else ''}")
    return idx.astype(np.int64, copy=False)


# ---------------------------------------------------------------------------------------------------------------------
# HDF5 (3D-Shapes, real and procedural)
# ---------------------------------------------------------------------------------------------------------------------


class _ImageFile:
    """What every reader shares: ``shape`` (N, H, W, 3) and ``_rows`` are set by the reader's ``__post_init__``."""

    shape: tuple[int, ...]
    _rows: np.ndarray

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def image_size(self) -> int:
        return self.shape[1]

    @property
    def rows(self) -> np.ndarray:
        """Sorted usable row indices: every row, less those ``exclude`` leaves out."""
        return self._rows


class _OpenedLazily:
    """A reader whose file handle ``_file`` is opened on first read, closed by ``close()`` and never pickled, so each
    process of a data loader (or Ray worker) opens its own."""

    _file = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"] = None
        return state


@dataclass
class H5Images(_OpenedLazily, _ImageFile):
    """Random access to an HDF5 image file. Opened lazily so it can be handed to worker processes.

    Factors: a file with 6 label columns and no ``factor_names`` attribute (the real ``3dshapes.h5``), or with the
    3D-Shapes names (procedural files), has the 3D-Shapes factors and label values. Another file with
    ``factor_names`` and ``factor_sizes`` attributes has factors whose labels are the indices themselves.
    """

    path: Path
    images_key: str = "images"
    labels_key: str = "labels"
    exclude: Exclude | None = None
    factor_sizes: tuple[int, ...] = field(init=False, default=())
    slice_reads: ClassVar[bool] = True  # h5py's fancy reads are slow

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.is_file():
            raise DatasetError(f"data file {self.path} does not exist; make one with `sae data shapes3d --out DIR`")
        try:
            with h5py.File(self.path, "r") as f:
                if self.images_key not in f:
                    raise DatasetError(f"{self.path} has no '{self.images_key}' dataset (found: {sorted(f)})")
                images = f[self.images_key]
                self.shape = tuple(images.shape)
                dtype = images.dtype
                self.has_labels = self.labels_key in f
                label_shape = tuple(f[self.labels_key].shape) if self.has_labels else ()
                names = tuple(str(s) for s in f.attrs.get("factor_names", ()))
                sizes = tuple(int(s) for s in f.attrs.get("factor_sizes", ()))
        except OSError as e:
            raise DatasetError(f"{self.path} is not a readable HDF5 file: {e}") from e
        if len(self.shape) != 4 or self.shape[-1] != 3 or dtype != np.uint8:
            raise DatasetError(f"{self.path}: '{self.images_key}' must be uint8 [N, H, W, 3], "
                               f"got {dtype} {list(self.shape)}")
        if self.has_labels and (len(label_shape) != 2 or label_shape[0] != self.shape[0]):
            raise DatasetError(f"{self.path}: '{self.labels_key}' must be [N, K] with N = {self.shape[0]} images, "
                               f"got {list(label_shape)}")
        self._grid: tuple[np.ndarray, ...] | None = None
        n_labels = label_shape[1] if self.has_labels else 0
        if n_labels == 6 and names in ((), SHAPES3D_FACTOR_NAMES):
            names, sizes, self._grid = SHAPES3D_FACTOR_NAMES, SHAPES3D_FACTOR_SIZES, SHAPES3D_FACTOR_VALUES
        elif n_labels and len(names) == len(sizes) == n_labels:
            self._grid = tuple(np.arange(s, dtype=np.float64) for s in sizes)
        else:
            sizes = ()
        self.factor_names, self.factor_sizes = names, sizes
        self._file: h5py.File | None = None
        self._rows = _usable_rows(self, self.exclude)

    def _handle(self) -> h5py.File:
        if self._file is None:
            self._file = h5py.File(self.path, "r")
        return self._file

    def read(self, indices: np.ndarray | slice) -> np.ndarray:
        """uint8 [n, H, W, 3]. ``indices`` must be increasing (h5py's rule for fancy reads)."""
        try:
            return self._handle()[self.images_key][indices]
        except (OSError, RuntimeError) as e:  # h5py raises these for damaged chunks
            raise DatasetError(f"{self.path}: cannot read images ({e}); the file may be truncated or corrupt") from e

    def read_labels(self, indices: np.ndarray | slice) -> np.ndarray:
        """The stored label values [n, K] (float64 in 3D-Shapes)."""
        if not self.has_labels:
            raise DatasetError(f"{self.path} has no '{self.labels_key}' dataset")
        try:
            return self._handle()[self.labels_key][indices]
        except (OSError, RuntimeError) as e:
            raise DatasetError(f"{self.path}: cannot read labels ({e}); the file may be truncated or corrupt") from e

    def read_factors(self, indices: np.ndarray | slice) -> np.ndarray:
        """Factor indices int64 [n, K]: each label matched to its factor's value grid."""
        if self._grid is None:
            raise DatasetError(f"{self.path} has no factors: it needs a '{self.labels_key}' dataset with either the 6 "
                               f"3D-Shapes columns or 'factor_names' and 'factor_sizes' attributes")
        labels = np.asarray(self.read_labels(indices), dtype=np.float64)
        out = np.empty(labels.shape, dtype=np.int64)
        for k, grid in enumerate(self._grid):
            nearest = np.abs(labels[:, k, None] - grid).argmin(axis=1)
            off = np.abs(labels[:, k] - grid[nearest]) > _LABEL_TOLERANCE
            if off.any():
                raise DatasetError(f"{self.path}: label {labels[off, k][0]!r} of factor {self.factor_names[k]!r} is "
                                   f"not one of its values {grid.tolist()}")
            out[:, k] = nearest
        return out



# ---------------------------------------------------------------------------------------------------------------------
# .npz (MPI3D)
# ---------------------------------------------------------------------------------------------------------------------


def _npz_error(path: Path, what: str) -> DatasetError:
    return DatasetError(f"{path}: {what}")


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise _npz_error(path, f"not a readable .npz (zip) file ({e}); it may be truncated") from e


def _npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    return np.lib.format._read_array_header(f, version)  # 3.0: no public reader in numpy 1.x


def uncompress_npz(src: str | os.PathLike, dst: str | os.PathLike, chunk_bytes: int = 16 * 2**20) -> Path:
    """Copy an .npz with every member stored uncompressed, streaming (memory stays at ``chunk_bytes``).

    For a compressed MPI3D file (``np.savez_compressed``), which cannot be memory-mapped."""
    src, dst = Path(src), Path(dst)
    with _open_zip(src) as zin, zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zout:
        for info in zin.infolist():
            try:
                with zin.open(info) as fin, zout.open(info.filename, "w", force_zip64=True) as fout:
                    shutil.copyfileobj(fin, fout, chunk_bytes)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
                raise _npz_error(src, f"member {info.filename!r} is corrupt ({e})") from e
    return dst


@dataclass
class NpzImages(_ImageFile):
    """MPI3D in its ``.npz`` format: ``images`` uint8 [N, H, W, 3], memory-mapped, so only the rows read are loaded.

    The labels are the factor indices of the row, row-major over :data:`MPI3D_FACTOR_SIZES` (vertical_axis
    fastest). A file with fewer than 1,036,800 rows (a test file, or a prefix) holds the first N grid points.
    ``np.savez`` stores members uncompressed; a compressed member (``np.savez_compressed``) is read whole if it is at
    most ``inflate_limit`` bytes, and otherwise refused with a pointer to :func:`uncompress_npz`.
    """

    path: Path
    images_key: str = "images"
    exclude: Exclude | None = None
    inflate_limit: int = NPZ_INFLATE_LIMIT
    factor_names: tuple[str, ...] = field(init=False, default=MPI3D_FACTOR_NAMES)
    factor_sizes: tuple[int, ...] = field(init=False, default=MPI3D_FACTOR_SIZES)
    has_labels: bool = field(init=False, default=True)
    slice_reads: ClassVar[bool] = False

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.is_file():
            raise DatasetError(f"data file {self.path} does not exist")
        self._images: np.ndarray | None = None
        self._inflated = False
        images = self._open()  # validates the file now
        self.shape = tuple(images.shape)
        if self.shape[0] > MPI3D_NUM_IMAGES:
            raise _npz_error(self.path, f"'{self.images_key}' has {self.shape[0]} rows, more than the "
                                        f"{MPI3D_NUM_IMAGES} points of the MPI3D factor grid {MPI3D_FACTOR_SIZES}")
        self._strides = np.array([int(np.prod(MPI3D_FACTOR_SIZES[k + 1:])) for k in range(7)], dtype=np.int64)
        self._rows = _usable_rows(self, self.exclude)

    def _open(self) -> np.ndarray:
        if self._images is not None:
            return self._images
        member = f"{self.images_key}.npy"
        with _open_zip(self.path) as zf:
            names = zf.namelist()
            if member not in names:
                found = sorted(n.removesuffix(".npy") for n in names)
                raise _npz_error(self.path, f"no '{self.images_key}' array (found: {found})")
            info = zf.getinfo(member)
            if info.compress_type != zipfile.ZIP_STORED:
                self._images = self._inflate(zf, info)
                return self._images
        with open(self.path, "rb") as f:
            f.seek(info.header_offset)
            local = f.read(30)
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                raise _npz_error(self.path, f"zip entry {member!r} has no local header; the file is corrupt")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            start = info.header_offset + 30 + name_len + extra_len
            f.seek(start)
            try:
                shape, fortran, dtype = _npy_header(f)
            except ValueError as e:
                raise _npz_error(self.path, f"'{self.images_key}' is not a .npy array ({e})") from e
            offset = f.tell()
        self._check_array(shape, dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        end = offset + nbytes
        if end > start + info.file_size or end > self.path.stat().st_size:
            raise _npz_error(self.path, f"'{self.images_key}' {list(shape)} needs {nbytes} bytes but the file holds "
                                        f"fewer; it is truncated")
        self._images = np.memmap(self.path, dtype=dtype, mode="r", offset=offset, shape=shape,
                                 order="F" if fortran else "C")
        return self._images

    def _inflate(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
        if info.file_size > self.inflate_limit:
            raise _npz_error(self.path, f"'{self.images_key}' is compressed ({info.file_size / 2**20:.0f} MiB "
                             "uncompressed), so it cannot be memory-mapped; re-save it uncompressed with "
                             f"`python -c \"from clients.datasets import uncompress_npz; "
                             f"uncompress_npz('{self.path}', 'OUT.npz')\"` (streams; or np.savez instead of "
                             f"np.savez_compressed)")
        warnings.warn(f"{self.path}: '{self.images_key}' is compressed; reading all {info.file_size / 2**20:.1f} MiB "
                      "into memory (re-save with np.savez to memory-map it)", stacklevel=4)
        try:
            with zf.open(info) as fin:
                array = np.lib.format.read_array(fin)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:
            raise _npz_error(self.path, f"'{self.images_key}' cannot be decompressed ({e}); the file is corrupt") from e
        self._check_array(array.shape, array.dtype)
        self._inflated = True
        return array

    def _check_array(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        if len(shape) != 4 or shape[-1] != 3 or shape[1] != shape[2] or dtype != np.uint8:
            raise _npz_error(self.path, f"'{self.images_key}' must be uint8 [N, H, W, 3] with H = W (MPI3D: "
                                        f"[{MPI3D_NUM_IMAGES}, 64, 64, 3]), got {dtype} {list(shape)}")

    @property
    def images(self) -> np.ndarray:
        """The whole image array: a read-only ``np.memmap`` unless the member was compressed."""
        return self._open()

    def read(self, indices: np.ndarray | slice) -> np.ndarray:
        """uint8 [n, H, W, 3], copied out of the mapping (only these rows are read from disk)."""
        images = self._open()
        if not isinstance(indices, slice):
            indices = _row_range(indices, len(self), self.path)
        try:
            out = images[indices]
            return np.array(out) if isinstance(indices, slice) else np.asarray(out)
        except OSError as e:
            raise _npz_error(self.path, f"cannot read images ({e})") from e

    def read_factors(self, indices: np.ndarray | slice) -> np.ndarray:
        """Factor indices int64 [n, 7], computed from the row index."""
        rows = _row_range(indices, len(self), self.path)
        return (rows[:, None] // self._strides) % np.asarray(MPI3D_FACTOR_SIZES, dtype=np.int64)

    def read_labels(self, indices: np.ndarray | slice) -> np.ndarray:
        """MPI3D's labels are its factor indices (int64 [n, 7])."""
        return self.read_factors(indices)

    def close(self) -> None:
        self._images = None  # drops the mapping once no view of it is left

    def __getstate__(self):
        state = dict(self.__dict__)
        if not self._inflated:
            state["_images"] = None
        return state


# ---------------------------------------------------------------------------------------------------------------------
# Folder of JPEGs (aligned CelebA)
# ---------------------------------------------------------------------------------------------------------------------


def centre_crop_resize(image, size: int):
    """A PIL image → the largest centred square, resized to ``size``×``size`` RGB (bicubic, antialiased)."""
    from PIL import Image

    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = image.convert("RGB").crop((left, top, left + side, top + side))
    return square.resize((size, size), Image.Resampling.BICUBIC)


@dataclass
class JpegFolder(_ImageFile):
    """A folder of JPEGs (aligned CelebA: ``img_align_celeba/000001.jpg`` …), in sorted file-name order.

    Each read decodes the files, crops the largest centred square and resizes it to ``size`` (128). A folder
    with no JPEGs but an ``img_align_celeba`` subfolder (the extracted archive) reads that subfolder. No labels.
    Reads of more than a few files decode on ``threads`` threads (Pillow releases the GIL while decoding and
    resizing; default: up to 8, one per core)."""

    path: Path
    size: int = CELEBA_IMAGE_SIZE
    exclude: Exclude | None = None
    threads: int | None = None
    factor_names: tuple[str, ...] = field(init=False, default=())
    factor_sizes: tuple[int, ...] = field(init=False, default=())
    has_labels: bool = field(init=False, default=False)
    slice_reads: ClassVar[bool] = False  # each row is decoded on its own

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.is_dir():
            raise DatasetError(f"image folder {self.path} does not exist")
        self.files = self._list(self.path)
        if not self.files and (self.path / "img_align_celeba").is_dir():
            self.path = self.path / "img_align_celeba"
            self.files = self._list(self.path)
        if not self.files:
            found = sorted(p.name for p in self.path.iterdir())[:10]
            raise DatasetError(f"{self.path} holds no JPEG files ({'/'.join(JPEG_SUFFIXES)}); found {found}")
        if self.size < 1:
            raise ValueError(f"JpegFolder size must be ≥ 1 pixel, got {self.size}")
        self.shape = (len(self.files), self.size, self.size, 3)
        self.threads = int(self.threads) if self.threads is not None else min(8, os.cpu_count() or 1)
        if self.threads < 1:
            raise ValueError(f"JpegFolder threads must be ≥ 1, got {self.threads}")
        self._pool: ThreadPoolExecutor | None = None
        self._rows = _usable_rows(self, self.exclude)

    @staticmethod
    def _list(folder: Path) -> list[Path]:
        return sorted((p for p in folder.iterdir() if p.suffix.lower() in JPEG_SUFFIXES and p.is_file()),
                      key=lambda p: p.name)

    def _decode(self, file: Path) -> np.ndarray:
        try:
            from PIL import Image, UnidentifiedImageError
        except ImportError as e:
            raise DatasetError(f"reading JPEGs in {self.path} needs Pillow: pip install 'sae-serving[data]' (or pillow)") from e
        try:
            with Image.open(file) as image:
                image.load()
                return np.asarray(centre_crop_resize(image, self.size), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise DatasetError(f"{file}: unreadable JPEG ({e})") from e

    def read(self, indices: np.ndarray | slice) -> np.ndarray:
        """uint8 [n, S, S, 3], decoded now."""
        rows = _row_range(indices, len(self), self.path)
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        files = [self.files[r] for r in rows]
        if self.threads == 1 or len(files) < 4 * self.threads:
            decoded = map(self._decode, files)
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="jpeg-decode")
            decoded = self._pool.map(self._decode, files)
        for i, image in enumerate(decoded):
            out[i] = image
        return out

    def read_labels(self, indices: np.ndarray | slice) -> np.ndarray:
        raise DatasetError(f"{self.path} (a folder of JPEGs) has no labels")

    def read_factors(self, indices: np.ndarray | slice) -> np.ndarray:
        raise DatasetError(f"{self.path} (a folder of JPEGs) has no factors")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_pool"] = None
        return state


# ---------------------------------------------------------------------------------------------------------------------
# Opening and splitting
# ---------------------------------------------------------------------------------------------------------------------


def open_dataset(path: str | os.PathLike, *, exclude: Exclude | None = None,
                 celeba_size: int = CELEBA_IMAGE_SIZE) -> ImageSource:
    """The reader for ``path``: ``.h5``/``.hdf5`` (3D-Shapes), ``.npz`` (MPI3D), an RFD folder (see
    :mod:`clients.rfd`; the dataset's own folder means its ``finger`` training variant) or a folder of JPEGs (CelebA).

    ``exclude`` maps factor names to factor *indices* to leave out of :attr:`rows` (e.g. ``{"shape": [2]}``)."""
    path = Path(path)
    if path.is_dir():
        from clients import rfd  # imports this module

        if rfd.is_rfd_folder(path):
            return rfd.open_rfd(path, exclude=exclude)
        return JpegFolder(path, size=celeba_size, exclude=exclude)
    if not path.exists():
        raise DatasetError(f"data file {path} does not exist; make a procedural 3D-Shapes with "
                           "`sae data shapes3d --out DIR`, or pass a 3dshapes.h5, an MPI3D .npz, a CelebA folder or an "
                           "RFD folder")
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        return H5Images(path, exclude=exclude)
    if suffix == ".npz":
        return NpzImages(path, exclude=exclude)
    raise DatasetError(f"{path}: unknown dataset format {suffix!r}; expected .h5/.hdf5 (3D-Shapes), .npz (MPI3D) "
                       "or a folder of JPEGs (CelebA)")


def varying_factors(source: ImageSource) -> tuple[int, ...]:
    """Columns of ``source``'s factors that take more than one value (RFD's shape and size take one); the
    disentanglement metrics skip the others."""
    return tuple(k for k, size in enumerate(source.factor_sizes) if size > 1)


def split_indices(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic 70/10/20 train/val/test split of ``range(n)``; each split sorted."""
    order = np.random.default_rng(seed).permutation(n)
    n_train = int(round(n * SPLIT_FRACTIONS["train"]))
    n_val = int(round(n * SPLIT_FRACTIONS["val"]))
    parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    return {k: np.sort(v) for k, v in parts.items()}


def dataset_splits(source: ImageSource, seed: int = 0) -> dict[str, np.ndarray]:
    """:func:`split_indices` over the whole file, restricted to ``source.rows``.

    An image keeps the split it has without ``exclude``, so leaving values out never moves an image between train
    and test; the kept splits are then only roughly 70/10/20 of the kept rows."""
    splits = split_indices(len(source), seed)
    rows = source.rows
    if len(rows) == len(source):
        return splits
    return {k: v[np.isin(v, rows, assume_unique=True)] for k, v in splits.items()}


# ---------------------------------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------------------------------


def _read_rows(data: ImageSource, rows: np.ndarray) -> np.ndarray:
    """Images of sorted ``rows``: one slice then a selection where the reader prefers slices, else just the rows."""
    if getattr(data, "slice_reads", True):
        return data.read(slice(int(rows[0]), int(rows[-1]) + 1))[rows - rows[0]]
    return data.read(rows)


def shuffled_batches(data: ImageSource, indices: np.ndarray, batch_size: int, rng: np.random.Generator,
                     block: int = 256, blocks_per_buffer: int = 64) -> Iterator[np.ndarray]:
    """One epoch of shuffled uint8 batches over ``indices`` (sorted).

    Dataset files are stored in factor-grid order (3D-Shapes: floor hue slowest), so a contiguous stretch of rows
    shares most factor values: batches drawn from one stretch are far from i.i.d. and training chases whichever
    values it currently sees. The file is therefore cut into blocks of ``block`` rows (the HDF5 chunk length), and
    a shuffle buffer is filled from ``blocks_per_buffer`` blocks chosen at random from the whole file, read block by
    block (in HDF5 as slices: h5py's fancy indexing is far slower than a slice plus numpy selection). Memory is
    bounded by one buffer (64 x 256 images of 64x64: 200 MB). The last partial batch is dropped.
    """
    if len(indices) < batch_size:
        raise DatasetError(f"{data.path}: only {len(indices)} images in this split, fewer than batch size {batch_size}")
    bounds = np.searchsorted(indices, np.arange(0, len(data) + block, block))
    blocks = [b for b in rng.permutation(len(bounds) - 1) if bounds[b + 1] > bounds[b]]
    carry = np.empty((0, *data.shape[1:]), np.uint8)
    for first in range(0, len(blocks), blocks_per_buffer):
        chosen = sorted(blocks[first:first + blocks_per_buffer])
        images = np.concatenate([carry, *(_read_rows(data, indices[bounds[b]:bounds[b + 1]]) for b in chosen)])
        images = images[rng.permutation(len(images))]
        full = len(images) // batch_size * batch_size
        for start in range(0, full, batch_size):
            yield images[start:start + batch_size]
        carry = images[full:]


def batches_in_order(data: ImageSource, indices: np.ndarray,
                     batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(indices, images) batches in file order, the last one partial: for evaluation and encoding."""
    for start in range(0, len(indices), batch_size):
        rows = indices[start:start + batch_size]
        yield rows, _read_rows(data, rows)
