"""REPORT.md of `sae experiment`, rendered from the run's facts, the aggregated numbers and the claims' verdicts.

Every table cell is a number ("mean ± std" over seeds) except "—", which stands only for a prior-sample FID of a
model without a prior.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sae.experiment.aggregate import ExperimentSummary, Spread
from sae.experiment.cell_results import FINE_TUNE_MODES, CellResult
from sae.experiment.claims import NOT_TESTABLE
from sae.experiment.claims_latents import C5_GEOMETRY, C5_HUES, mean_position
from sae.experiment.comparisons import (
    APPROX_RULE,
    COMBINING_RULE,
    COMPARISON_RULE,
    PAIRED_RULE,
    ClaimResult,
    format_spread,
)
from sae.experiment.gate import ACCURACY_GATE, BCE_GATE_FRACTION, GATE_MODELS
from sae.experiment.model_groups import model_label, model_sort_key
from sae.experiment.report_facts import Chart, RunFacts
from sae.experiment.report_gate import BCE_ONLY, MEASURED, NOT_MEASURED, ModelGate

__all__ = ["NO_PRIOR", "NOT_RECORDED", "TRAVERSAL_MODELS", "markdown_table", "render_report"]

NO_PRIOR = "—"
NOT_RECORDED = "n/a"
TRAVERSAL_MODELS = ("sae12", "sae3", "betavae", "vlae12")
GENERATION_COLUMNS = (
    ("bce", "BCE per image"),
    ("mse", "MSE per pixel"),
    ("fid_reconstruction", "FID recon."),
    ("fid_hybrid", "FID hybrid"),
    ("fid_prior", "FID prior"),
)
DISENTANGLEMENT_COLUMNS = (
    ("dci_disentanglement", "DCI disent."),
    ("dci_completeness", "DCI compl."),
    ("dci_informativeness", "DCI inform."),
    ("mig", "MIG"),
    ("irs", "IRS"),
    ("sap", "SAP"),
    ("modularity", "modularity"),
    ("explicitness", "explicitness"),
)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)] + [
        "| " + " | ".join(row) + " |" for row in rows
    ]


def _counts(counts: dict, unit: str = "cells") -> str:
    if not counts:
        return "none recorded"
    return ", ".join(f"`{k}` ({n} {unit if n != 1 else unit.rstrip('s')})" for k, n in counts.items())


def _cell(spread: Spread | None, seeds: int, *, no_prior: bool = False) -> str:
    """ "mean ± std", with its own n when fewer seeds than the model's recorded it; NO_PRIOR or NOT_RECORDED if none."""
    if spread is None:
        return NO_PRIOR if no_prior else NOT_RECORDED
    return format_spread(spread) + (f" (n={spread.n})" if spread.n < seeds else "")


def _metric_rows(summary: ExperimentSummary, columns: Sequence[tuple[str, str]]) -> list[list[str]]:
    return [
        [model_label(m), str(len(summary.seeds[m]))]
        + [
            _cell(values[k], len(summary.seeds[m]), no_prior=k == "fid_prior" and not summary.has_prior[m])
            for k, _ in columns
        ]
        for m, values in summary.models.items()
    ]


def _not_recorded_note(rows: Sequence[Sequence[str]]) -> list[str]:
    if not any(NOT_RECORDED in row for row in rows):
        return []
    return [
        "",
        f"{NOT_RECORDED}: not recorded (the value is null in every cell file of that model, or the mode was "
        "not run); claims that need it say it is missing.",
    ]


def _header(facts: RunFacts) -> list[str]:
    lines = [f"# Experiment report: {facts.grid or 'unnamed grid'}", ""]
    labels = facts.dataset_labels
    if set(labels) == {"procedural"}:
        lines += [
            "> **Procedural data.** Every number here is measured on this package's procedural 3D-Shapes "
            "(dataset label `procedural`), not on the real dataset: they are not the paper's numbers and are "
            "not comparable with them.",
            "",
        ]
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
    lines += [
        f"- Commit(s): {_counts(facts.commits)}",
        f"- Machine(s): {_counts(facts.machines)}",
        f"- torch: {_counts(facts.torch_versions)}",
        f"- Time: {wall}",
        f"- Hybrid-sample draw mode: {_counts(facts.draw_modes)}",
        f"- FID images per set: {_counts(facts.fid_images)} (the paper used 50,000)",
        f"- DCI regressor: {_counts(facts.dci_regressors)}",
    ]
    if plan and plan.sizing:
        lines.append(f"- Grid sizing: {plan.sizing}")
    if plan and plan.planned_cells is not None:
        planned = len(plan.planned_cells)
        lines.append(
            f"- Cells: {planned - len(facts.missing_cells)} of {planned} planned present"
            + (f", {len(facts.unplanned_cells)} more not in grid.json" if facts.unplanned_cells else "")
        )
    else:
        lines.append(f"- Cells: {len(facts.cell_ids)} present (no grid.json: the plan is unknown)")
    return lines + [""]


