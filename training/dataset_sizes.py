"""The dataset kinds a config can expect, and the size of each one's training split (70%,
``sae.core.datasets.split_indices``): what estimators over the whole training set, such as β-TCVAE's, take as N."""

from __future__ import annotations

DATASET_KINDS = ("shapes3d", "mpi3d", "celeba", "rfd")
SHAPES3D_TRAIN_SIZE = 336_000  # 70% of 480,000
MPI3D_TRAIN_SIZE = 725_760  # 70% of 1,036,800
CELEBA_TRAIN_SIZE = 141_819  # 70% of 202,599
RFD_TRAIN_SIZE = 725_760  # 70% of the 1,036,800 simulated images of RFD's `finger` variant
TRAIN_SIZES = {
    "shapes3d": SHAPES3D_TRAIN_SIZE,
    "mpi3d": MPI3D_TRAIN_SIZE,
    "celeba": CELEBA_TRAIN_SIZE,
    "rfd": RFD_TRAIN_SIZE,
}
