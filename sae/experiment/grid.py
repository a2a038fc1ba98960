"""Loading an experiment grid: :func:`load_grid` picks a named grid (:mod:`sae.experiment.named_grids`) or reads a
TOML grid file (:mod:`sae.experiment.grid_toml`); the grid and cell dataclasses are in
:mod:`sae.experiment.grid_spec`."""

from __future__ import annotations

from pathlib import Path

from sae.experiment.grid_spec import GridError, GridSpec
from sae.experiment.grid_toml import load_toml
from sae.experiment.named_grids import NAMED_GRIDS, named_grids

__all__ = ["load_grid"]


def load_grid(spec: str) -> GridSpec:
    """A named grid or a TOML file."""
    grids = named_grids()
    if spec in grids:
        return grids[spec].validate()
    if spec == "paper-rfd":
        raise GridError(
            "grid paper-rfd has no models: no named config ends in -rfd (training/config.py makes them "
            "for every dataset kind of training/dataset_sizes.py, rfd among them)"
        )
    path = Path(spec)
    if path.suffix == ".toml" or path.is_file():
        return load_toml(path)
    raise GridError(f"unknown grid {spec!r}: use one of {', '.join(NAMED_GRIDS)} or a .toml file")