def _seeds_note(summary: ExperimentSummary) -> list[str]:
    single = [model_label(m) for m, seeds in summary.seeds.items() if len(seeds) == 1]
    single += [
        f"{model_label(m)} [{arm}]"
        for arm, table in summary.extrapolation_seeds.items()
        for m, seeds in table.items()
        if len(seeds) == 1
    ]
    if not single:
        return []
    return [
        f"**Single seed:** {', '.join(single)} ran one seed only; their std is 0 and every verdict that uses "
        "them rests on that one seed.",
        "",
    ]


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
    return (
        lines
        + markdown_table(["model", "n"] + [t for _, t in DISENTANGLEMENT_COLUMNS], rows)
        + _not_recorded_note(rows)
        + [""]
    )


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
    first_cells = [cell for model in models if (cell := _first_seed(cells, model)) is not None]
    if first_cells:
        lines += ["### Hybrid and prior samples (first seed of each model)", ""]
        for cell in first_cells:
            title = f"{model_label(cell.model)}, seed {cell.seed}"
            prior = (
                _link(out_dir, cell.thumbnails.get("prior_samples"), f"{title}: prior samples")
                if cell.has_prior
                else "no prior"
            )
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
        rows = [
            [model_label(m), str(len(seeds[m]))] + [_cell(modes.get(mode), len(seeds[m])) for mode in FINE_TUNE_MODES]
            for m, modes in table.items()
        ]
        lines += markdown_table(["model", "n"] + list(FINE_TUNE_MODES), rows) + _not_recorded_note(rows) + [""]
    return lines + [
        "Fine-tune modes: none = the pretrained model as is; encoder / decoder = only that part updated; "
        "both = the whole model.",
        "",
    ]


def _c5_table(summary: ExperimentSummary) -> list[str]:
    lines = ["## SAE-12: what each variable encodes (DCI importance)", ""]
    importance = summary.importance.get("sae12")
    if importance is None:
        return lines + ["No SAE-12 cell with a DCI importance matrix.", ""]
    names = importance.factor_names
    placed = all(f in names for f in C5_GEOMETRY + C5_HUES)
    lines += [
        f"Importance rows summed over each variable's dims and divided by the total, then averaged over "
        f"{len(importance.seeds)} seed(s) (seeds {', '.join(map(str, importance.seeds))}). C5 compares the "
        f"importance-weighted mean position of {' and '.join(C5_GEOMETRY)} with that of the hues, seed by seed "
        f"(the claim's line gives each seed)"
        + (
            f"; on this mean matrix they sit at {mean_position(importance.shares, names, C5_GEOMETRY):.2f} and "
            f"{mean_position(importance.shares, names, C5_HUES):.2f}."
            if placed
            else "."
        ),
        "",
    ]
    rows = [
        [str(v + 1), importance.top_factor(v), f"{share * 100:.2f}"]
        for v, share in enumerate(importance.variable_shares)
    ]
    return lines + markdown_table(["variable", "most-informative factor", "share of total importance (%)"], rows) + [""]


def _number(value: float) -> str:
    return f"{value:.4g}"


