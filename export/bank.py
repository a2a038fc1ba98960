"""The bank of stored latents that hybrid sampling draws from (Leeb et al., 2023, section 3.2), in HDF5.

Besides the N latents it records where they came from (rows of the data file, the seed of the draw, sha256 of the
data file and of the checkpoint), the variable partition (SAE-k: k variables of D/k dimensions; unstructured models:
one variable per dimension, as in the paper), each dimension's minimum and maximum over the whole training split
(what traversals sweep), and for models with a prior (VAE family, WAE) its mean and standard deviation.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from clients.atomic import atomic_write
from clients.datasets import H5Images, batches_in_order
from clients.errors import SAEError
from training.models.autoencoder import Autoencoder
from training.trainer import to_model_input

DEFAULT_BANK_SIZE = 128
ENCODE_BATCH = 256  # images per forward pass when encoding the training split
PRIOR_CHECK_DRAWS = 8192


class BankError(SAEError, ValueError):
    pass


@dataclass
class Bank:
    latents: np.ndarray  # float32 [N, D]
    variable_of_dim: np.ndarray  # int64 [D]: which variable each latent dimension belongs to
    source_indices: np.ndarray  # int64 [N]: rows of the data file the latents were encoded from
    seed: int  # of the uniform draw of source_indices from the training split
    model_name: str  # the training config's name
    dim_min: np.ndarray  # float32 [D]: each dimension's minimum over the training split
    dim_max: np.ndarray  # float32 [D]
    data_sha256: str  # of the data file
    checkpoint_sha256: str  # of the checkpoint file
    checkpoint_step: int
    num_train_images: int  # how many training images dim_min/dim_max were taken over
    prior_mean: np.ndarray | None = None  # float32 [D], models with a prior only
    prior_std: np.ndarray | None = None

    @property
    def latent_dim(self) -> int:
        return int(self.latents.shape[1])

    @property
    def num_variables(self) -> int:
        return int(self.variable_of_dim.max()) + 1

    def save(self, path: Path) -> None:
        with atomic_write(path) as tmp, h5py.File(tmp, "w") as f:
            for key in ("latents", "variable_of_dim", "source_indices", "dim_min", "dim_max"):
                f[key] = getattr(self, key)
            if self.prior_mean is not None:
                f["prior_mean"] = self.prior_mean
                f["prior_std"] = self.prior_std
            for key in ("seed", "model_name", "data_sha256", "checkpoint_sha256", "checkpoint_step",
                        "num_train_images"):
                f.attrs[key] = getattr(self, key)

    @classmethod
    def load(cls, path: Path) -> "Bank":
        """Read a bank, checking each array's declared shape and dtype before reading it (a file may declare
        sizes far beyond what it holds)."""
        try:
            with h5py.File(path, "r") as f:
                missing = sorted(set(_BANK_ARRAYS) - set(f))
                if missing:
                    raise BankError(f"{path} lacks {missing}: re-export the model with `sae export`")
                _check_bank_layout(path, {k: (f[k].shape, f[k].dtype) for k in f if isinstance(f[k], h5py.Dataset)})
                arrays = {k: f[k][()] for k in f if k in _BANK_ARRAYS or k in ("prior_mean", "prior_std")}
                attrs = dict(f.attrs)
        except OSError as e:
            raise BankError(f"{path} is not a readable bank file: {e}") from e
        missing = sorted(set(_BANK_ATTRS) - set(attrs))
        if missing:
            raise BankError(f"{path} lacks the attributes {missing}: re-export the model with `sae export`")
        return cls(arrays["latents"], arrays["variable_of_dim"], arrays["source_indices"], int(attrs["seed"]),
                   str(attrs["model_name"]), arrays["dim_min"], arrays["dim_max"], str(attrs["data_sha256"]),
                   str(attrs["checkpoint_sha256"]), int(attrs["checkpoint_step"]), int(attrs["num_train_images"]),
                   arrays.get("prior_mean"), arrays.get("prior_std"))


_BANK_ARRAYS = ("latents", "variable_of_dim", "source_indices", "dim_min", "dim_max")
_BANK_ATTRS = ("seed", "model_name", "data_sha256", "checkpoint_sha256", "checkpoint_step", "num_train_images")
MAX_BANK_LATENTS = 1 << 20  # stored latents; the default bank holds 128
MAX_LATENT_DIM = 4096


def _check_bank_layout(path: Path, layout: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
    """BankError unless the declared shapes and dtypes are those of a bank of sane size."""
    shape, dtype = layout["latents"]
    if len(shape) != 2 or not (1 <= shape[0] <= MAX_BANK_LATENTS and 1 <= shape[1] <= MAX_LATENT_DIM) \
            or dtype.kind != "f":
        raise BankError(f"{path}: latents must be float [N, D] with N in 1..{MAX_BANK_LATENTS} and D in "
                        f"1..{MAX_LATENT_DIM}, the file declares {dtype} {list(shape)}")
    n, dim = shape
    wanted = {"variable_of_dim": ((dim,), "iu"), "source_indices": ((n,), "iu"), "dim_min": ((dim,), "f"),
              "dim_max": ((dim,), "f"), "prior_mean": ((dim,), "f"), "prior_std": ((dim,), "f")}
    for key, (want_shape, kinds) in wanted.items():
        if key in layout and (layout[key][0] != want_shape or layout[key][1].kind not in kinds):
            raise BankError(f"{path}: {key} must be {'float' if kinds == 'f' else 'integer'} {list(want_shape)} "
                            f"(latents are {list(shape)}), the file declares {layout[key][1]} {list(layout[key][0])}")


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
def encode_rows(model: Autoencoder, data: H5Images, rows: np.ndarray, batch_size: int = ENCODE_BATCH) -> np.ndarray:
    """Latents [len(rows), D] of the given (sorted) rows, encoded in batches."""
    model.eval()
    parts = [model.encode(to_model_input(images, torch.device("cpu"))).float().numpy()
             for _, images in batches_in_order(data, rows, batch_size)]
    return np.concatenate(parts).astype(np.float32)


@torch.no_grad()
def prior_moments(model: Autoencoder) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean and std of the model's prior, or None for models without one.

    The prior models of training.models declare N(0, I); ``prior_sample`` is checked against that (8192 draws: the
    standard error of a mean is ~0.011) and exact zeros/ones are stored. A model whose draws disagree gets their
    empirical moments instead, so the bank never claims a prior the model does not have.
    """
    if not model.has_prior:
        return None
    draws = model.prior_sample(PRIOR_CHECK_DRAWS, generator=torch.Generator().manual_seed(0)).double()
    mean, std = draws.mean(0).numpy(), draws.std(0).numpy()
    if np.all(np.abs(mean) < 0.05) and np.all(np.abs(std - 1) < 0.05):
        return np.zeros_like(mean, np.float32), np.ones_like(std, np.float32)
    return mean.astype(np.float32), std.astype(np.float32)


def build_bank(model: Autoencoder, model_name: str, data: H5Images, train_indices: np.ndarray,
               checkpoint_path: Path, checkpoint_step: int, size: int = DEFAULT_BANK_SIZE, seed: int = 0,
               range_images: int | None = None) -> Bank:
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
    return Bank(latents=latents, variable_of_dim=variable_of_dim(model.cfg.variable_sizes),
                source_indices=rows.astype(np.int64), seed=seed, model_name=model_name,
                dim_min=all_latents.min(axis=0), dim_max=all_latents.max(axis=0),
                data_sha256=file_sha256(data.path), checkpoint_sha256=file_sha256(checkpoint_path),
                checkpoint_step=checkpoint_step, num_train_images=len(range_rows),
                prior_mean=None if prior is None else prior[0], prior_std=None if prior is None else prior[1])
