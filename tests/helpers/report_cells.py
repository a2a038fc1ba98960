"""The cell factory of the report tests: cell files whose default values follow the paper (every claim agrees), a
grid of them in a folder, and readers of the REPORT.md that `sae experiment` builds from them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sae.experiment import figures
from sae.experiment.model_groups import MODEL_ORDER, WITH_PRIOR
from sae.experiment.report import build_report

FACTORS = ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"]
SEEDS = (0, 1, 2)
COMMAND = "sae experiment cpu-shapes3d --out out/exp"
# Values in the paper's direction: SAEs reconstruct best, unregularised beat regularised, SAE-12's hybrid FID is the
# lowest, hybrid beats prior, SAE-12 and VLAE-12 disentangle best.
MSE = {
    "sae12": 0.010,
    "sae3": 0.011,
    "adaae12": 0.012,
    "ae": 0.013,
    "vae": 0.020,
    "betavae": 0.022,
    "betatcvae": 0.024,
    "factorvae": 0.021,
    "wae": 0.019,
    "vlae12": 0.018,
}
FID_HYBRID = {
    "sae12": 30.0,
    "sae3": 40.0,
    "adaae12": 55.0,
    "ae": 60.0,
    "vae": 62.0,
    "betavae": 64.0,
    "betatcvae": 66.0,
    "factorvae": 68.0,
    "wae": 70.0,
    "vlae12": 50.0,
}
DISENTANGLE = {
    "sae12": 0.80,
    "vlae12": 0.75,
    "sae3": 0.50,
    "adaae12": 0.30,
    "ae": 0.20,
    "vae": 0.35,
    "betavae": 0.45,
    "betatcvae": 0.40,
    "factorvae": 0.42,
    "wae": 0.25,
}
HELDOUT = {
    "sae12": {"none": 50.0, "encoder": 40.0, "decoder": 20.0, "both": 19.0},
    "vae": {"none": 60.0, "encoder": 45.0, "decoder": 30.0, "both": 28.0},
    "betavae": {"none": 62.0, "encoder": 47.0, "decoder": 32.0, "both": 30.0},
    "vlae12": {"none": 58.0, "encoder": 44.0, "decoder": 28.0, "both": 27.0},
}
# The in-distribution control: the same fine-tuned models on values seen in pretraining, all modes close together.
SEEN = {
    "sae12": {"none": 10.0, "encoder": 9.8, "decoder": 9.5, "both": 9.4},
    "vae": {"none": 12.0, "encoder": 11.8, "decoder": 11.5, "both": 11.4},
    "betavae": {"none": 12.5, "encoder": 12.3, "decoder": 12.0, "both": 11.9},
    "vlae12": {"none": 11.0, "encoder": 10.8, "decoder": 10.5, "both": 10.4},
}
# A gate line that passes: BCE below floor + (oracle - floor) / 2 = 4294.5, every factor at 0.95.
GATE = {
    "bce": 4200.0,
    "mse": 0.004,
    "oracle_bce": 4459.0,
    "oracle_mse": 0.0093,
    "floor_bce": 4130.0,
    "accuracy": {f: 0.95 for f in ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")},
}
ARMS = {"no_ball": {"shape": [2]}, "extreme_orientations": {"orientation": [0, 1, 13, 14]}}
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?"
SPREAD_CELL = re.compile(rf"^{NUMBER} ± {NUMBER}$")
CLAIM_LINE = re.compile(r"^- \*\*(C\d)\*\* .*\*\*Verdict: (.+)\*\*$")
VERDICT = re.compile(r"^(agrees|disagrees|inconclusive \(.+\)|not testable \(.+\))$")


@pytest.fixture
def draw_charts():
    """Asked for by the tests that draw the report's charts (see ``no_charts``)."""


@pytest.fixture(autouse=True)
def no_charts(request, monkeypatch):
    """Charts cost a second or more per report on a busy CPU; only the tests that ask for ``draw_charts`` draw them."""
    if "draw_charts" not in request.fixturenames:
        monkeypatch.setattr(figures, "charts_available", lambda: False)