def _gate(gates: Sequence[ModelGate], claims: Sequence[ClaimResult]) -> list[str]:
    lines = [
        "## The gate: has each model learned the geometry?",
        "",
        f"A model has learned the geometry when every factor is predicted from its codes with test accuracy ≥ "
        f"{ACCURACY_GATE} (gradient-boosted trees) and its test BCE is at most floor + {BCE_GATE_FRACTION:g} × "
        f"(oracle − floor): the colour oracle gets each image's hues right and outputs the mean over all 480 "
        f"geometries; the entropy floor is a perfect reconstruction. The budget is adequate when "
        f"{' and '.join(model_label(m) for m in GATE_MODELS)} both pass. A claim whose models (or the budget) "
        f"are below the gate is not testable; the models compared against them are taken as they are.",
        "",
    ]
    if not gates:
        return lines + ["No main cells.", ""]
    rows = []
    for g in gates:
        if g.line is None:
            rows.append([model_label(g.model), "0", g.source] + [NOT_RECORDED] * 7)
            continue
        line = g.line
        accuracy = ", ".join(f"{f} {a:.2f}" for f, a in line.accuracy.items()) if line.accuracy else "not measured"
        rows.append(
            [
                model_label(g.model),
                str(len(g.seeds)),
                g.source + ("" if g.all_seeds else " (not every seed)"),
                _number(line.bce),
                _number(line.mse),
                f"{_number(line.oracle_bce)} / {_number(line.oracle_mse)}",
                _number(line.floor_bce),
                _number(line.bce_threshold),
                accuracy,
                "yes" if g.passed else "no",
            ]
        )
    lines += markdown_table(
        [
            "model",
            "seeds",
            "gate numbers",
            "BCE per image",
            "MSE per pixel",
            "oracle BCE / MSE",
            "floor BCE",
            "BCE threshold",
            "accuracy per factor (lowest seed)",
            "learned the geometry",
        ],
        rows,
    ) + [""]
    sources = {g.source for g in gates}
    if MEASURED in sources:
        lines += [
            f"{MEASURED}: the cells carry the gate's numbers on their own test images; BCE, MSE, oracle and "
            "floor are means over the seeds, accuracy the lowest seed's.",
            "",
        ]
    if BCE_ONLY in sources:
        lines += [
            f"{BCE_ONLY}: these cells do not carry the gate's numbers, so the gate was not measured for them. "
            "Their line puts the cells' test BCE and MSE beside the colour oracle's and the entropy floor's "
            "measured once on 2,000 procedural images (`gate.oracle_figures()`, not the cells' own test "
            "images), and their per-factor accuracy is unknown: unknown accuracy counts as not passing, so "
            "none of these models is taken to have learned the geometry.",
            "",
        ]
    if NOT_MEASURED in sources:
        lines += [
            f"{NOT_MEASURED}: the gate was not measured for these cells (no gate numbers, and no oracle for "
            "their data); the claims about them follow their rules.",
            "",
        ]
    by_model = {g.model: g for g in gates}
    budget = [m for m in GATE_MODELS if m in by_model and by_model[m].line is not None]
    if budget:
        adequate = all(by_model[m].passed for m in GATE_MODELS if m in by_model) and len(budget) == len(GATE_MODELS)
        lines += [
            f"Budget adequate: {'yes' if adequate else 'no'} ("
            + ", ".join(f"{model_label(m)} {'passes' if by_model[m].passed else 'below the gate'}" for m in budget)
            + ").",
            "",
        ]
    untested = [c.claim_id for c in claims if c.verdict.outcome == NOT_TESTABLE]
    if untested:
        lines += [
            f"**{', '.join(untested)} are not tested by this run:** the models they are about are below the "
            "gate. What their rules give on these numbers is shown for the record only; it is no evidence for "
            "or against the paper.",
            "",
        ]
    return lines


def _claims(claims: Sequence[ClaimResult]) -> list[str]:
    lines = [
        "## Claims",
        "",
        "Each claim quotes the paper, then states the rule that decides it.",
        "",
        f"- {COMPARISON_RULE}",
        f"- {PAIRED_RULE}",
        f"- {APPROX_RULE}",
        f"- {COMBINING_RULE}",
        "",
    ]
    for claim in claims:
        single = (
            f" Single seed for {', '.join(claim.single_seed)}: the verdict rests on one seed."
            if claim.single_seed
            else ""
        )
        record = (
            f" The rule on these numbers, for the record (not a test of the claim): {claim.rule_verdict}."
            if claim.rule_verdict
            else ""
        )
        quote = f" The paper: {claim.quote}." if claim.quote else ""
        lines.append(
            f"- **{claim.claim_id}** {claim.statement}{quote} Rule: {claim.rule} This run: {claim.numbers}."
            f"{single}{record} **Verdict: {claim.verdict}**"
        )
        lines += [f"  - {d}" for d in claim.details]
    lines.append("")
    for claim in claims:
        if claim.comparisons:
            lines += [f"<details><summary>{claim.claim_id}: every comparison</summary>", ""]
            for part in claim.parts:
                if part.comparisons:
                    lines += [f"*{part.name}* ({part.rule}): {part.verdict}", ""]
                    lines += [f"- {c.describe()}" for c in part.comparisons] + [""]
            lines += ["</details>", ""]
    return lines


def _missing(facts: RunFacts) -> list[str]:
    lines = []
    if facts.missing_cells:
        lines += ["## Missing cells", "", f"{len(facts.missing_cells)} planned cell(s) have no result file:", ""]
        lines += [f"- `{c}`" for c in facts.missing_cells] + [""]
    if facts.unplanned_cells:
        lines += ["## Cells not in grid.json", ""] + [f"- `{c}`" for c in facts.unplanned_cells] + [""]
    return lines


def render_report(
    out_dir: Path,
    facts: RunFacts,
    summary: ExperimentSummary,
    claims: Sequence[ClaimResult],
    cells: Sequence[CellResult],
    charts: Sequence[Chart],
    *,
    charts_available: bool,
    gates: Sequence[ModelGate] = (),
) -> str:
    lines = _header(facts)
    untested = [c.claim_id for c in claims if c.verdict.outcome == NOT_TESTABLE]
    if untested:
        below = sorted({g.model for g in gates if g.line is not None and not g.passed}, key=model_sort_key)
        lines[2:2] = [
            f"> **Below the gate.** {', '.join(model_label(m) for m in below)} have not been shown to "
            f'learn the geometry (section "The gate"), so {", ".join(untested)} are not tested by this run: '
            'their verdicts read "not testable".',
            "",
        ]
    lines += _seeds_note(summary) + _model_tables(summary) + _figures(out_dir, cells, charts, charts_available)
    lines += _extrapolation(summary) + _c5_table(summary) + _gate(gates, claims) + _claims(claims) + _missing(facts)
    return "\n".join(lines)
