"""REPORT.md of `sae experiment`, rendered from the run's facts, the aggregated numbers and the claims' verdicts.

Every table cell is a number ("mean ± std" over seeds) except "—", which stands only for a prior-sample FID of a
model without a prior.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sae.serving.experiment.aggregate import ExperimentSummary, Spread
from sae.serving.experiment.cell_results import FINE_TUNE_MODES, CellResult
from sae.serving.experiment.claims import C5_UNUSED_SHARE, COMPARISON_RULE, ClaimResult, format_spread
from sae.serving.experiment.model_groups import model_label, model_sort_key
from sae.serving.experiment.report_facts import Chart, RunFacts


__all__ = ["NO_PRIOR", "NOT_RECORDED", "TRAVERSAL_MODELS", "markdown_table", "render_report"]

NO_PRIOR = "—"
NOT_RECORDED = "n/a"
TRAVERSAL_MODELS = ("sae12", "sae3", "betavae", "vlae12")
GENERATION_COLUMNS = (("bce", "BCE per image"), ("mse", "MSE per pixel"), ("fid_reconstruction", "FID recon."),
                      ("fid_hybrid", "FID hybrid"), ("fid_prior", "FID prior"))
DISENTANGLEMENT_COLUMNS = (("dci_disentanglement", "DCI disent."), ("dci_completeness", "DCI compl."),
                           ("dci_informativeness", "DCI inform."), ("mig", "MIG"), ("irs", "IRS"), ("sap", "SAP"),
                           ("modularity", "modularity"), ("explicitness", "explicitness"))


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
            + ["| " + " | ".join(row) + " |" for row in rows])


def _counts(counts: dict, unit: str = "cells") -> str:
    if not counts:
        return "none recorded"
    return ", ".join(f"`{k}` ({n} {unit if n != 1 else unit.rstrip('s')})" for k, n in counts.items())


def _cell(spread: Spread | None, seeds: int, *, no_prior: bool = False) -> str:
    """"mean ± std", with its own n when fewer seeds than the model's recorded it; NO_PRIOR or NOT_RECORDED if none."""
    if spread is None:
        return NO_PRIOR if no_prior else NOT_RECORDED
    return format_spread(spread) + (f" (n={spread.n})" if spread.n < seeds else "")


def _metric_rows(summary: ExperimentSummary, columns: Sequence[tuple[str, str]]) -> list[list[str]]:
    return [[model_label(m), str(len(summary.seeds[m]))]
            + [_cell(values[k], len(summary.seeds[m]), no_prior=k == "fid_prior" and not summary.has_prior[m])
               for k, _ in columns]
            for m, values in summary.models.items()]


def _not_recorded_note(rows: Sequence[Sequence[str]]) -> list[str]:
    if not any(NOT_RECORDED in row for row in rows):
        return []
    return ["", f"{NOT_RECORDED}: not recorded (the value is null in every cell file of that model, or the mode was "
            "not run); claims that need it say it is missing."]


def _header(facts: RunFacts) -> list[str]:
    lines = [f"# Experiment report: {facts.grid or 'unnamed grid'}", ""]
    labels = facts.dataset_labels
    if set(labels) == {"procedural"}:
        lines += ["> **Procedural data.** Every number here is measured on this package's procedural 3D-Shapes "
                  "(dataset label `procedural`), not on the real dataset: they are not the paper's numbers and are "
                  "not comparable with them.", ""]
    else:
        lines += [f"> **Dataset labels:** {_counts(labels)}. Numbers on `procedural` data are not the paper's.", ""]
    plan = facts.plan
    if plan and plan.doc:
        lines += [plan.doc.strip(), ""]
    lines += ["## Run", "", "Command:", "", "```", facts.command, "```", ""]
    wall = f"{facts.cell_seconds:.0f} s summed over the cells ("
    wall += ", ".join(f"{stage} {s:.0f} s" for stage, s in facts.seconds_by_stage.items()) + ")"
    if facts.wall_seconds is not None:
        wall += f"; {facts.wall_seconds:.0f} s wall time of this run as measured by the caller"
    lines += [f"- Commit(s): {_counts(facts.commits)}", f"- Machine(s): {_counts(facts.machines)}",
              f"- torch: {_counts(facts.torch_versions)}", f"- Time: {wall}",
              f"- Hybrid-sample draw mode: {_counts(facts.draw_modes)}",
              f"- FID images per set: {_counts(facts.fid_images)} (the paper used 50,000)",
              f"- DCI regressor: {_counts(facts.dci_regressors)}"]
    if plan and plan.sizing:
        lines.append(f"- Grid sizing: {plan.sizing}")
    if plan and plan.planned_cells is not None:
        planned = len(plan.planned_cells)
        lines.append(f"- Cells: {planned - len(facts.missing_cells)} of {planned} planned present"
                     + (f", {len(facts.unplanned_cells)} more not in grid.json" if facts.unplanned_cells else ""))
    else:
        lines.append(f"- Cells: {len(facts.cell_ids)} present (no grid.json: the plan is unknown)")
    return lines + [""]


