"""The cells a run selects and the plan it shows before running them (``--dry-run``, ``OUT/grid.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sae.experiment.grid_spec import CellSpec, GridSpec, expand, select, shard
from sae.experiment.layout import RunnerOptions
from sae.experiment.progress import format_minutes


def selected_cells(grid: GridSpec, options: RunnerOptions) -> list[CellSpec]:
    return shard(select(expand(grid), options.cells), options.shard)


def dataset_images(data: Path | None) -> int | None:
    if data is None or not Path(data).exists():
        return None
    from sae.core.datasets import open_dataset

    source = open_dataset(data)
    try:
        return len(source)
    finally:
        source.close()


def plan_lines(grid: GridSpec, cells: list[CellSpec], data: Path | None = None) -> list[str]:
    """The dry-run plan: every selected cell's validated config, steps, batch size and estimated minutes."""
    images = dataset_images(data)
    lines = [
        f"grid {grid.name}: {len(cells)} cells selected of {len(expand(grid))}",
        "",
        grid.description.rstrip(),
        "",
        f"{'cell':<34} {'kind':<13} {'config':<22} {'steps':>16} {'batch':>5} {'est. min':>8}",
    ]
    for cell in cells:
        cfg = cell.experiment_config(dataset_images=images)  # validated
        if cell.arm is not None:
            cell.experiment_config(steps=cell.finetune_steps, dataset_images=images)
            steps = f"{cell.pretrain_steps}+{len(cell.finetune_modes)}x{cell.finetune_steps}"
        else:
            steps = str(cell.steps)
        lines.append(
            f"{cell.cell_id:<34} {cell.kind:<13} {cfg.name:<22} {steps:>16} {cfg.train.batch_size:>5} "
            f"{cell.estimated_minutes():>8.1f}"
        )
        m = cfg.model
        detail = (
            f"    {m.kind}, latent {m.latent_dim}, variables {len(m.variable_sizes)}, lr {cfg.train.lr:g}, "
            f"seed {cfg.train.seed}, dataset {cfg.dataset}"
        )
        if cell.arm is not None:
            detail += (
                f"; arm {cell.arm.name}: exclude {dict(cell.arm.exclude)}, pretrain {cell.pretrain_steps} "
                f"steps, then fine-tune {', '.join(cell.finetune_modes)} {cell.finetune_steps} steps each"
            )
        lines.append(detail)
    total = sum(c.estimated_minutes() for c in cells)
    lines += [
        "",
        f"estimated compute: {total:.0f} min ({format_minutes(total)}) for {len(cells)} cells, "
        f"{format_minutes(max((c.estimated_minutes() for c in cells), default=0))} for the longest cell",
    ]
    return lines


def grid_plan(grid: GridSpec) -> dict[str, Any]:
    """``OUT/grid.json``: what the report needs to name the cells a partial run has not finished yet."""
    cells = expand(grid)
    return {
        "name": grid.name,
        "doc": grid.description,
        "cells": [c.cell_id for c in cells],
        "sizes": {
            "steps": grid.steps,
            "batch_size": grid.batch_size,
            "seeds": len(grid.seeds),
            "estimated_minutes": round(sum(c.estimated_minutes() for c in cells), 1),
        },
    }