def _per_seed(value, seed: int) -> float:
    """A list gives one value per seed; a number gets a 1% jitter per seed (so std is small but not 0)."""
    if isinstance(value, list):
        return float(value[seed])
    return float(value) * (1 + 0.01 * (seed - 1))


def sae12_importance(shape_dim: int = 0, orientation_dim: int = 1, unused: float = 0.001) -> list[list[float]]:
    """12 dims x 6 factors: shape and orientation in the given dims, hues and scale next, the last six nearly unused."""
    rows = [[unused] * 6 for _ in range(12)]
    rows[shape_dim][4] = 1.0
    rows[orientation_dim][5] = 1.0
    free = [d for d in range(12) if d not in (shape_dim, orientation_dim)]
    for factor, dim in zip((0, 1, 2, 3), free):
        rows[dim][factor] = 0.8
    return rows


def make_cell(
    model: str,
    seed: int,
    *,
    metrics: dict | None = None,
    importance: list | None = None,
    arm: str | None = None,
    heldout: dict | None = None,
    seen: dict | None | bool = None,
    gate: dict | None | bool = None,
) -> dict:
    """One cell file's content (schema 1); ``arm`` makes an extrapolation cell.

    ``seen`` replaces the in-distribution control's values (``False``: the cell has none); ``gate`` replaces the gate
    numbers of a main cell (``False``: the cell carries none)."""
    has_prior = model in WITH_PRIOR
    cell_id = f"{model}-s{seed}" + (f"-{arm}" if arm else "")
    cell = {
        "schema": 1,
        "grid": "cpu-shapes3d",
        "cell": cell_id,
        "kind": "extrapolation" if arm else "main",
        "model": model,
        "family": re.sub(r"\d+$", "", model),
        "has_prior": has_prior,
        "seed": seed,
        "dataset": {"kind": "shapes3d", "label": "procedural", "path": "data/shapes3d.h5", "images": 60000},
        "config": {"model": {"kind": model}},
        "steps": 1500,
        "batch_size": 64,
        "commit": "abc1234" if seed < 2 else "def5678",
        "machine": "Test CPU, 2 cores",
        "torch": "2.13.0",
        "seconds": {"train": 100.0, "export": 10.0, "eval": 20.0},
        "draw_mode": "per_variable",
        "metrics": None,
        "dci_importance": None,
        "factor_names": FACTORS,
        "variable_of_dim": None,
        "extrapolation": None,
        "thumbnails": {
            "traversals": f"thumbs/{cell_id}_traversals.png",
            "hybrid_samples": f"thumbs/{cell_id}_hybrid.png",
            "prior_samples": f"thumbs/{cell_id}_prior.png" if has_prior else None,
            "reconstructions": f"thumbs/{cell_id}_recon.png",
        },
    }
    if arm:
        values = {**HELDOUT.get(model, HELDOUT["vae"]), **(heldout or {})}
        cell["extrapolation"] = {
            "arm": arm,
            "excluded": ARMS[arm],
            "pretrain_fraction": 0.8,
            "heldout_mse_x1000": {k: _per_seed(v, seed) for k, v in values.items()},
            "heldout_images": 512,
        }
        if seen is not False:
            control = {**SEEN.get(model, SEEN["vae"]), **(seen if isinstance(seen, dict) else {})}
            cell["extrapolation"]["seen_mse_x1000"] = {k: _per_seed(v, seed) for k, v in control.items()}
        return cell
    values = {
        "bce": MSE[model] * 10000,
        "mse": MSE[model],
        "fid_reconstruction": FID_HYBRID[model] / 2,
        "fid_hybrid": FID_HYBRID[model],
        "fid_prior": FID_HYBRID[model] * 1.5 if has_prior else None,
        "dci_disentanglement": DISENTANGLE[model],
        "dci_completeness": 0.5,
        "dci_informativeness": 0.6,
        "mig": DISENTANGLE[model] / 2,
        "irs": DISENTANGLE[model] * 0.9,
        "sap": 0.1,
        "modularity": 0.9,
        "explicitness": 0.95,
        **(metrics or {}),
    }
    cell["metrics"] = {k: (None if v is None else _per_seed(v, seed)) for k, v in values.items()}
    cell["metrics"].update({"fid_images": 512, "dci_regressor": "gbt"})
    if gate is not False:
        numbers = {**GATE, **(gate if isinstance(gate, dict) else {})}
        cell["gate"] = {
            k: (v if k == "accuracy" else _per_seed(v, seed) if isinstance(v, list) else v) for k, v in numbers.items()
        }
    if model == "sae12":
        cell["dci_importance"] = (
            importance[seed]
            if importance and isinstance(importance[0][0], list)
            else (importance or sae12_importance())
        )
        cell["variable_of_dim"] = list(range(12))
    return cell


