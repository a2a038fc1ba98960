"""HDF5 images (3D-Shapes, real and procedural)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import h5py
import numpy as np
import numpy.typing as npt

from sae.core.datasets import base
from sae.core.datasets.factors import (
    SHAPES3D_FACTOR_NAMES,
    SHAPES3D_FACTOR_SIZES,
    SHAPES3D_FACTOR_VALUES,
    nearest_factor_indices,
)

_LABEL_TOLERANCE = 1e-4  # how far a stored label may lie from its grid value


@dataclass
class H5Images(base.OpenedLazily[h5py.File], base.ImageFile):
    """Random access to an HDF5 image file. Opened lazily so it can be handed to worker processes.

    Factors: a file with 6 label columns and no ``factor_names`` attribute (the real ``3dshapes.h5``), or with the
    3D-Shapes names (procedural files), has the 3D-Shapes factors and label values. Another file with
    ``factor_names`` and ``factor_sizes`` attributes has factors whose labels are the indices themselves.
    """

    path: Path
    images_key: str = "images"
    labels_key: str = "labels"
    exclude: base.Exclude | None = None
    factor_sizes: tuple[int, ...] = field(init=False, default=())
    slice_reads: ClassVar[bool] = True  # h5py's fancy reads are slow

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.is_file():
            raise base.DatasetError(
                f"data file {self.path} does not exist; make one with `sae data shapes3d --out DIR`"
            )
        try:
            with h5py.File(self.path, "r") as f:
                if self.images_key not in f:
                    raise base.DatasetError(f"{self.path} has no '{self.images_key}' dataset (found: {sorted(f)})")
                images = f[self.images_key]
                self.shape = tuple(images.shape)
                dtype = images.dtype
                self.has_labels = self.labels_key in f
                label_shape = tuple(f[self.labels_key].shape) if self.has_labels else ()
                names = tuple(str(s) for s in f.attrs.get("factor_names", ()))
                sizes = tuple(int(s) for s in f.attrs.get("factor_sizes", ()))
        except OSError as e:
            raise base.DatasetError(f"{self.path} is not a readable HDF5 file: {e}") from e
        if len(self.shape) != 4 or self.shape[-1] != 3 or dtype != np.uint8:
            raise base.DatasetError(
                f"{self.path}: '{self.images_key}' must be uint8 [N, H, W, 3], got {dtype} {list(self.shape)}"
            )
        if self.has_labels and (len(label_shape) != 2 or label_shape[0] != self.shape[0]):
            raise base.DatasetError(
                f"{self.path}: '{self.labels_key}' must be [N, K] with N = {self.shape[0]} images, "
                f"got {list(label_shape)}"
            )
        self._grid: tuple[npt.NDArray[np.float64], ...] | None = None
        n_labels = label_shape[1] if self.has_labels else 0
        if n_labels == 6 and names in ((), SHAPES3D_FACTOR_NAMES):
            names, sizes, self._grid = SHAPES3D_FACTOR_NAMES, SHAPES3D_FACTOR_SIZES, SHAPES3D_FACTOR_VALUES
        elif n_labels and len(names) == len(sizes) == n_labels:
            self._grid = tuple(np.arange(s, dtype=np.float64) for s in sizes)
        else:
            sizes = ()
        self.factor_names, self.factor_sizes = names, sizes
        self._file: h5py.File | None = None
        self._rows = base.usable_rows(self, self.exclude)

    def _handle(self) -> h5py.File:
        if self._file is None:
            self._file = h5py.File(self.path, "r")
        return self._file

    def read(self, indices: base.RowSelection) -> base.ImageArray:
        """uint8 [n, H, W, 3]. ``indices`` must be increasing (h5py's rule for fancy reads)."""
        try:
            images: base.ImageArray = self._handle()[self.images_key][indices]
            return images
        except (OSError, RuntimeError) as e:  # h5py raises these for damaged chunks
            raise base.DatasetError(
                f"{self.path}: cannot read images ({e}); the file may be truncated or corrupt"
            ) from e

    def read_labels(self, indices: base.RowSelection) -> base.LabelArray:
        """The stored label values [n, K] (float64 in 3D-Shapes)."""
        if not self.has_labels:
            raise base.DatasetError(f"{self.path} has no '{self.labels_key}' dataset")
        try:
            labels: base.LabelArray = self._handle()[self.labels_key][indices]
            return labels
        except (OSError, RuntimeError) as e:
            raise base.DatasetError(
                f"{self.path}: cannot read labels ({e}); the file may be truncated or corrupt"
            ) from e

    def read_factors(self, indices: base.RowSelection) -> base.FactorArray:
        """Factor indices int64 [n, K]: each label matched to its factor's value grid."""
        if self._grid is None:
            raise base.DatasetError(
                f"{self.path} has no factors: it needs a '{self.labels_key}' dataset with either the 6 "
                f"3D-Shapes columns or 'factor_names' and 'factor_sizes' attributes"
            )
        labels = np.asarray(self.read_labels(indices), dtype=np.float64)
        out, distance = nearest_factor_indices(labels, self._grid)
        off = distance > _LABEL_TOLERANCE
        if off.any():
            k = int(np.flatnonzero(off.any(axis=0))[0])  # the first factor off its grid, as read column by column
            row = int(np.flatnonzero(off[:, k])[0])
            raise base.DatasetError(
                f"{self.path}: label {labels[row, k]!r} of factor {self.factor_names[k]!r} is "
                f"not one of its values {self._grid[k].tolist()}"
            )
        return out
