"""``.npz`` images (MPI3D), memory-mapped from the zip where the member is stored uncompressed."""

from __future__ import annotations

import os
import shutil
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar, cast

import numpy as np

from sae.core.datasets import base
from sae.core.datasets.factors import MPI3D_FACTOR_NAMES, MPI3D_FACTOR_SIZES, MPI3D_NUM_IMAGES

# A compressed .npz member up to this many bytes (uncompressed) is read whole, with a warning; larger ones are refused.
NPZ_INFLATE_LIMIT = 256 * 2**20


def _npz_error(path: Path, what: str) -> base.DatasetError:
    return base.DatasetError(f"{path}: {what}")


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise _npz_error(path, f"not a readable .npz (zip) file ({e}); it may be truncated") from e


_NpyHeader = tuple[tuple[int, ...], bool, np.dtype[Any]]  # (shape, fortran_order, dtype) of a .npy header
# numpy's stubs leave np.lib.format untyped: these are the signatures of numpy/lib/format.py
_ReadHeader = Callable[[IO[bytes]], _NpyHeader]


def _npy_header(f: IO[bytes]) -> _NpyHeader:
    version = cast(Callable[[IO[bytes]], tuple[int, int]], np.lib.format.read_magic)(f)
    if version == (1, 0):
        return cast(_ReadHeader, np.lib.format.read_array_header_1_0)(f)
    if version == (2, 0):
        return cast(_ReadHeader, np.lib.format.read_array_header_2_0)(f)
    # 3.0: no public reader in numpy 1.x; the private one is not in the stubs
    read_header = cast(Callable[[IO[bytes], tuple[int, int]], _NpyHeader], np.lib.format._read_array_header)  # type: ignore[attr-defined]
    return read_header(f, version)


def uncompress_npz(src: str | os.PathLike[str], dst: str | os.PathLike[str], chunk_bytes: int = 16 * 2**20) -> Path:
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
class NpzImages(base.ImageFile):
    """MPI3D in its ``.npz`` format: ``images`` uint8 [N, H, W, 3], memory-mapped, so only the rows read are loaded.

    The labels are the factor indices of the row, row-major over :data:`MPI3D_FACTOR_SIZES` (vertical_axis
    fastest). A file with fewer than 1,036,800 rows (a test file, or a prefix) holds the first N grid points.
    ``np.savez`` stores members uncompressed; a compressed member (``np.savez_compressed``) is read whole if it is at
    most ``inflate_limit`` bytes, and otherwise refused with a pointer to :func:`uncompress_npz`.
    """

    path: Path
    images_key: str = "images"
    exclude: base.Exclude | None = None
    inflate_limit: int = NPZ_INFLATE_LIMIT
    factor_names: tuple[str, ...] = field(init=False, default=MPI3D_FACTOR_NAMES)
    factor_sizes: tuple[int, ...] = field(init=False, default=MPI3D_FACTOR_SIZES)
    has_labels: bool = field(init=False, default=True)
    slice_reads: ClassVar[bool] = False

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.is_file():
            raise base.DatasetError(f"data file {self.path} does not exist")
        self._images: base.ImageArray | None = None
        self._inflated = False
        images = self._open()  # validates the file now
        self.shape = tuple(images.shape)
        if self.shape[0] > MPI3D_NUM_IMAGES:
            raise _npz_error(
                self.path,
                f"'{self.images_key}' has {self.shape[0]} rows, more than the "
                f"{MPI3D_NUM_IMAGES} points of the MPI3D factor grid {MPI3D_FACTOR_SIZES}",
            )
        self._strides = np.array([int(np.prod(MPI3D_FACTOR_SIZES[k + 1 :])) for k in range(7)], dtype=np.int64)
        self._rows = base.usable_rows(self, self.exclude)

    def _open(self) -> base.ImageArray:
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
            raise _npz_error(
                self.path,
                f"'{self.images_key}' {list(shape)} needs {nbytes} bytes but the file holds fewer; it is truncated",
            )
        self._images = np.memmap(
            self.path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C"
        )
        return self._images

    def _inflate(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> base.ImageArray:
        if info.file_size > self.inflate_limit:
            raise _npz_error(
                self.path,
                f"'{self.images_key}' is compressed ({info.file_size / 2**20:.0f} MiB "
                "uncompressed), so it cannot be memory-mapped; re-save it uncompressed with "
                f'`python -c "from sae.core.datasets import uncompress_npz; '
                f"uncompress_npz('{self.path}', 'OUT.npz')\"` (streams; or np.savez instead of "
                f"np.savez_compressed)",
            )
        warnings.warn(
            f"{self.path}: '{self.images_key}' is compressed; reading all {info.file_size / 2**20:.1f} MiB "
            "into memory (re-save with np.savez to memory-map it)",
            stacklevel=4,
        )
        try:
            with zf.open(info) as fin:
                array = cast(Callable[[IO[bytes]], base.ImageArray], np.lib.format.read_array)(fin)  # checked below
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:
            raise _npz_error(self.path, f"'{self.images_key}' cannot be decompressed ({e}); the file is corrupt") from e
        self._check_array(array.shape, array.dtype)
        self._inflated = True
        return array

    def _check_array(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        if len(shape) != 4 or shape[-1] != 3 or shape[1] != shape[2] or dtype != np.uint8:
            raise _npz_error(
                self.path,
                f"'{self.images_key}' must be uint8 [N, H, W, 3] with H = W (MPI3D: "
                f"[{MPI3D_NUM_IMAGES}, 64, 64, 3]), got {dtype} {list(shape)}",
            )

    @property
    def images(self) -> base.ImageArray:
        """The whole image array: a read-only ``np.memmap`` unless the member was compressed."""
        return self._open()

    def read(self, indices: base.RowSelection) -> base.ImageArray:
        """uint8 [n, H, W, 3], copied out of the mapping (only these rows are read from disk)."""
        images = self._open()
        if not isinstance(indices, slice):
            indices = base.row_range(indices, len(self), self.path)
        try:
            out = images[indices]
            copied: base.ImageArray = np.array(out) if isinstance(indices, slice) else np.asarray(out)
            return copied
        except OSError as e:
            raise _npz_error(self.path, f"cannot read images ({e})") from e

    def read_factors(self, indices: base.RowSelection) -> base.FactorArray:
        """Factor indices int64 [n, 7], computed from the row index."""
        rows = base.row_range(indices, len(self), self.path)
        return (rows[:, None] // self._strides) % np.asarray(MPI3D_FACTOR_SIZES, dtype=np.int64)

    def read_labels(self, indices: base.RowSelection) -> base.LabelArray:
        """MPI3D's labels are its factor indices (int64 [n, 7])."""
        return self.read_factors(indices)

    def close(self) -> None:
        self._images = None  # drops the mapping once no view of it is left

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if not self._inflated:
            state["_images"] = None
        return state
