"""The bank of stored latents that hybrid sampling draws from (Leeb et al., 2023, section 3.2)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from clients.datasets import H5Images
from training.models.autoencoder import Autoencoder
from training.trainer import to_model_input

DEFAULT_BANK_SIZE = 128


@dataclass
class Bank:
    latents: np.ndarray  # float32 [N, D]
    variable_of_dim: np.ndarray  # int64 [D]: which variable each latent dimension belongs to
    source_indices: np.ndarray  # int64 [N]: rows of the data file the latents were encoded from
    seed: int
    model_name: str

    def save(self, path: Path) -> None:
        with h5py.File(path, "w") as f:
            f["latents"] = self.latents
            f["variable_of_dim"] = self.variable_of_dim
            f["source_indices"] = self.source_indices
            f.attrs["seed"] = self.seed
            f.attrs["model_name"] = self.model_name

    @classmethod
    def load(cls, path: Path) -> "Bank":
        with h5py.File(path, "r") as f:
            return cls(f["latents"][()], f["variable_of_dim"][()], f["source_indices"][()], int(f.attrs["seed"]),
                       str(f.attrs["model_name"]))


def variable_of_dim(variable_sizes: tuple[int, ...]) -> np.ndarray:
    return np.repeat(np.arange(len(variable_sizes)), variable_sizes).astype(np.int64)


@torch.no_grad()
def build_bank(model: Autoencoder, model_name: str, data: H5Images, train_indices: np.ndarray,
               size: int = DEFAULT_BANK_SIZE, seed: int = 0) -> Bank:
    """Encode ``size`` training images drawn uniformly (without replacement) with ``seed``."""
    if size > len(train_indices):
        raise ValueError(f"bank size {size} exceeds the {len(train_indices)} training images")
    rows = np.sort(np.random.default_rng(seed).choice(train_indices, size=size, replace=False))
    model.eval()
    latents = model.encode(to_model_input(data.read(rows), torch.device("cpu"))).numpy().astype(np.float32)
    return Bank(latents, variable_of_dim(model.cfg.variable_sizes), rows.astype(np.int64), seed, model_name)