def _seeds_note(summary: ExperimentSummary) -> list[str]:
    single = [model_label(m) for m, seeds in summary.seeds.items() if len(seeds) == 1]
    single += [f"{model_label(m)} [{arm}]" for arm, table in summary.extrapolation_seeds.items()
               for m, seeds in table.items() if len(seeds) == 1]
    if not single:
        return []
    return [f"**Single seed:** {', '.join(single)} ran one seed only; their std is 0 and every verdict that uses "
            "them rests on that one seed.", ""]


def _model_tables(summary: ExperimentSummary) -> list[str]:
    lines = ["## Per model (mean ± std over seeds)", ""]
    if not summary.models:
        return lines + ["No main cells.", ""]
    lines += ["### Reconstruction (test split) and generation", ""]
    rows = _metric_rows(summary, GENERATION_COLUMNS)
    lines += markdown_table(["model", "n"] + [t for _, t in GENERATION_COLUMNS], rows)
    if not all(summary.has_prior.values()):
        lines += ["", f"{NO_PRIOR}: no prior (the model has no prior to sample from)."]
    lines += _not_recorded_note(rows) + ["", "### Disentanglement", ""]
    rows = _metric_rows(summary, DISENTANGLEMENT_COLUMNS)
    return (lines + markdown_table(["model", "n"] + [t for _, t in DISENTANGLEMENT_COLUMNS], rows)
            + _not_recorded_note(rows) + [""])


def _link(out_dir: Path, path: str | None, title: str) -> str:
    if not path:
        return "(no thumbnail recorded)"
    if not (out_dir / path).is_file():
        return f"(thumbnail `{path}` is missing)"
    return f"![{title}]({path})"


def _first_seed(cells: Sequence[CellResult], model: str) -> CellResult | None:
    main = sorted((c for c in cells if c.kind == "main" and c.model == model), key=lambda c: c.seed)
    return main[0] if main else None


def _figures(out_dir: Path, cells: Sequence[CellResult], charts: Sequence[Chart], charts_available: bool) -> list[str]:
    lines = ["## Figures", "", "### Traversals (first seed of each model)", ""]
    for model in TRAVERSAL_MODELS:
        cell = _first_seed(cells, model)
        if cell is None:
            lines += [f"- {model_label(model)}: no cell", ""]
        else:
            title = f"{model_label(model)} traversals, seed {cell.seed}"
            lines += [f"**{title}**", "", _link(out_dir, cell.thumbnails.get("traversals"), title), ""]
    models = sorted({c.model for c in cells if c.kind == "main"}, key=model_sort_key)
    if models:
        lines += ["### Hybrid and prior samples (first seed of each model)", ""]
        for model in models:
            cell = _first_seed(cells, model)
            title = f"{model_label(model)}, seed {cell.seed}"
            prior = (_link(out_dir, cell.thumbnails.get("prior_samples"), f"{title}: prior samples")
                     if cell.has_prior else "no prior")
            hybrid = _link(out_dir, cell.thumbnails.get("hybrid_samples"), f"{title}: hybrid samples")
            lines.append(f"- {title}: hybrid samples {hybrid} · prior samples: {prior}")
        lines.append("")
    if charts:
        lines += ["### Charts", ""]
        for chart in charts:
            lines += [f"**{chart.title}**", "", f"![{chart.title}]({chart.path})", ""]
    elif not charts_available:
        lines += ["Charts: not drawn (matplotlib is not installed).", ""]
    return lines