def write_grid(
    out_dir: Path,
    *,
    models=MODEL_ORDER,
    seeds=SEEDS,
    metrics: dict | None = None,
    importance: list | None = None,
    heldout: dict | None = None,
    arms=tuple(ARMS),
    arm_models=tuple(HELDOUT),
    plan: list[str] | None = None,
    seen: dict | bool | None = None,
    gate: dict | bool | None = None,
    traversal_response: dict | None = None,
    dataset_label: str = "procedural",
) -> Path:
    """Write a grid's cells and placeholder thumbnails.

    ``metrics`` and ``gate`` map a model, ``heldout`` and ``seen`` an (arm, model) pair, to values that replace the
    defaults; ``seen=False`` / ``gate=False`` leave the control / the gate numbers out of every cell.
    ``traversal_response`` maps a model to one list per seed.
    """
    cells_dir = out_dir / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    cells = [
        make_cell(
            m,
            s,
            metrics=(metrics or {}).get(m),
            importance=importance,
            gate=gate if isinstance(gate, bool) else (gate or {}).get(m),
        )
        for m in models
        for s in seeds
    ]
    cells += [
        make_cell(
            m,
            s,
            arm=a,
            heldout=(heldout or {}).get((a, m)),
            seen=seen if isinstance(seen, bool) else (seen or {}).get((a, m)),
        )
        for a in arms
        for m in arm_models
        for s in seeds
    ]
    for cell in cells:
        cell["dataset"]["label"] = dataset_label
        if cell["kind"] == "main" and cell["model"] in (traversal_response or {}):
            cell["traversal_response"] = traversal_response[cell["model"]][cell["seed"]]
    for cell in cells:
        (cells_dir / f"{cell['cell']}.json").write_text(json.dumps(cell))
    thumbs = out_dir / "thumbs"
    thumbs.mkdir(exist_ok=True)
    for cell in cells:
        for path in cell["thumbnails"].values():
            if path:
                (out_dir / path).write_bytes(b"\x89PNG\r\n\x1a\n")
    if plan is not None:
        (out_dir / "grid.json").write_text(
            json.dumps(
                {"name": "cpu-shapes3d", "doc": "A CPU-sized grid.", "cells": plan, "sizing": "1500 steps, batch 64"}
            )
        )
    return out_dir


def verdicts(report: Path) -> dict[str, str]:
    found = {}
    for line in report.read_text().splitlines():
        match = CLAIM_LINE.match(line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def tables(report: Path, section: str) -> list[tuple[list[str], list[list[str]]]]:
    """The tables (header, rows) under the level-2 heading that starts with ``section``."""
    text = report.read_text()
    body = text.split(f"\n## {section}", 1)[1].split("\n## ", 1)[0]
    found, current = [], None
    for line in body.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if current is None:
                current = (cells, [])
                found.append(current)
            elif not all(set(c) <= {"-", " "} for c in cells):
                current[1].append(cells)
        else:
            current = None
    return found


def build(tmp_path: Path, **grid) -> tuple[Path, dict]:
    write_grid(tmp_path, **grid)
    report = build_report(tmp_path, command=COMMAND, wall_seconds=1234.5)
    return report, json.loads((tmp_path / "results.json").read_text())


# --- the comparison rule -------------------------------------------------------------------------------------------
