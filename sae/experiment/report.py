"""The report of `sae experiment`: ``OUT/cells/*.json`` (and ``OUT/grid.json`` if present) -> ``OUT/REPORT.md``,
``OUT/results.json`` and charts under ``OUT/figures/``.

It reads only the cell files, so it works on any subset of a grid (completed over several runs on different
machines): absent cells are listed, and a claim whose inputs are absent is inconclusive and names them. Each model's
gate line comes from its cells (``report_gate``); on procedural data a claim about a model below the gate, or not
shown to pass it, is not testable.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from sae.experiment import figures
from sae.experiment.aggregate import ExperimentSummary, summarise
from sae.experiment.cell_results import FINE_TUNE_MODES, CellFileError, CellResult, GridPlan, read_cells, read_grid_plan
from sae.experiment.claims import evaluate_claims
from sae.experiment.comparisons import APPROX_RULE, COMBINING_RULE, COMPARISON_RULE, PAIRED_RULE, ClaimResult
from sae.experiment.model_groups import model_label
from sae.experiment.report_facts import Chart, RunFacts
from sae.experiment.report_gate import ModelGate, model_gates
from sae.experiment.report_markdown import render_report

__all__ = ["RunFacts", "Chart", "run_facts", "build_report", "REPORT_MD", "RESULTS_JSON", "FIGURES_DIR"]

REPORT_MD, RESULTS_JSON, FIGURES_DIR = "REPORT.md", "results.json", "figures"
RESULTS_SCHEMA = 1


def _count(values) -> dict:
    return dict(Counter(v for v in values if v is not None).most_common())


def run_facts(cells: list[CellResult], plan: GridPlan | None, *, command: str, wall_seconds: float | None) -> RunFacts:
    ids = tuple(c.cell for c in cells)
    planned = plan.planned_cells if plan and plan.planned_cells is not None else None
    stages: dict[str, float] = {}
    for c in cells:
        for stage, seconds in c.seconds.items():
            stages[stage] = stages.get(stage, 0.0) + seconds
    return RunFacts(
        command=command,
        grid=(plan.name if plan and plan.name else None) or (cells[0].grid if cells else None),
        plan=plan,
        cell_ids=ids,
        missing_cells=tuple(p for p in planned if p not in set(ids)) if planned is not None else (),
        unplanned_cells=tuple(i for i in ids if i not in set(planned)) if planned is not None else (),
        commits=_count(c.commit for c in cells),
        machines=_count(c.machine for c in cells),
        torch_versions=_count(c.torch for c in cells),
        dataset_labels=_count(c.dataset_label for c in cells),
        draw_modes=_count(c.draw_mode for c in cells if c.kind == "main"),
        fid_images=_count(c.fid_images for c in cells if c.kind == "main"),
        dci_regressors=_count(c.dci_regressor for c in cells if c.kind == "main"),
        seconds_by_stage=stages,
        wall_seconds=wall_seconds,
    )


def _charts(out_dir: Path, summary: ExperimentSummary) -> list[Chart]:
    """The bar charts of figures 2, 3/6b, 5 and 7 and the importance map of figure 4, for what the cells hold."""
    if not figures.charts_available():
        return []
    fig_dir = out_dir / FIGURES_DIR
    charts: list[Chart] = []
    models = list(summary.models)
    labels = [model_label(m) for m in models]

    def series(metric_titles: dict[str, str]) -> dict[str, dict[str, Any]]:
        return {
            title: {model_label(m): summary.models[m][key] for m in models if summary.models[m][key] is not None}
            for key, title in metric_titles.items()
        }

    def add(name: str, title: str, make) -> None:
        make(fig_dir / name)
        charts.append(Chart(title, f"{FIGURES_DIR}/{name}"))

    if models:
        add(
            "reconstruction_mse.png",
            "Reconstruction MSE per pixel (test split; figure 2)",
            lambda p: figures.grouped_bars(
                p, "Reconstruction MSE (lower is better)", "MSE per pixel", labels, series({"mse": "MSE"})
            ),
        )
        add(
            "fid.png",
            "FID of reconstructions, hybrid and prior samples (figures 3 and 6b)",
            lambda p: figures.grouped_bars(
                p,
                "FID (lower is better)",
                "FID",
                labels,
                series(
                    {
                        "fid_reconstruction": "reconstructions",
                        "fid_hybrid": "hybrid samples",
                        "fid_prior": "prior samples",
                    }
                ),
            ),
        )
        add(
            "disentanglement.png",
            "DCI disentanglement, MIG and IRS (figure 5)",
            lambda p: figures.grouped_bars(
                p,
                "Disentanglement (higher is better)",
                "score",
                labels,
                series({"dci_disentanglement": "DCI disentanglement", "mig": "MIG", "irs": "IRS"}),
            ),
        )
    if "sae12" in summary.importance:
        add(
            "sae12_importance.png",
            "SAE-12: share of DCI importance per variable and factor (figure 4)",
            lambda p: figures.importance_heatmap(p, "SAE-12 importance (mean over seeds)", summary.importance["sae12"]),
        )
    for arm, table in summary.extrapolation.items():
        arm_labels = [model_label(m) for m in table]
        modes = {
            mode: {model_label(m): spreads[mode] for m, spreads in table.items() if mode in spreads}
            for mode in FINE_TUNE_MODES
        }
        add(
            f"extrapolation_{arm}.png",
            f"Held-out MSE×1000 per fine-tune mode, arm {arm} (figure 7)",
            lambda p, arm=arm, arm_labels=arm_labels, modes=modes: figures.grouped_bars(
                p, f"Extrapolation, {arm} (lower is better)", "held-out MSE×1000", arm_labels, modes
            ),
        )
    return charts


def _spreads_json(values: dict) -> dict:
    return {k: (v.to_json() if v is not None else None) for k, v in values.items()}


def results_json(
    facts: RunFacts,
    summary: ExperimentSummary,
    claims: list[ClaimResult],
    charts: list[Chart],
    gates: list[ModelGate] | None = None,
) -> dict[str, Any]:
    """The aggregated numbers and verdicts, machine-readable."""
    importance = summary.importance.get("sae12")
    c5 = None
    if importance is not None:
        c5 = {
            "model": "sae12",
            "aggregation": "mean over seeds of the normalised variable-by-factor matrix",
            "seeds": list(importance.seeds),
            "factor_names": list(importance.factor_names),
            "shares": [list(r) for r in importance.shares],
            "variables": [
                {"variable": v + 1, "top_factor": importance.top_factor(v), "share": share}
                for v, share in enumerate(importance.variable_shares)
            ],
        }
    return {
        "schema": RESULTS_SCHEMA,
        "grid": facts.grid,
        "command": facts.command,
        "commits": facts.commits,
        "machines": facts.machines,
        "torch": facts.torch_versions,
        "dataset_labels": facts.dataset_labels,
        "wall_seconds": {
            "cells_total": facts.cell_seconds,
            "cells_by_stage": facts.seconds_by_stage,
            "measured": facts.wall_seconds,
        },
        "cells": list(facts.cell_ids),
        "missing_cells": list(facts.missing_cells),
        "planned_cells": list(facts.plan.planned_cells)
        if facts.plan and facts.plan.planned_cells is not None
        else None,
        "models": {
            m: {"seeds": list(summary.seeds[m]), "has_prior": summary.has_prior[m], "metrics": _spreads_json(values)}
            for m, values in summary.models.items()
        },
        "extrapolation": {
            arm: {
                m: {"seeds": list(summary.extrapolation_seeds[arm][m]), "heldout_mse_x1000": _spreads_json(modes)}
                for m, modes in table.items()
            }
            for arm, table in summary.extrapolation.items()
        },
        "c5_importance": c5,
        "gate": [g.to_json() for g in gates or []],
        "comparison_rule": COMPARISON_RULE,
        "paired_rule": PAIRED_RULE,
        "approximate_rule": APPROX_RULE,
        "combining_rule": COMBINING_RULE,
        "claims": [c.to_json() for c in claims],
        "figures": [{"title": c.title, "path": c.path} for c in charts],
    }


def build_report(out_dir: Path, *, command: str, wall_seconds: float | None = None) -> Path:
    """Read ``out_dir/cells/*.json`` (and ``out_dir/grid.json``), write REPORT.md, results.json and figures.

    Returns the REPORT.md path. A cell file that cannot be read as schema 1 raises ``CellFileError`` naming it.
    """
    out_dir = Path(out_dir)
    plan = read_grid_plan(out_dir / "grid.json")
    cells = read_cells(out_dir / "cells")
    if not cells and plan is None:
        raise CellFileError(
            f"{out_dir / 'cells'}: no cell files (*.json) and no {out_dir / 'grid.json'}: nothing to report"
        )
    facts = run_facts(cells, plan, command=command, wall_seconds=wall_seconds)
    summary = summarise(cells)
    gates = model_gates(summary, procedural=bool(cells) and set(facts.dataset_labels) == {"procedural"})
    lines = [g.claim_line for g in gates if g.claim_line is not None]
    claims = evaluate_claims(summary, lines or None)
    charts = _charts(out_dir, summary)
    (out_dir / RESULTS_JSON).write_text(
        json.dumps(results_json(facts, summary, claims, charts, gates), indent=2, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    report = out_dir / REPORT_MD
    report.write_text(
        render_report(
            out_dir, facts, summary, claims, cells, charts, charts_available=figures.charts_available(), gates=gates
        ),
        encoding="utf-8",
    )
    return report