def _extrapolation(summary: ExperimentSummary) -> list[str]:
    lines = ["## Extrapolation (held-out MSE per pixel × 1000, mean ± std over seeds)", ""]
    if not summary.extrapolation:
        return lines + ["No extrapolation cells.", ""]
    for arm, table in summary.extrapolation.items():
        lines += [f"### Arm `{arm}`", ""]
        seeds = summary.extrapolation_seeds[arm]
        rows = [[model_label(m), str(len(seeds[m]))] + [_cell(modes.get(mode), len(seeds[m]))
                                                        for mode in FINE_TUNE_MODES]
                for m, modes in table.items()]
        lines += markdown_table(["model", "n"] + list(FINE_TUNE_MODES), rows) + _not_recorded_note(rows) + [""]
    return lines + ["Fine-tune modes: none = the pretrained model as is; encoder / decoder = only that part updated; "
                    "both = the whole model.", ""]


def _c5_table(summary: ExperimentSummary) -> list[str]:
    lines = ["## SAE-12: what each variable encodes (DCI importance)", ""]
    importance = summary.importance.get("sae12")
    if importance is None:
        return lines + ["No SAE-12 cell with a DCI importance matrix.", ""]
    lines += [f"Importance rows summed over each variable's dims and divided by the total, then averaged over "
              f"{len(importance.seeds)} seed(s) (seeds {', '.join(map(str, importance.seeds))}). A variable under "
              f"{C5_UNUSED_SHARE:.0%} of the total counts as unused.", ""]
    rows = [[str(v + 1), importance.top_factor(v), f"{share * 100:.2f}"]
            for v, share in enumerate(importance.variable_shares)]
    return lines + markdown_table(["variable", "most-informative factor", "share of total importance (%)"],
                                  rows) + [""]


def _claims(claims: Sequence[ClaimResult]) -> list[str]:
    lines = ["## Claims", "", f"Comparison rule: {COMPARISON_RULE}", ""]
    for claim in claims:
        single = (f" Single seed for {', '.join(claim.single_seed)}: the verdict rests on one seed."
                  if claim.single_seed else "")
        lines.append(f"- **{claim.claim_id}** {claim.statement} Rule: {claim.rule} This run: {claim.numbers}."
                     f"{single} **Verdict: {claim.verdict}**")
    lines.append("")
    for claim in claims:
        if claim.comparisons:
            lines += [f"<details><summary>{claim.claim_id}: every comparison</summary>", ""]
            lines += [f"- {c.describe()}" for c in claim.comparisons] + ["", "</details>", ""]
    return lines


def _missing(facts: RunFacts) -> list[str]:
    lines = []
    if facts.missing_cells:
        lines += ["## Missing cells", "", f"{len(facts.missing_cells)} planned cell(s) have no result file:", ""]
        lines += [f"- `{c}`" for c in facts.missing_cells] + [""]
    if facts.unplanned_cells:
        lines += ["## Cells not in grid.json", ""] + [f"- `{c}`" for c in facts.unplanned_cells] + [""]
    return lines


def render_report(out_dir: Path, facts: RunFacts, summary: ExperimentSummary, claims: Sequence[ClaimResult],
                  cells: Sequence[CellResult], charts: Sequence[Chart], *, charts_available: bool) -> str:
    lines = _header(facts) + _seeds_note(summary) + _model_tables(summary) + _figures(out_dir, cells, charts,
                                                                                      charts_available)
    lines += _extrapolation(summary) + _c5_table(summary) + _claims(claims) + _missing(facts)
    return "\n".join(lines)
