"""Where `sae experiment` keeps what it makes: the runner's options and the folders and marker files of each cell."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sae.experiment.grid_spec import CellSpec


@dataclass(frozen=True)
class RunnerOptions:
    out: Path
    work: Path | None = None  # default OUT/work
    data: Path | None = None  # default: the grid's dataset path, else procedural data rendered into WORK
    cells: str | None = None
    shard: str | None = None
    device: str | None = None
    command: str = "sae experiment"

    @property
    def work_dir(self) -> Path:
        return Path(self.work) if self.work is not None else Path(self.out) / "work"


@dataclass(frozen=True)
class Layout:
    out: Path
    work: Path

    @property
    def repository(self) -> Path:
        return self.work / "model_repository"

    def cell_file(self, cell: CellSpec) -> Path:
        return self.out / "cells" / f"{cell.cell_id}.json"

    def run_dir(self, cell: CellSpec, part: str | None = None) -> Path:
        root = self.work / "runs" / cell.cell_id
        return root if part is None else root / part

    def export_marker(self, export_name: str) -> Path:
        return self.work / "exports" / f"{export_name}.json"

    def eval_dir(self, cell: CellSpec) -> Path:
        return self.work / "eval" / cell.cell_id

    def thumb(self, cell: CellSpec, what: str) -> Path:
        return self.out / "thumbs" / f"{cell.cell_id}_{what}.png"
