"""The cell result file (``OUT/cells/<cell>.json``): the contract between the runner and the report builder.

Schema 1; keys that do not apply to a cell are null and every number is a plain float or int. Values read from
``eval.json`` are read defensively: a missing or non-numeric value becomes null rather than a made-up number.
"""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path
from typing import Any

from sae.core import version as clients_version
from sae.experiment.grid_spec import CellSpec
from sae.training.config import ExperimentConfig

SCHEMA = 1
METRIC_KEYS = (
    "bce",
    "mse",
    "fid_reconstruction",
    "fid_hybrid",
    "fid_prior",
    "fid_images",
    "dci_disentanglement",
    "dci_completeness",
    "dci_informativeness",
    "dci_regressor",
    "mig",
    "irs",
    "sap",
    "modularity",
    "explicitness",
)


def number(value: Any) -> float | None:
    """A finite plain float, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _get(tree: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(key)
    return tree


def git_commit() -> str:
    """The full commit of this checkout (``-dirty`` with uncommitted changes), or "unknown"."""
    return clients_version.git_commit(short=False) or "unknown"


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores"


def variable_of_dim(cfg: ExperimentConfig) -> list[int]:
    return [v for v, size in enumerate(cfg.model.variable_sizes) for _ in range(size)]


def draw_mode(eval_result: dict[str, Any]) -> str:
    mode = _get(eval_result, "sampling", "draw_mode")
    return mode if isinstance(mode, str) and mode else "unknown"


def main_metrics(eval_result: dict[str, Any]) -> tuple[dict[str, Any], list[list[float]] | None]:
    """The cell's metrics and DCI importance matrix from ``eval.json``."""
    rec = eval_result.get("reconstruction") or {}
    fid = _get(eval_result, "distances", "FID") or {}
    dis = eval_result.get("disentanglement") or {}
    summary = dis.get("summary") or {}
    regressor = summary.get("dci_regressor")
    metrics = {
        "bce": number(rec.get("bce_per_image")),
        "mse": number(rec.get("mse_per_pixel")),
        "fid_reconstruction": number(fid.get("reconstructions")),
        "fid_hybrid": number(fid.get("hybrid_samples")),
        "fid_prior": number(fid.get("prior_samples")),
        "fid_images": int(fid["images"]) if number(fid.get("images")) is not None else None,
        "dci_disentanglement": number(summary.get("dci_disentanglement")),
        "dci_completeness": number(summary.get("dci_completeness")),
        "dci_informativeness": number(summary.get("dci_informativeness_test")),
        "dci_regressor": regressor if isinstance(regressor, str) else None,
        "mig": number(summary.get("mig")),
        "irs": number(summary.get("irs")),
        "sap": number(summary.get("sap")),
        "modularity": number(summary.get("modularity")),
        "explicitness": number(summary.get("explicitness_test")),
    }
    dci = dis.get("dci_gbt") if regressor == "gbt" else dis.get("dci_lasso")
    matrix = (dci or {}).get("importance_matrix")
    importance = [[float(x) for x in row] for row in matrix] if isinstance(matrix, list) and matrix else None
    return metrics, importance


def cell_record(
    cell: CellSpec,
    cfg: ExperimentConfig,
    *,
    dataset: dict[str, Any],
    seconds: dict[str, float],
    factor_names: list[str],
    eval_result: dict[str, Any] | None = None,
    extrapolation: dict[str, Any] | None = None,
    thumbnails: dict[str, str | None],
) -> dict[str, Any]:
    import torch

    metrics, importance = main_metrics(eval_result) if eval_result is not None else (None, None)
    return {
        "schema": SCHEMA,
        "grid": cell.grid.name,
        "cell": cell.cell_id,
        "kind": cell.kind,
        "model": cell.model,
        "family": cfg.model.kind,
        "has_prior": bool(cfg.model.has_prior),
        "seed": cell.seed,
        "dataset": dataset,
        "config": cfg.to_dict(),
        "steps": cell.steps,
        "batch_size": cfg.train.batch_size,
        "commit": git_commit(),
        "machine": machine(),
        "torch": torch.__version__.split("+")[0],
        "seconds": {k: round(float(v), 3) for k, v in seconds.items()},
        "draw_mode": draw_mode(eval_result) if eval_result is not None else None,
        "metrics": metrics,
        "dci_importance": importance,
        "factor_names": list(factor_names),
        "variable_of_dim": variable_of_dim(cfg),
        "extrapolation": extrapolation,
        "thumbnails": {
            key: thumbnails.get(key) for key in ("traversals", "hybrid_samples", "prior_samples", "reconstructions")
        },
    }
