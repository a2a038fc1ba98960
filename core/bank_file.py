"""The bank file ``bank.h5`` of an exported model: its datasets and attributes as one dataclass, read and written here.

The bank (Leeb et al., 2023, section 3.2) holds N latents encoded from training images, the variable partition,
each dimension's range over the training split and, for models with a prior, the prior's mean and std; ``sae
export`` computes it (``export/bank.py``) and writes it through :meth:`BankFile.write`; the sampler and traverse
models, ``sae validate``, the in-process benchmark and the evaluation figures read it through
:meth:`BankFile.read`. Self-contained (numpy and h5py only): ``sae export`` copies it beside the python-backend
``model.py`` as ``sae_bank_file.py``.

Layout: datasets ``latents`` float32 [N, D], ``variable_of_dim`` int64 [D], ``source_indices`` int64 [N],
``dim_min`` / ``dim_max`` float32 [D], optional ``prior_mean`` / ``prior_std`` float32 [D]; attributes ``seed``,
``model_name``, ``data_sha256``, ``checkpoint_sha256``, ``checkpoint_step``, ``num_train_images``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sae.core.errors import SAEError

BANK_FILE = "bank.h5"  # in the version folder of each model that reads the bank
ARRAYS = ("latents", "variable_of_dim", "source_indices", "dim_min", "dim_max")  # always present, in write order
PRIOR_ARRAYS = ("prior_mean", "prior_std")  # models with a prior only
ATTRIBUTES = ("seed", "model_name", "data_sha256", "checkpoint_sha256", "checkpoint_step", "num_train_images")
MAX_BANK_LATENTS = 1 << 20  # stored latents; the default bank holds 128
MAX_LATENT_DIM = 4096


class BankFileError(SAEError, ValueError):
    """A bank file that cannot be read as one; the message names the file and what is wrong."""


@dataclass
class BankFile:
    latents: npt.NDArray[np.float32]  # float32 [N, D]
    variable_of_dim: npt.NDArray[np.int64]  # int64 [D]: which variable each latent dimension belongs to
    source_indices: npt.NDArray[np.int64]  # int64 [N]: rows of the data file the latents were encoded from
    seed: int  # of the uniform draw of source_indices from the training split
    model_name: str  # the training config's name
    dim_min: npt.NDArray[np.float32]  # float32 [D]: each dimension's minimum over the training split
    dim_max: npt.NDArray[np.float32]  # float32 [D]
    data_sha256: str  # of the data file
    checkpoint_sha256: str  # of the checkpoint file
    checkpoint_step: int
    num_train_images: int  # how many training images dim_min/dim_max were taken over
    prior_mean: npt.NDArray[np.float32] | None = None  # float32 [D], models with a prior only
    prior_std: npt.NDArray[np.float32] | None = None

    @property
    def latent_dim(self) -> int:
        return int(self.latents.shape[1])

    @property
    def num_variables(self) -> int:
        return int(self.variable_of_dim.max()) + 1

    @property
    def prior(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None:
        """(prior_mean, prior_std), or None when the model has no prior."""
        return None if self.prior_mean is None or self.prior_std is None else (self.prior_mean, self.prior_std)

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the file at ``path`` (callers wanting an atomic replace write to a temporary path first)."""
        import h5py

        with h5py.File(path, "w") as f:
            for key in ARRAYS:
                f[key] = getattr(self, key)
            if self.prior_mean is not None:
                f["prior_mean"] = self.prior_mean
                f["prior_std"] = self.prior_std
            for key in ATTRIBUTES:
                f.attrs[key] = getattr(self, key)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> BankFile:
        """Read a bank, checking each array's declared shape and dtype before reading it (a file may declare
        sizes far beyond what it holds); BankFileError names the file and the array or attribute at fault."""
        import h5py

        try:
            with h5py.File(path, "r") as f:
                missing = sorted(set(ARRAYS) - set(f))
                if missing:
                    raise BankFileError(f"{path} lacks {missing}: re-export the model with `sae export`")
                check_layout(path, {k: (f[k].shape, f[k].dtype) for k in f if isinstance(f[k], h5py.Dataset)})
                arrays = {k: f[k][()] for k in f if k in ARRAYS or k in PRIOR_ARRAYS}
                attrs = dict(f.attrs)
        except OSError as e:
            raise BankFileError(f"{path} is not a readable bank file: {e}") from e
        missing = sorted(set(ATTRIBUTES) - set(attrs))
        if missing:
            raise BankFileError(f"{path} lacks the attributes {missing}: re-export the model with `sae export`")
        return cls(
            arrays["latents"],
            arrays["variable_of_dim"],
            arrays["source_indices"],
            int(attrs["seed"]),
            str(attrs["model_name"]),
            arrays["dim_min"],
            arrays["dim_max"],
            str(attrs["data_sha256"]),
            str(attrs["checkpoint_sha256"]),
            int(attrs["checkpoint_step"]),
            int(attrs["num_train_images"]),
            arrays.get("prior_mean"),
            arrays.get("prior_std"),
        )


def check_layout(path: str | os.PathLike[str], layout: dict[str, tuple[tuple[int, ...], np.dtype[Any]]]) -> None:
    """BankFileError unless the declared shapes and dtypes (``{dataset: (shape, dtype)}``) are those of a bank of
    sane size."""
    shape, dtype = layout["latents"]
    if (
        len(shape) != 2
        or not (1 <= shape[0] <= MAX_BANK_LATENTS and 1 <= shape[1] <= MAX_LATENT_DIM)
        or dtype.kind != "f"
    ):
        raise BankFileError(
            f"{path}: latents must be float [N, D] with N in 1..{MAX_BANK_LATENTS} and D in "
            f"1..{MAX_LATENT_DIM}, the file declares {dtype} {list(shape)}"
        )
    n, dim = shape
    wanted = {
        "variable_of_dim": ((dim,), "iu"),
        "source_indices": ((n,), "iu"),
        "dim_min": ((dim,), "f"),
        "dim_max": ((dim,), "f"),
        "prior_mean": ((dim,), "f"),
        "prior_std": ((dim,), "f"),
    }
    for key, (want_shape, kinds) in wanted.items():
        if key in layout and (layout[key][0] != want_shape or layout[key][1].kind not in kinds):
            raise BankFileError(
                f"{path}: {key} must be {'float' if kinds == 'f' else 'integer'} "
                f"{list(want_shape)} (latents are {list(shape)}), the file declares "
                f"{layout[key][1]} {list(layout[key][0])}"
            )
