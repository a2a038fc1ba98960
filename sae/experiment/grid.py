"""Experiment grids: the grid and cell dataclasses (:mod:`sae.experiment.grid_spec`), the named grids
(:mod:`sae.experiment.named_grids`) and TOML grid files (:mod:`sae.experiment.grid_toml`), each importable
from here; :func:`load_grid` picks a named grid or reads a file."""
from __future__ import annotations

from pathlib import Path

from sae.experiment.grid_spec import (FINETUNE_MODES, FREEZE_OF_MODE, TRAIN_FRACTION, TRAIN_SIZES, ArmSpec,
                                          CellSpec, CostModel, DatasetSpec, EvalSpec, GridError, GridSpec,
                                          config_name, expand, parse_shard, select, shard)
from sae.experiment.grid_toml import load_toml
from sae.experiment.named_grids import (ARM_MODELS, CELEBA_MODELS, CPU_SHAPES3D_DOC, EXTREME_ORIENTATIONS,
                                            GPU_COST, NAMED_GRIDS, NO_BALL, PAPER_MODELS, named_grids)

__all__ = ["FINETUNE_MODES", "FREEZE_OF_MODE", "TRAIN_FRACTION", "TRAIN_SIZES", "ArmSpec", "CellSpec", "CostModel",
           "DatasetSpec", "EvalSpec", "GridError", "GridSpec", "config_name", "expand", "parse_shard", "select",
           "shard", "load_toml", "ARM_MODELS", "CELEBA_MODELS", "CPU_SHAPES3D_DOC", "EXTREME_ORIENTATIONS",
           "GPU_COST", "NAMED_GRIDS", "NO_BALL", "PAPER_MODELS", "named_grids", "load_grid"]


def load_grid(spec: str) -> GridSpec:
    """A named grid or a TOML file."""
    grids = named_grids()
    if spec in grids:
        return grids[spec].validate()
    if spec == "paper-rfd":
        raise GridError("grid paper-rfd has no models: no named config ends in -rfd (training/config.py makes them "
                        "for every dataset kind of training/dataset_sizes.py, rfd among them)")
    path = Path(spec)
    if path.suffix == ".toml" or path.is_file():
        return load_toml(path)
    raise GridError(f"unknown grid {spec!r}: use one of {', '.join(NAMED_GRIDS)} or a .toml file")
