"""Image datasets read from disk in windows, so memory stays bounded: 3D-Shapes, MPI3D, CelebA and RFD.

Torch-free (numpy and h5py; Pillow imported when a JPEG or PNG is decoded), so that the trainer and the client-side
batch jobs read data the same way. :func:`open_dataset` picks the reader from what the path is:

* ``.h5`` / ``.hdf5`` — :class:`H5Images`: ``images`` uint8 [N, H, W, 3] and optionally ``labels`` float64 [N, K]. The
  real ``3dshapes.h5`` and the procedural files of :mod:`sae.core.datasets.procedural` read the same way.
* ``.npz`` — :class:`NpzImages` (MPI3D toy / realistic / real): ``images`` uint8 [N, 64, 64, 3], memory-mapped from
  the zip; the seven factors follow from the row index (row-major), so the file holds no labels.
* a folder of JPEGs — :class:`JpegFolder` (aligned CelebA): each image is centre-cropped to a square and resized to
  128×128 when read; no factors.
* the Robot Finger Dataset's folder ``robot_finger_datasets/`` (its ``finger`` variant) or one of its variant
  folders ``finger/``, ``finger_heldout_colors/``, ``finger_real/`` — :mod:`sae.core.datasets.rfd`: 128×128 PNGs read
  by row
  from a tar (or, for ``finger_real``, a memory-mapped ``.npz``), nine factors from ``*_labels.npz``.

Every reader has the same interface (:class:`ImageSource`). ``exclude`` leaves out factor values, e.g.
``{"shape": [2]}`` drops every sphere from 3D-Shapes (the paper's extrapolation experiment). Its values are factor
*indices* (0 … size − 1, in the order of the factor's sorted label values; for 3D-Shapes' ``shape`` 0 cube,
1 cylinder, 2 sphere, 3 capsule), never label values, so the same spelling works for every dataset. The excluded images
stay in the file; ``rows`` lists the rows that remain. On a command line, :func:`parse_exclude` reads
``shape=2 floor_hue=0,1``.
"""

from __future__ import annotations

import os
from pathlib import Path

from sae.core.datasets.base import DatasetError, Exclude, ImageSource, parse_exclude
from sae.core.datasets.factors import (
    MPI3D_FACTOR_NAMES,
    MPI3D_FACTOR_SIZES,
    MPI3D_NUM_IMAGES,
    SHAPES3D_FACTOR_NAMES,
    SHAPES3D_FACTOR_SIZES,
    SHAPES3D_FACTOR_VALUES,
)
from sae.core.datasets.h5 import H5Images
from sae.core.datasets.jpeg import CELEBA_IMAGE_SIZE, JPEG_SUFFIXES, JpegFolder, centre_crop_resize
from sae.core.datasets.npz import NPZ_INFLATE_LIMIT, NpzImages, uncompress_npz
from sae.core.datasets.rfd import is_rfd_folder, open_rfd
from sae.core.datasets.splits import (
    SPLIT_FRACTIONS,
    batches_in_order,
    dataset_splits,
    shuffled_batches,
    split_indices,
    varying_factors,
)

__all__ = [
    "DatasetError",
    "Exclude",
    "ImageSource",
    "parse_exclude",
    "MPI3D_FACTOR_NAMES",
    "MPI3D_FACTOR_SIZES",
    "MPI3D_NUM_IMAGES",
    "SHAPES3D_FACTOR_NAMES",
    "SHAPES3D_FACTOR_SIZES",
    "SHAPES3D_FACTOR_VALUES",
    "H5Images",
    "CELEBA_IMAGE_SIZE",
    "JPEG_SUFFIXES",
    "JpegFolder",
    "centre_crop_resize",
    "NPZ_INFLATE_LIMIT",
    "NpzImages",
    "uncompress_npz",
    "is_rfd_folder",
    "open_rfd",
    "SPLIT_FRACTIONS",
    "batches_in_order",
    "dataset_splits",
    "shuffled_batches",
    "split_indices",
    "varying_factors",
    "open_dataset",
]


def open_dataset(
    path: str | os.PathLike[str], *, exclude: Exclude | None = None, celeba_size: int = CELEBA_IMAGE_SIZE
) -> ImageSource:
    """The reader for ``path``: ``.h5``/``.hdf5`` (3D-Shapes), ``.npz`` (MPI3D), an RFD folder (see
    :mod:`sae.core.datasets.rfd`; the dataset's own folder means its ``finger`` training variant) or a folder of JPEGs
    (CelebA).

    ``exclude`` maps factor names to factor *indices* to leave out of :attr:`rows` (e.g. ``{"shape": [2]}``)."""
    path = Path(path)
    if path.is_dir():
        if is_rfd_folder(path):
            return open_rfd(path, exclude=exclude)
        return JpegFolder(path, size=celeba_size, exclude=exclude)
    if not path.exists():
        raise DatasetError(
            f"data file {path} does not exist; make a procedural 3D-Shapes with "
            "`sae data shapes3d --out DIR`, or pass a 3dshapes.h5, an MPI3D .npz, a CelebA folder or an "
            "RFD folder"
        )
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        return H5Images(path, exclude=exclude)
    if suffix == ".npz":
        return NpzImages(path, exclude=exclude)
    raise DatasetError(
        f"{path}: unknown dataset format {suffix!r}; expected .h5/.hdf5 (3D-Shapes), .npz (MPI3D) "
        "or a folder of JPEGs (CelebA)"
    )
