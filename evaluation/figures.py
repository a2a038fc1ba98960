"""The report's figures, drawn through the server: latent traversals and hybridised chunks (uint8 grids).

* Traversals (the paper's figure 4): one row per latent dimension, rows grouped by variable, each sweeping that
  dimension from its minimum to its maximum while the rest of the start latent stays fixed. The served ``traverse``
  model is used when the server has it (range: the training set's, stored in the bank file); otherwise the latents are
  built here, over the range of a local copy of the bank file when one is given, else of the encoded test images,
  and sent to ``decode``.
* Hybridised chunks (the paper's figure 6a): a quarter of the variables re-drawn at a time while the rest stay fixed.
  With a ``hybrid_sample`` that takes BASE/MASK the server re-draws from its bank; otherwise the variables are mixed
  here from a pool of latents (the local bank's, else encoded test images') and decoded.

Each function returns the grid and a sentence saying which path drew it, for the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sae.clients.triton_client import SAEClient
from sae.core import wire
from sae.core.bank_file import BankFile, BankFileError
from sae.core.draw import to_uint8
from sae.core.errors import ModelNotServedError
from sae.core.png import image_grid
from sae.evaluation.eval_config import EvaluationError

__all__ = [
    "LocalBank",
    "read_bank",
    "variable_of_dim",
    "traversal_latents",
    "chunk_masks",
    "mix_variables",
    "grouped_grid",
    "serves",
    "traversal_figure",
    "hybridised_chunks_figure",
]

GROUP_GAP = 6  # extra white pixels between groups of rows


LocalBank = BankFile  # what the local fallbacks use of an exported bank.h5: latents, dim_min, dim_max


def read_bank(path: Path) -> LocalBank:
    """The bank file at ``path`` (``--bank``); the BankFileError names the option and the file."""
    try:
        return BankFile.read(Path(path))
    except BankFileError as e:
        raise BankFileError(f"--bank {e}") from e


def variable_of_dim(latent_dim: int, num_variables: int) -> np.ndarray:
    """Which variable each latent dimension belongs to (equal-sized consecutive chunks, as the SAE's); a served
    latent that does not split into the served variables is an EvaluationError (the served models disagree)."""
    if num_variables < 1 or latent_dim % num_variables:
        raise EvaluationError(f"latent dim {latent_dim} does not split into {num_variables} equal variables")
    return np.repeat(np.arange(num_variables), latent_dim // num_variables)


def traversal_latents(start: np.ndarray, dimension: int, low: float, high: float, steps: int) -> np.ndarray:
    """``steps`` copies of ``start`` [D] whose ``dimension`` goes linearly from ``low`` to ``high``."""
    latents = np.repeat(np.asarray(start, np.float32)[None], steps, axis=0)
    latents[:, dimension] = np.linspace(low, high, steps, dtype=np.float32)
    return latents


def chunk_masks(num_variables: int, parts: int = 4) -> list[np.ndarray]:
    """Boolean masks [k], each true on one of ``parts`` consecutive chunks of the variables (empty chunks dropped)."""
    masks = []
    for chunk in np.array_split(np.arange(num_variables), min(parts, num_variables)):
        mask = np.zeros(num_variables, bool)
        mask[chunk] = True
        masks.append(mask)
    return masks


def mix_variables(
    base: np.ndarray, mask: np.ndarray, var_of_dim: np.ndarray, pool: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` latents equal to ``base`` [D] except the masked variables, each taken whole from a random pool row."""
    latents = np.repeat(np.asarray(base, np.float32)[None], n, axis=0)
    for variable in np.flatnonzero(mask):
        dims = var_of_dim == variable
        latents[:, dims] = pool[rng.integers(0, len(pool), size=n)][:, dims]
    return latents


def grouped_grid(groups: Sequence[np.ndarray], ncols: int, gap: int = GROUP_GAP) -> np.ndarray:
    """Grids of uint8 images [n_i, H, W, 3] (``ncols`` per row), stacked top to bottom with a white gap between."""
    grids = [image_grid(images, ncols=ncols) for images in groups]
    width = max(g.shape[1] for g in grids)
    out = []
    for i, grid in enumerate(grids):
        if grid.shape[1] < width:
            grid = np.pad(grid, ((0, 0), (0, width - grid.shape[1]), (0, 0)), constant_values=255)
        out.append(grid)
        if i < len(grids) - 1:
            out.append(np.full((gap, width, grid.shape[2]), 255, np.uint8))
    return np.concatenate(out)


def serves(client: SAEClient, model: str, input_name: str | None = None) -> bool:
    """Whether the server has ``model`` (of the client's set) and, if given, that it takes ``input_name``."""
    try:
        info = client.model_info(model)
    except ModelNotServedError:
        return False
    return input_name is None or input_name in info.inputs


def traversal_figure(
    client: SAEClient,
    start: np.ndarray,
    var_of_dim: np.ndarray,
    steps: int,
    low: np.ndarray,
    high: np.ndarray,
    range_source: str,
) -> tuple[np.ndarray, str]:
    """Rows of ``steps`` images per dimension, grouped by variable.

    ``low``/``high`` [D]: the range the local fallback sweeps, which ``range_source`` names for the report."""
    served = serves(client, wire.TRAVERSE)
    rows = []
    for dimension in range(len(var_of_dim)):
        if served:
            rows.append(client.traverse(start, dimension, steps).images)
        else:
            rows.append(client.decode(traversal_latents(start, dimension, low[dimension], high[dimension], steps)))
    groups = [
        to_uint8(np.concatenate([rows[d] for d in np.flatnonzero(var_of_dim == v)])) for v in np.unique(var_of_dim)
    ]
    source = (
        "served `traverse` model (range: the training set's, from the bank file)"
        if served
        else f"local: latents swept over {range_source}, decoded by the served `decode`"
    )
    return grouped_grid(groups, ncols=steps), source


def hybridised_chunks_figure(
    client: SAEClient,
    bases: np.ndarray,
    var_of_dim: np.ndarray,
    redraws: int,
    seed: int,
    pool: np.ndarray,
    pool_source: str,
    parts: int = 4,
) -> tuple[np.ndarray, str]:
    """Per base latent, one row per chunk of variables: decode(base), then ``redraws`` re-draws of that chunk.

    ``pool`` [M, D]: the latents the local fallback draws variables from, which ``pool_source`` names."""
    num_variables = int(var_of_dim.max()) + 1
    served = serves(client, wire.HYBRID_SAMPLE, wire.MASK)
    rng = np.random.default_rng(seed)
    groups = []
    for b, base in enumerate(bases):
        kept = client.decode(base[None])
        rows = []
        for q, mask in enumerate(chunk_masks(num_variables, parts)):
            if served:
                images = client.sample(redraws, seed=seed + b * parts + q, base=base, mask=mask).images
            else:
                images = client.decode(mix_variables(base, mask, var_of_dim, pool, redraws, rng))
            rows.append(np.concatenate([kept, images]))
        groups.append(to_uint8(np.concatenate(rows)))
    source = (
        "served `hybrid_sample` with BASE/MASK (re-drawn from the server's bank)"
        if served
        else f"local: masked variables taken from random {pool_source}, decoded by the served `decode`"
    )
    return grouped_grid(groups, ncols=redraws + 1), source
