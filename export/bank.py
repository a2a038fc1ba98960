"""The bank of stored latents that hybrid sampling draws from (Leeb et al., 2023, section 3.2), in HDF5.

Besides the N latents it records where they came from (rows of the data file, the seed of the draw, sha256 of the
data file and of the checkpoint), the variable partition (SAE-k: k variables of D/k dimensions; unstructured models:
one variable per dimension, as in the paper), each dimension's minimum and maximum over the whole training split
(what traversals sweep), and for models with a prior (VAE family, WAE) its mean and standard deviation.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import cast

import numpy as np
import torch

from sae.core.atomic import atomic_write
from sae.core.bank_file import BankFile, BankFileError
from sae.core.datasets import ImageSource, batches_in_order
from sae.training.models.autoencoder import Autoencoder
from sae.training.models.prior import PriorSampler

DEFAULT_BANK_SIZE = 128
ENCODE_BATCH = 256  # images per forward pass when encoding the training split
PRIOR_CHECK_DRAWS = 8192


class BankError(BankFileError):
    pass


class Bank(BankFile):
    """The bank as ``sae export`` builds it: :class:`sae.core.bank_file.BankFile`, saved atomically and loaded with
    the package's error type."""

    def save(self, path: Path) -> None:
        with atomic_write(path) as tmp:
            self.write(tmp)

    @classmethod
    def load(cls, path: Path) -> Bank:
        try:
            return cast(Bank, cls.read(path))  # BankFile.read builds a cls
        except BankFileError as e:
            raise BankError(str(e)) from e


def variable_of_dim(variable_sizes: tuple[int, ...]) -> np.ndarray:
    return np.repeat(np.arange(len(variable_sizes)), variable_sizes).astype(np.int64)


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file; of a folder dataset (CelebA JPEGs), over each file's relative name and bytes in order."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as f:
            while block := f.read(chunk):
                digest.update(block)
    return digest.hexdigest()


@torch.no_grad()
def encode_rows(model: Autoencoder, data: ImageSource, rows: np.ndarray, batch_size: int = ENCODE_BATCH) -> np.ndarray:
    """Latents [len(rows), D] of the given (sorted) rows, encoded in batches."""
    model.eval()
    parts = [
        model.encode(model.preprocess(torch.from_numpy(images))).float().numpy()
        for _, images in batches_in_order(data, rows, batch_size)
    ]
    return np.concatenate(parts).astype(np.float32)


@torch.no_grad()
def prior_moments(model: Autoencoder) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean and std of the model's prior, or None for models without one.

    The prior models of sae.training.models declare N(0, I); ``prior_sample`` is checked against that (8192 draws: the
    standard error of a mean is ~0.011) and exact zeros/ones are stored. A model whose draws disagree gets their
    empirical moments instead, so the bank never claims a prior the model does not have.
    """
    if not model.has_prior:
        return None
    sampler = cast(PriorSampler, model)  # has_prior: the kind defines prior_sample (the registry checks it)
    draws = sampler.prior_sample(PRIOR_CHECK_DRAWS, generator=torch.Generator().manual_seed(0)).double()
    mean, std = draws.mean(0).numpy(), draws.std(0).numpy()
    if np.all(np.abs(mean) < 0.05) and np.all(np.abs(std - 1) < 0.05):
        return np.zeros_like(mean, np.float32), np.ones_like(std, np.float32)
    return mean.astype(np.float32), std.astype(np.float32)


def build_bank(
    model: Autoencoder,
    model_name: str,
    data: ImageSource,
    train_indices: np.ndarray,
    checkpoint_path: Path,
    checkpoint_step: int,
    size: int = DEFAULT_BANK_SIZE,
    seed: int = 0,
    range_images: int | None = None,
) -> Bank:
    """Keep ``size`` training latents drawn uniformly without replacement with ``seed``, and each dimension's range
    over the whole training split, or over ``range_images`` training images drawn with the same seed (always
    including the bank's own rows; ``num_train_images`` records the count)."""
    if not 1 <= size <= len(train_indices):
        raise BankError(f"bank size {size} must be in 1..{len(train_indices)} (the training images)")
    if range_images is not None and range_images < size:
        raise BankError(f"range_images {range_images} must be at least the bank size {size}")
    train_indices = np.sort(np.asarray(train_indices))
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(train_indices, size=size, replace=False))
    range_rows = train_indices
    if range_images is not None and range_images < len(train_indices):
        others = np.setdiff1d(train_indices, rows, assume_unique=True)
        range_rows = np.sort(np.concatenate([rows, rng.choice(others, size=range_images - size, replace=False)]))
    all_latents = encode_rows(model, data, range_rows)
    latents = all_latents[np.searchsorted(range_rows, rows)]
    prior = prior_moments(model)
    return Bank(
        latents=latents,
        variable_of_dim=variable_of_dim(model.cfg.variable_sizes),
        source_indices=rows.astype(np.int64),
        seed=seed,
        model_name=model_name,
        dim_min=all_latents.min(axis=0),
        dim_max=all_latents.max(axis=0),
        data_sha256=file_sha256(data.path),
        checkpoint_sha256=file_sha256(checkpoint_path),
        checkpoint_step=checkpoint_step,
        num_train_images=len(range_rows),
        prior_mean=None if prior is None else prior[0],
        prior_std=None if prior is None else prior[1],
    )
