"""The Robot Finger Dataset (RFD; Dittadi et al., ICLR 2021), the paper's fourth dataset, read without torch.

The dataset's folder ``robot_finger_datasets/`` holds three variants, each in its own folder with files named after
it (``PREFIX`` is the folder's name):

* ``finger/`` (simulated; the training set) and ``finger_heldout_colors/`` (cube colours left out of training):
  ``PREFIX_images.tar``, one 128×128 RGB PNG per image, member names ``.../N.png`` with N the row;
* ``finger_real/`` (real camera images, for sim-to-real tests): ``PREFIX_images.npz``, key ``images``, uint8
  [N, 128, 128, 3], memory-mapped where the member is stored uncompressed (as :class:`sae.core.datasets.npz.NpzImages`);
* every variant: ``PREFIX_labels.npz`` (key ``labels``: one row of 9 factor indices per image) and
  ``PREFIX_info.npz`` (key ``num_factor_values``, and optionally ``dataset_size``).

The tar is never unpacked: its members are indexed once when the reader opens (row → data offset and size, in two
int64 arrays), and each read fetches just the PNGs of its rows. Pillow decodes them (a client dependency).

No file is read with pickle (``allow_pickle=False``). The public loaders pass ``allow_pickle=True`` because the
info file also holds ``factor_values``, a pickled dict; only the numeric keys are read here, so that key is never
touched. A labels or info key that is itself pickled is refused with an error naming the file.

Factors (:data:`RFD_FACTOR_NAMES`): shape 1, colour 8, size 1, joint0/1/2 30 each, x 30, y 30, angle 10, as the
info file gives them. Shape and size take a single value; :func:`sae.core.datasets.varying_factors` leaves such
factors out, and the disentanglement metrics skip single-valued factors.
"""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

from sae.core.datasets import base
from sae.core.datasets.npz import NpzImages

RFD_ROOT_NAME = "robot_finger_datasets"
RFD_VARIANTS = ("finger", "finger_heldout_colors", "finger_real")
RFD_REAL_VARIANT = "finger_real"
RFD_FACTOR_NAMES = ("shape", "colour", "size", "joint0", "joint1", "joint2", "x", "y", "angle")
RFD_FACTOR_SIZES = (1, 8, 1, 30, 30, 30, 30, 30, 10)
RFD_IMAGE_SIZE = 128


def rfd_variant_folder(path: str | os.PathLike[str], variant: str | None = None) -> tuple[Path, str]:
    """(variant folder, variant name) for a variant folder or the ``robot_finger_datasets/`` folder.

    Given the dataset's folder, ``variant`` picks one (default ``finger``, the training set); given a variant folder,
    ``variant`` may be left out or must name it."""
    path = Path(path)
    if variant is not None and variant not in RFD_VARIANTS:
        raise base.DatasetError(f"RFD variant {variant!r} is not one of {', '.join(RFD_VARIANTS)}")
    if path.name in RFD_VARIANTS:
        if variant not in (None, path.name):
            raise base.DatasetError(f"{path} is the {path.name!r} variant, not {variant!r}")
        return path, path.name
    chosen = variant or RFD_VARIANTS[0]
    if not (path / chosen).is_dir():
        found = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
        raise base.DatasetError(f"{path} has no RFD variant folder {chosen!r} (found: {found})")
    return path / chosen, chosen


def is_rfd_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is the RFD's folder or one of its variant folders (by the names the dataset ships with)."""
    path = Path(path)
    if not path.is_dir():
        return False
    return (
        path.name in RFD_VARIANTS
        or path.name == RFD_ROOT_NAME
        or any((path / v / f"{v}_labels.npz").is_file() for v in RFD_VARIANTS)
    )


def open_rfd(
    path: str | os.PathLike[str], variant: str | None = None, exclude: base.Exclude | None = None
) -> FingerTarImages | FingerRealImages:
    """The reader for one RFD variant: the tar of PNGs for the simulated ones, the ``.npz`` for ``finger_real``."""
    folder, name = rfd_variant_folder(path, variant)
    if name == RFD_REAL_VARIANT:
        return FingerRealImages(folder / f"{name}_images.npz", exclude=exclude)
    return FingerTarImages(folder / f"{name}_images.tar", exclude=exclude)


# ---------------------------------------------------------------------------------------------------------------------
# Labels and info (shared by every variant)
# ---------------------------------------------------------------------------------------------------------------------


