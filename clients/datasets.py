"""Image datasets in the real 3D-Shapes HDF5 format, read in windows so memory stays bounded.

Torch-free (numpy and h5py only), so that both the trainer and the client-side batch jobs read data the same way.

A file holds ``images`` uint8 [N, H, W, 3] and (optionally) ``labels`` float64 [N, K]. The real ``3dshapes.h5`` and the
procedural files written by :mod:`training.data.procedural` read the same way.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

SPLIT_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


class DatasetError(ValueError):
    """A data file is missing, corrupt or not in the expected format."""


@dataclass
class H5Images:
    """Random access to an HDF5 image file. Opened lazily so it can be handed to worker processes."""

    path: Path
    images_key: str = "images"
    labels_key: str = "labels"

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
                self.factor_names = tuple(str(s) for s in f.attrs.get("factor_names", ()))
        except OSError as e:
            raise DatasetError(f"{self.path} is not a readable HDF5 file: {e}") from e
        if len(self.shape) != 4 or self.shape[-1] != 3 or dtype != np.uint8:
            raise DatasetError(f"{self.path}: '{self.images_key}' must be uint8 [N, H, W, 3], "
                               f"got {dtype} {list(self.shape)}")
        self._file: h5py.File | None = None

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def image_size(self) -> int:
        return self.shape[1]

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
        if not self.has_labels:
            raise DatasetError(f"{self.path} has no '{self.labels_key}' dataset")
        return self._handle()[self.labels_key][indices]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"] = None
        return state


def split_indices(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic 70/10/20 train/val/test split of ``range(n)``; each split sorted."""
    order = np.random.default_rng(seed).permutation(n)
    n_train = int(round(n * SPLIT_FRACTIONS["train"]))
    n_val = int(round(n * SPLIT_FRACTIONS["val"]))
    parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    return {k: np.sort(v) for k, v in parts.items()}


def shuffled_batches(data: H5Images, indices: np.ndarray, batch_size: int, rng: np.random.Generator,
                     window: int = 4096) -> Iterator[np.ndarray]:
    """One epoch of shuffled uint8 batches over ``indices`` (sorted).

    The file is visited in contiguous windows in random order, and each window's rows are shuffled. A window is read
    as one slice (h5py's fancy indexing is far slower than a slice plus numpy selection), so memory is bounded by
    one window. The last partial batch is dropped.
    """
    if len(indices) < batch_size:
        raise DatasetError(f"{data.path}: only {len(indices)} images in this split, fewer than batch size {batch_size}")
    bounds = np.searchsorted(indices, np.arange(0, len(data) + window, window))
    carry = np.empty((0, *data.shape[1:]), np.uint8)
    for w in rng.permutation(len(bounds) - 1):
        rows = indices[bounds[w]:bounds[w + 1]]
        if len(rows) == 0:
            continue
        lo = w * window
        chosen = data.read(slice(lo, min(lo + window, len(data))))[rows - lo]
        images = np.concatenate([carry, chosen[rng.permutation(len(rows))]])
        full = len(images) // batch_size * batch_size
        for start in range(0, full, batch_size):
            yield images[start:start + batch_size]
        carry = images[full:]


def batches_in_order(data: H5Images, indices: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(indices, images) batches in file order, the last one partial: for evaluation and encoding."""
    for start in range(0, len(indices), batch_size):
        rows = indices[start:start + batch_size]
        yield rows, data.read(slice(rows[0], rows[-1] + 1))[rows - rows[0]]
