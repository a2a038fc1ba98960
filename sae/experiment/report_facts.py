"""The report's header facts and its chart list: plain records shared by the report builder and its markdown."""

from __future__ import annotations

from dataclasses import dataclass

from sae.experiment.cell_results import GridPlan

__all__ = ["RunFacts", "Chart"]


@dataclass(frozen=True)
class RunFacts:
    """What ran, where and for how long: the report's header."""

    command: str
    grid: str | None
    plan: GridPlan | None
    cell_ids: tuple[str, ...]
    missing_cells: tuple[str, ...]  # planned in grid.json, no cell file
    unplanned_cells: tuple[str, ...]  # a cell file grid.json does not plan
    commits: dict[str, int]  # sha -> cells
    machines: dict[str, int]
    torch_versions: dict[str, int]
    dataset_labels: dict[str, int]
    draw_modes: dict[str, int]
    fid_images: dict[int, int]
    dci_regressors: dict[str, int]
    seconds_by_stage: dict[str, float]  # summed over cells
    wall_seconds: float | None  # as the caller measured it

    @property
    def cell_seconds(self) -> float:
        return float(sum(self.seconds_by_stage.values()))


@dataclass(frozen=True)
class Chart:
    title: str
    path: str  # relative to the output folder
