"""Factor grids of the datasets with a fixed factorial design (3D-Shapes, MPI3D), and the matching of stored label
values to factor indices: the one home of these facts for the readers, the procedural generator and the metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from sae.core.datasets.base import DatasetError


def _readonly(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    values = np.asarray(values, dtype=np.float64)
    values.setflags(write=False)
    return values


# 3D-Shapes (Burgess & Kim 2018): row-major over the factors, orientation fastest, 480,000 images.
SHAPES3D_FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
SHAPES3D_FACTOR_VALUES: tuple[npt.NDArray[np.float64], ...] = (
    _readonly(np.arange(10) / 10.0),  # floor_hue 0.0 … 0.9
    _readonly(np.arange(10) / 10.0),  # wall_hue
    _readonly(np.arange(10) / 10.0),  # object_hue
    _readonly(np.linspace(0.75, 1.25, 8)),  # scale
    _readonly(np.arange(4.0)),  # shape: cube, cylinder, sphere, capsule
    _readonly(np.linspace(-30.0, 30.0, 15)),  # orientation in degrees
)
SHAPES3D_FACTOR_SIZES = tuple(len(v) for v in SHAPES3D_FACTOR_VALUES)
SHAPES3D_SHAPE_NAMES = ("cube", "cylinder", "sphere", "capsule")
SHAPES3D_NUM_IMAGES = int(np.prod(SHAPES3D_FACTOR_SIZES))  # 480,000

# MPI3D (Gondal et al. 2019): row-major over the factors; the file holds no labels.
MPI3D_FACTOR_NAMES = (
    "object_color",
    "object_shape",
    "object_size",
    "camera_height",
    "background_color",
    "horizontal_axis",
    "vertical_axis",
)
MPI3D_FACTOR_SIZES = (6, 6, 2, 3, 3, 40, 40)
MPI3D_NUM_IMAGES = int(np.prod(MPI3D_FACTOR_SIZES))  # 1,036,800


def nearest_factor_indices(
    labels: npt.ArrayLike, grids: Sequence[npt.NDArray[np.floating[Any]]]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Label values [..., K] → (factor indices [..., K] int64, each the nearest value of its column's grid;
    the absolute distance [..., K] from each label to that value), so a reader can refuse labels off the grid."""
    labels = np.asarray(labels, dtype=np.float64)
    if labels.shape[-1:] != (len(grids),):
        raise DatasetError(f"labels must have {len(grids)} columns, got shape {labels.shape}")
    indices = np.empty(labels.shape, dtype=np.int64)
    distance = np.empty(labels.shape, dtype=np.float64)
    for k, grid in enumerate(grids):
        gaps = np.abs(labels[..., k, None] - grid)
        indices[..., k] = gaps.argmin(axis=-1)
        distance[..., k] = np.take_along_axis(gaps, indices[..., k, None], axis=-1)[..., 0]
    return indices, distance
