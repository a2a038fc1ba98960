"""Deterministic train/val/test splits of a reader, and batches over them."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from sae.core.datasets.base import DatasetError, ImageArray, ImageSource, RowIndices

SPLIT_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


def varying_factors(source: ImageSource) -> tuple[int, ...]:
    """Columns of ``source``'s factors that take more than one value (RFD's shape and size take one); the
    disentanglement metrics skip the others."""
    return tuple(k for k, size in enumerate(source.factor_sizes) if size > 1)


def split_indices(n: int, seed: int = 0) -> dict[str, RowIndices]:
    """Deterministic 70/10/20 train/val/test split of ``range(n)``; each split sorted."""
    order = np.random.default_rng(seed).permutation(n)
    n_train = int(round(n * SPLIT_FRACTIONS["train"]))
    n_val = int(round(n * SPLIT_FRACTIONS["val"]))
    parts = {"train": order[:n_train], "val": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}
    return {k: np.sort(v) for k, v in parts.items()}


def dataset_splits(source: ImageSource, seed: int = 0) -> dict[str, RowIndices]:
    """:func:`split_indices` over the whole file, restricted to ``source.rows``.

    An image keeps the split it has without ``exclude``, so leaving values out never moves an image between train
    and test; the kept splits are then only roughly 70/10/20 of the kept rows."""
    splits = split_indices(len(source), seed)
    rows = source.rows
    if len(rows) == len(source):
        return splits
    return {k: v[np.isin(v, rows, assume_unique=True)] for k, v in splits.items()}


def _read_rows(data: ImageSource, rows: RowIndices) -> ImageArray:
    """Images of sorted ``rows``: one slice then a selection where the reader prefers slices, else just the rows."""
    if getattr(data, "slice_reads", True):
        images: ImageArray = data.read(slice(int(rows[0]), int(rows[-1]) + 1))[rows - rows[0]]
        return images
    return data.read(rows)


def shuffled_batches(
    data: ImageSource,
    indices: RowIndices,
    batch_size: int,
    rng: np.random.Generator,
    block: int = 256,
    blocks_per_buffer: int = 64,
) -> Iterator[ImageArray]:
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
        chosen = sorted(blocks[first : first + blocks_per_buffer])
        images = np.concatenate([carry, *(_read_rows(data, indices[bounds[b] : bounds[b + 1]]) for b in chosen)])
        images = images[rng.permutation(len(images))]
        full = len(images) // batch_size * batch_size
        for start in range(0, full, batch_size):
            yield images[start : start + batch_size]
        carry = images[full:]


def batches_in_order(
    data: ImageSource, indices: RowIndices, batch_size: int
) -> Iterator[tuple[RowIndices, ImageArray]]:
    """(indices, images) batches in file order, the last one partial: for evaluation and encoding."""
    for start in range(0, len(indices), batch_size):
        rows = indices[start : start + batch_size]
        yield rows, _read_rows(data, rows)
