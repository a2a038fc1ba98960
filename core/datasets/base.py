"""What every reader shares: its interface (:class:`ImageSource`), its error, its rows and ``exclude``."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt

from sae.core.errors import SAEError

_FACTOR_BLOCK = 65536  # rows per block when scanning factors for ``exclude``


class DatasetError(SAEError, ValueError):
    """A data file is missing, corrupt or not in the expected format."""


Exclude = Mapping[str, Sequence[int]]
ImageArray = npt.NDArray[np.uint8]  # uint8 [n, H, W, 3]
RowIndices = npt.NDArray[np.int64]  # sorted row numbers of a file
RowSelection = npt.NDArray[np.integer[Any]] | slice  # what ``read`` takes: increasing row indices or a slice
LabelArray = npt.NDArray[np.number[Any]]  # stored label values [n, K] (float64 in 3D-Shapes, indices elsewhere)
FactorArray = npt.NDArray[np.int64]  # factor indices [n, K]


@runtime_checkable
class ImageSource(Protocol):
    """What every reader offers. ``read`` takes a slice or increasing row indices and returns uint8 [n, H, W, 3]."""

    path: Path
    shape: tuple[int, ...]
    has_labels: bool
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]

    def __len__(self) -> int: ...
    @property
    def image_size(self) -> int: ...
    @property
    def slice_reads(self) -> bool: ...  # True: reading a contiguous slice and selecting rows beats reading the rows
    @property
    def rows(self) -> RowIndices: ...
    def read(self, indices: RowSelection) -> ImageArray: ...
    def read_labels(self, indices: RowSelection) -> LabelArray: ...
    def read_factors(self, indices: RowSelection) -> FactorArray: ...
    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------------------------------
# Excluding factor values
# ---------------------------------------------------------------------------------------------------------------------


def _check_exclude(exclude: Exclude | None, source: ImageSource) -> dict[int, npt.NDArray[np.int64]]:
    """{factor column: excluded indices}; ValueError naming the factor or value that is wrong."""
    if not exclude:
        return {}
    if not isinstance(exclude, Mapping):
        raise DatasetError(f"exclude must map factor names to lists of factor indices, got {type(exclude).__name__}")
    if not source.factor_names:
        raise DatasetError(f"exclude={dict(exclude)} but {source.path} has no factors to exclude values of")
    spec: dict[int, npt.NDArray[np.int64]] = {}
    for name, values in exclude.items():
        if name not in source.factor_names:
            raise DatasetError(
                f"exclude: unknown factor {name!r} for {source.path}; its factors are {list(source.factor_names)}"
            )
        k = source.factor_names.index(name)
        size = source.factor_sizes[k]
        if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
            raise DatasetError(f"exclude[{name!r}] must be a list of factor indices, got {values!r}")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise DatasetError(
                    f"exclude[{name!r}]: {v!r} is not a factor index; values are indices "
                    f"0…{size - 1} (not label values)"
                )
            if not 0 <= int(v) < size:
                raise DatasetError(
                    f"exclude[{name!r}]: index {int(v)} is out of range; {name!r} has {size} values "
                    f"(indices 0…{size - 1})"
                )
        chosen = np.unique(np.asarray(values, dtype=np.int64))
        if len(chosen) == size:
            raise DatasetError(f"exclude[{name!r}] leaves out all {size} values of {name!r}; nothing would remain")
        if len(chosen):
            spec[k] = chosen
    return spec


def parse_exclude(items: Sequence[str]) -> dict[str, list[int]]:
    """Command-line spelling → ``exclude``: ``["shape=2", "floor_hue=0,1"]`` → ``{"shape": [2], "floor_hue": [0,
    1]}``."""
    exclude: dict[str, list[int]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise DatasetError(f"--exclude {item!r}: expected FACTOR=INDEX[,INDEX...], e.g. shape=2")
        try:
            indices = [int(v) for v in values.split(",")]
        except ValueError:
            raise DatasetError(f"--exclude {item!r}: values must be factor indices (integers), e.g. shape=2") from None
        exclude.setdefault(name.strip(), []).extend(indices)
    return exclude


def usable_rows(source: ImageSource, exclude: Exclude | None) -> RowIndices:
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
            raise DatasetError(f"exclude={dict(exclude or {})} leaves no images in {source.path}")
    rows.setflags(write=False)
    return rows


def row_range(indices: RowSelection, n: int, path: Path) -> RowIndices:
    """Row numbers a slice or index array selects, with a clear error for rows outside the file."""
    if isinstance(indices, slice):
        return np.arange(n)[indices]
    idx = np.asarray(indices)
    if idx.size and (not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 or idx.max() >= n):
        raise IndexError(
            f"{path}: row indices must be integers in 0…{n - 1}, got {idx.dtype} "
            f"{idx.min() if idx.size else ''}…{idx.max() if idx.size else ''}"
        )
    return idx.astype(np.int64, copy=False)


class ImageFile:
    """What every reader shares: ``shape`` (N, H, W, 3) and ``_rows`` are set by the reader's ``__post_init__``."""

    shape: tuple[int, ...]
    _rows: RowIndices

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def image_size(self) -> int:
        return self.shape[1]

    @property
    def rows(self) -> RowIndices:
        """Sorted usable row indices: every row, less those ``exclude`` leaves out."""
        return self._rows


class _Closeable(Protocol):
    def close(self) -> None: ...


_Handle = TypeVar("_Handle", bound=_Closeable)


class OpenedLazily(Generic[_Handle]):
    """A reader whose file handle ``_file`` (of type ``_Handle``) is opened on first read, closed by ``close()`` and
    never pickled, so each process of a data loader (or Ray worker) opens its own."""

    _file: _Handle | None = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"] = None
        return state