def _numeric_member(path: Path, key: str) -> npt.NDArray[np.number[Any]]:
    """One numeric array of an ``.npz``, read with ``allow_pickle=False``; DatasetError naming the file otherwise."""
    if not path.is_file():
        raise base.DatasetError(f"RFD file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if key not in npz.files:
                raise base.DatasetError(f"{path} has no '{key}' array (found: {sorted(npz.files)})")
            array: npt.NDArray[np.number[Any]] = npz[key]  # checked numeric below
    except base.DatasetError:
        raise
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise base.DatasetError(
                f"{path}: '{key}' is a pickled object array; it is read only without pickle "
                "(re-save it as a numeric array)"
            ) from e
        raise base.DatasetError(f"{path}: cannot read '{key}' ({e}); the file may be corrupt") from e
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise base.DatasetError(f"{path} is not a readable .npz file ({e}); it may be truncated") from e
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise base.DatasetError(f"{path}: '{key}' must be numeric, got {array.dtype}")
    return array


def _finger_factors(folder: Path, prefix: str, num_images: int) -> tuple[base.FactorArray, tuple[int, ...]]:
    """(factor indices int64 [N, 9], factor sizes) from ``PREFIX_labels.npz`` and ``PREFIX_info.npz``."""
    info_path = folder / f"{prefix}_info.npz"
    sizes = tuple(int(s) for s in _numeric_member(info_path, "num_factor_values").reshape(-1))
    if len(sizes) != len(RFD_FACTOR_NAMES) or min(sizes) < 1:
        raise base.DatasetError(
            f"{info_path}: 'num_factor_values' must give {len(RFD_FACTOR_NAMES)} positive sizes "
            f"({', '.join(RFD_FACTOR_NAMES)}), got {list(sizes)}"
        )
    with np.load(info_path, allow_pickle=False) as npz:
        has_size = "dataset_size" in npz.files
    if has_size:
        declared = int(_numeric_member(info_path, "dataset_size").reshape(-1)[0])
        if declared != num_images:
            raise base.DatasetError(f"{info_path}: 'dataset_size' is {declared} but there are {num_images} images")
    labels_path = folder / f"{prefix}_labels.npz"
    labels = _numeric_member(labels_path, "labels")
    if labels.ndim != 2 or labels.shape[1] != len(sizes):
        raise base.DatasetError(f"{labels_path}: 'labels' must be [N, {len(sizes)}], got {list(labels.shape)}")
    if labels.shape[0] != num_images:
        raise base.DatasetError(f"{labels_path}: 'labels' has {labels.shape[0]} rows but there are {num_images} images")
    factors = labels.astype(np.int64)
    bad = (factors != labels) | (factors < 0) | (factors >= np.asarray(sizes))
    if bad.any():
        row, k = np.argwhere(bad)[0]
        raise base.DatasetError(
            f"{labels_path}: label {labels[row, k]!r} of factor {RFD_FACTOR_NAMES[k]!r} (row {row}) is "
            f"not a factor index 0…{sizes[k] - 1}"
        )
    factors.setflags(write=False)
    return factors, sizes


class _FingerFactors:
    """Labels of an RFD variant: its factor indices, held in memory (9 small integers per image)."""

    path: Path
    _factors: base.FactorArray

    if TYPE_CHECKING:

        def __len__(self) -> int: ...  # the reader's (ImageFile's): its number of images

    def read_factors(self, indices: base.RowSelection) -> base.FactorArray:
        """Factor indices int64 [n, 9]."""
        return self._factors[base.row_range(indices, len(self), self.path)]

    def read_labels(self, indices: base.RowSelection) -> base.LabelArray:
        """RFD's labels are its factor indices (int64 [n, 9])."""
        return self.read_factors(indices)


# ---------------------------------------------------------------------------------------------------------------------
# Simulated variants: a tar of PNGs
# ---------------------------------------------------------------------------------------------------------------------


def _row_of_member(name: str) -> int | None:
    """N of a member ``.../N.png``; None for members that are not numbered PNGs."""
    stem, dot, suffix = name.rpartition("/")[2].rpartition(".")
    if not dot or suffix.lower() != "png" or not stem.isdigit():
        return None
    return int(stem)


def index_tar(path: Path) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(data offset, size) of each numbered PNG member, by row; one pass over the tar's headers.

    DatasetError naming the tar if it cannot be read, is compressed, repeats a row or misses one."""
    rows: list[int] = []
    offsets: list[int] = []
    sizes: list[int] = []
    try:
        with tarfile.open(path, mode="r:") as tar:
            while (member := tar.next()) is not None:
                tar.members.clear()  # type: ignore[attr-defined]  # TarFile.members exists; typeshed omits it
                # the index below is all that is kept: 1M TarInfo objects would take GBs
                row = _row_of_member(member.name) if member.isreg() else None
                if row is not None:
                    rows.append(row)
                    offsets.append(member.offset_data)
                    sizes.append(member.size)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise base.DatasetError(f"{path} is not a readable uncompressed tar of PNGs ({e})") from e
    if not rows:
        raise base.DatasetError(f"{path} holds no PNG members named N.png")
    rows_arr = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows_arr, kind="stable")
    rows_arr = rows_arr[order]
    expected = np.arange(len(rows_arr))
    if not np.array_equal(rows_arr, expected):
        if len(np.unique(rows_arr)) != len(rows_arr):
            dup = rows_arr[np.flatnonzero(np.diff(rows_arr) == 0)[0]]
            raise base.DatasetError(f"{path}: image {dup}.png appears more than once")
        missing = int(np.setdiff1d(np.arange(rows_arr[-1] + 1), rows_arr)[0])
        raise base.DatasetError(f"{path}: member {missing}.png is missing (rows must run 0…N-1 without gaps)")
    return np.asarray(offsets, dtype=np.int64)[order], np.asarray(sizes, dtype=np.int64)[order]


def decode_png(data: bytes, where: str) -> base.ImageArray:
    """PNG bytes → uint8 [H, W, 3] (alpha dropped); DatasetError naming ``where`` if it is not a readable PNG."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as e:
        raise base.DatasetError(f"decoding {where} needs Pillow: pip install 'sae-serving[data]' (or pillow)") from e
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG":
                raise base.DatasetError(f"{where} is not a PNG (Pillow reads it as {image.format})")
            image.load()
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise base.DatasetError(f"{where}: unreadable PNG ({e})") from e


@dataclass
class FingerTarImages(_FingerFactors, base.OpenedLazily[io.BufferedReader], base.ImageFile):
    """A simulated RFD variant (``finger/`` or ``finger_heldout_colors/``): PNGs read by row from its tar, labels
    from the ``.npz`` files beside it."""

    path: Path  # the variant's PREFIX_images.tar
    exclude: base.Exclude | None = None
    factor_names: tuple[str, ...] = field(init=False, default=RFD_FACTOR_NAMES)
    factor_sizes: tuple[int, ...] = field(init=False, default=RFD_FACTOR_SIZES)
    has_labels: bool = field(init=False, default=True)
    slice_reads: ClassVar[bool] = False  # each row is its own member

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.is_file():
            raise base.DatasetError(f"RFD file {self.path} does not exist")
        self._offsets, self._sizes = index_tar(self.path)
        self._file = None
        first = self._decode_row(0)
        if first.shape != (RFD_IMAGE_SIZE, RFD_IMAGE_SIZE, 3):
            raise base.DatasetError(
                f"{self.path}: 0.png is {first.shape[1]}×{first.shape[0]}, RFD images are "
                f"{RFD_IMAGE_SIZE}×{RFD_IMAGE_SIZE} RGB"
            )
        self.shape = (len(self._offsets), *first.shape)
        folder = self.path.parent
        self._factors, self.factor_sizes = _finger_factors(folder, folder.name, len(self._offsets))
        self._rows = base.usable_rows(self, self.exclude)

    def _decode_row(self, row: int) -> base.ImageArray:
        if self._file is None:
            self._file = open(self.path, "rb")
        size = int(self._sizes[row])
        data = os.pread(self._file.fileno(), size, int(self._offsets[row]))
        where = f"{self.path} member {row}.png"
        if len(data) != size:
            raise base.DatasetError(f"{where}: the tar ends before the member does; it is truncated")
        return decode_png(data, where)

    def read(self, indices: base.RowSelection) -> base.ImageArray:
        """uint8 [n, 128, 128, 3], decoded now."""
        rows = base.row_range(indices, len(self), self.path)
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        for i, row in enumerate(rows):
            image = self._decode_row(int(row))
            if image.shape != self.shape[1:]:
                raise base.DatasetError(
                    f"{self.path} member {row}.png is {list(image.shape)}, the others {list(self.shape[1:])}"
                )
            out[i] = image
        return out


# ---------------------------------------------------------------------------------------------------------------------
# finger_real: an .npz of images
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class FingerRealImages(_FingerFactors, NpzImages):
    """``finger_real/``: ``finger_real_images.npz`` memory-mapped as :class:`NpzImages` reads MPI3D, with the
    labels of ``finger_real_labels.npz``."""

    factor_names: tuple[str, ...] = field(init=False, default=RFD_FACTOR_NAMES)
    factor_sizes: tuple[int, ...] = field(init=False, default=RFD_FACTOR_SIZES)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.is_file():
            raise base.DatasetError(f"RFD file {self.path} does not exist")
        self._images = None
        self._inflated = False
        self.shape = tuple(self._open().shape)
        folder = self.path.parent
        self._factors, self.factor_sizes = _finger_factors(folder, folder.name, self.shape[0])
        self._rows = base.usable_rows(self, self.exclude)

    def _check_array(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        if tuple(shape[1:]) != (RFD_IMAGE_SIZE, RFD_IMAGE_SIZE, 3) or len(shape) != 4 or dtype != np.uint8:
            raise base.DatasetError(
                f"{self.path}: '{self.images_key}' must be uint8 [N, {RFD_IMAGE_SIZE}, "
                f"{RFD_IMAGE_SIZE}, 3], got {dtype} {list(shape)}"
            )
