"""The paper's claims (C1-C6) as rules over the aggregated numbers, each giving one verdict.

The comparison rule (``COMPARISON_RULE``): A beats B on a lower-is-better metric when mean_A + std_A < mean_B - std_B
(the claim agrees); B beats A by the same gap when mean_B + std_B < mean_A - std_A (it disagrees); otherwise the spreads
overlap. Higher-is-better metrics mirror it. A claim made of several comparisons disagrees if any disagrees, agrees if
all agree, and is otherwise inconclusive: "missing: ..." when some inputs are absent, else "spreads overlap".
A disagreement is kept even when other inputs are missing. C5 is a rule over the DCI importance matrix instead.

Given gate lines (``serving.experiment.gate``), a claim whose subject model (SAE-12; VLAE-12 too for C4 and C6) is
below the gate has not learned the geometry its claim is about, and the claim is "not testable" naming those models.
Without gate lines every claim is evaluated by its rule.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sae.serving.experiment.aggregate import ExperimentSummary, Spread, VariableImportance
from sae.serving.experiment.model_groups import (HOURGLASS, MODEL_ORDER, REGULARISED, UNREGULARISED, WITH_PRIOR,
                                             model_label, model_sort_key)
from sae.serving.experiment.gate import NOT_TESTABLE, GateLine, below_gate

__all__ = ["AGREES", "DISAGREES", "INCONCLUSIVE", "NOT_TESTABLE", "CLAIM_SUBJECTS", "COMPARISON_RULE",
           "C5_UNUSED_SHARE", "C5_FACTORS", "EXTRAPOLATION_ARMS", "Comparison", "Verdict", "ClaimResult", "beats",
           "compare", "combine", "format_spread", "gate_verdict", "evaluate_claims"]

AGREES, DISAGREES, INCONCLUSIVE = "agrees", "disagrees", "inconclusive"
# The models each claim is about: below the gate, the claim is not testable.
CLAIM_SUBJECTS = {"C1": ("sae12",), "C2": ("sae12",), "C3": ("sae12",), "C4": ("sae12", "vlae12"),
                  "C5": ("sae12",), "C6": ("sae12", "vlae12")}
OVERLAP, MISSING = "overlap", "missing"  # outcomes of a single comparison besides agrees / disagrees
COMPARISON_RULE = (
    "A beats B on a lower-is-better metric when mean_A + std_A < mean_B − std_B (agrees); the reverse gap, "
    "mean_B + std_B < mean_A − std_A, is a disagreement; otherwise the spreads overlap (inconclusive). "
    "Higher-is-better metrics mirror the rule. std is the sample standard deviation over the seeds that recorded the "
    "value; with a single seed it is 0 and the verdict rests on that one seed. A claim made of several comparisons "
    "disagrees if any comparison disagrees, agrees if all agree, and is otherwise inconclusive (missing inputs are "
    "named).")
C5_FACTORS = ("shape", "orientation")  # the nonlinear factors of 3D-Shapes the paper finds in SAE-12's first variables
C5_UNUSED_SHARE = 0.02  # a variable with less than this share of all importance counts as unused
EXTRAPOLATION_ARMS = ("no_ball", "extreme_orientations")
METRIC_LABELS = {"fid": "FID", "bce": "BCE", "mse": "MSE", "fid_hybrid": "hybrid FID", "fid_prior": "prior FID",
                 "dci_disentanglement": "DCI disentanglement", "mig": "MIG", "irs": "IRS",
                 "heldout_mse_x1000": "held-out MSE×1000"}


def format_spread(spread: Spread) -> str:
    """Mean to 4 significant digits, std to 2."""
    return f"{spread.mean:.4g} ± {spread.std:.2g}"


@dataclass(frozen=True)
class Comparison:
    """One "A beats B" test: ``outcome`` is agrees, disagrees, overlap or missing (then ``missing`` names what)."""

    a_label: str
    b_label: str
    metric: str
    a: Spread | None
    b: Spread | None
    lower_is_better: bool
    outcome: str
    missing: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.outcome == MISSING:
            return f"{self.a_label} vs {self.b_label} on {METRIC_LABELS.get(self.metric, self.metric)}: " \
                   f"missing {', '.join(self.missing)}"
        direction = "lower" if self.lower_is_better else "higher"
        return (f"{self.a_label} {format_spread(self.a)} vs {self.b_label} {format_spread(self.b)} "
                f"on {METRIC_LABELS.get(self.metric, self.metric)} ({direction} is better): {self.outcome}")

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a_label, "b": self.b_label, "metric": self.metric, "lower_is_better": self.lower_is_better,
                "a_spread": self.a.to_json() if self.a else None, "b_spread": self.b.to_json() if self.b else None,
                "outcome": self.outcome, "missing": list(self.missing)}


@dataclass(frozen=True)
class Verdict:
    outcome: str  # agrees, disagrees, inconclusive or not testable
    reason: str | None = None  # why it is inconclusive or not testable

    def __str__(self) -> str:
        return f"{self.outcome} ({self.reason})" if self.reason else self.outcome


@dataclass(frozen=True)
class ClaimResult:
    claim_id: str
    statement: str
    rule: str
    numbers: str
    verdict: Verdict
    comparisons: tuple[Comparison, ...] = ()
    single_seed: tuple[str, ...] = ()  # the inputs measured on one seed only
    details: tuple[str, ...] = ()  # extra lines for the report (C5's per-variable table)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.claim_id, "statement": self.statement, "rule": self.rule, "numbers": self.numbers,
                "verdict": str(self.verdict), "outcome": self.verdict.outcome, "reason": self.verdict.reason,
                "single_seed": list(self.single_seed), "comparisons": [c.to_json() for c in self.comparisons],
                "details": list(self.details)}


def beats(a: Spread, b: Spread, *, lower_is_better: bool) -> bool:
    """A beats B by more than both spreads."""
    if lower_is_better:
        return a.mean + a.std < b.mean - b.std
    return a.mean - a.std > b.mean + b.std


def compare(a: Spread, b: Spread, *, lower_is_better: bool) -> str:
    """The comparison rule for "A beats B": agrees, disagrees or overlap."""
    if beats(a, b, lower_is_better=lower_is_better):
        return AGREES
    if beats(b, a, lower_is_better=lower_is_better):
        return DISAGREES
    return OVERLAP


def _comparison(a_label: str, a: Spread | None, b_label: str, b: Spread | None, metric: str,
                lower_is_better: bool, missing: Sequence[str] = ()) -> Comparison:
    if a is None or b is None:
        missing = tuple(missing) or tuple(f"{label} {METRIC_LABELS.get(metric, metric)}"
                                          for label, s in ((a_label, a), (b_label, b)) if s is None)
        return Comparison(a_label, b_label, metric, a, b, lower_is_better, MISSING, missing)
    return Comparison(a_label, b_label, metric, a, b, lower_is_better, compare(a, b, lower_is_better=lower_is_better))


def combine(comparisons: Sequence[Comparison]) -> Verdict:
    """Disagrees if any comparison disagrees, agrees if all agree, otherwise inconclusive (naming what is missing)."""
    outcomes = [c.outcome for c in comparisons]
    if DISAGREES in outcomes:
        return Verdict(DISAGREES)
    if outcomes and all(o == AGREES for o in outcomes):
        return Verdict(AGREES)
    missing = sorted({m for c in comparisons for m in c.missing}, key=_missing_sort_key)
    if missing:
        return Verdict(INCONCLUSIVE, "missing: " + ", ".join(missing))
    return Verdict(INCONCLUSIVE, "spreads overlap")


def _missing_sort_key(name: str) -> tuple[tuple[int, str], str]:
    return model_sort_key(name.split(" ", 1)[0]), name


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _single_seed(comparisons: Sequence[Comparison]) -> tuple[str, ...]:
    labels = [label for c in comparisons for label, s in ((c.a_label, c.a), (c.b_label, c.b)) if s and s.n == 1]
    return tuple(_unique(labels))


def _model_pairs(summary: ExperimentSummary, subjects: Sequence[str], others: Sequence[str],
                 metrics: Sequence[str], lower_is_better: bool) -> list[Comparison]:
    """Every subject against every other model (not itself), once per metric."""
    found: dict[tuple[str, str, str], Comparison] = {}
    for metric in metrics:
        for a in subjects:
            for b in others:
                if a == b or (a, b, metric) in found:
                    continue
                found[(a, b, metric)] = _comparison(
                    model_label(a), summary.models.get(a, {}).get(metric), model_label(b),
                    summary.models.get(b, {}).get(metric), metric, lower_is_better,
                    _missing_inputs(summary.models, (a, b), metric))
    return list(found.values())


def _missing_inputs(values: dict[str, dict[str, Spread | None]], models: Sequence[str], metric: str,
                    where: str = "") -> list[str]:
    """What a comparison lacks: a model with no cells at all, or a value no seed of a model recorded."""
    label = METRIC_LABELS.get(metric, metric)
    return [m + where if m not in values else f"{m} {label}{where}" for m in models
            if values.get(m, {}).get(metric) is None]


def _metric_numbers(summary: ExperimentSummary, models: Sequence[str], metrics: Sequence[str]) -> str:
    parts = []
    for metric in metrics:
        values = [f"{model_label(m)} {format_spread(summary.models[m][metric])}" for m in models
                  if m in summary.models and summary.models[m].get(metric) is not None]
        parts.append(f"{METRIC_LABELS.get(metric, metric)}: " + (", ".join(values) if values else "none"))
    return "; ".join(parts)


def _tally(comparisons: Sequence[Comparison]) -> str:
    counts = {o: sum(c.outcome == o for c in comparisons) for o in (AGREES, OVERLAP, DISAGREES, MISSING)}
    text = f"{len(comparisons)} comparisons: " + ", ".join(f"{n} {o}" for o, n in counts.items() if n)
    against = [c.describe() for c in comparisons if c.outcome == DISAGREES]
    return text + (" (disagreeing: " + "; ".join(against) + ")" if against else "")


def _all_models(summary: ExperimentSummary) -> list[str]:
    return sorted(set(MODEL_ORDER) | set(summary.models), key=model_sort_key)


def _pair_claim(claim_id: str, statement: str, rule: str, summary: ExperimentSummary, comparisons: list[Comparison],
                models: Sequence[str], metrics: Sequence[str]) -> ClaimResult:
    numbers = _metric_numbers(summary, models, metrics) + ". " + _tally(comparisons)
    return ClaimResult(claim_id, statement, rule, numbers, combine(comparisons), tuple(comparisons),
                       _single_seed(comparisons))


def claim_c1(summary: ExperimentSummary) -> ClaimResult:
    metrics = ("mse", "bce")
    comparisons = _model_pairs(summary, ("sae12", "sae3"), HOURGLASS, metrics, True)
    comparisons += [c for c in _model_pairs(summary, UNREGULARISED, REGULARISED, metrics, True)
                    if (c.a_label, c.b_label, c.metric) not in {(d.a_label, d.b_label, d.metric) for d in comparisons}]
    return _pair_claim(
        "C1", "SAE reconstructs better than the hourglass baselines, and unregularised models better than regularised "
        "ones (figure 2).",
        "SAE-12 and SAE-3 beat each of AE, VAE, β-VAE, β-TCVAE, FactorVAE, WAE, and each unregularised model (SAE-12, "
        "SAE-3, AdaAE-12, AE) beats each regularised one (VAE family, WAE, VLAE-12), on test MSE and BCE.",
        summary, comparisons, UNREGULARISED + REGULARISED, metrics)


def claim_c2(summary: ExperimentSummary) -> ClaimResult:
    others = [m for m in _all_models(summary) if m != "sae12"]
    comparisons = _model_pairs(summary, ("sae12",), others, ("fid_hybrid",), True)
    return _pair_claim("C2", "SAE hybrid samples have the best FID (figure 3).",
                       "SAE-12's hybrid-sample FID beats every other model's.", summary, comparisons,
                       _all_models(summary), ("fid_hybrid",))


def claim_c3(summary: ExperimentSummary) -> ClaimResult:
    with_prior = sorted(set(WITH_PRIOR) | {m for m, p in summary.has_prior.items() if p}, key=model_sort_key)
    comparisons = []
    for model in with_prior:
        values = summary.models.get(model, {})
        missing = _unique(_missing_inputs(summary.models, (model,), "fid_hybrid")
                          + _missing_inputs(summary.models, (model,), "fid_prior"))
        comparisons.append(_comparison(f"{model_label(model)} hybrid", values.get("fid_hybrid"),
                                       f"{model_label(model)} prior", values.get("fid_prior"), "fid", True, missing))
    present = [m for m in with_prior if None not in (summary.models.get(m, {}).get("fid_hybrid"),
                                                     summary.models.get(m, {}).get("fid_prior"))]
    numbers = "; ".join(f"{model_label(m)} hybrid {format_spread(summary.models[m]['fid_hybrid'])} vs prior "
                        f"{format_spread(summary.models[m]['fid_prior'])}" for m in present) or "no model with a prior"
    return ClaimResult("C3", "VAE-family models generate better by hybrid than by prior sampling (figures 3, 6b).",
                       "For each model with a prior, its hybrid-sample FID beats its prior-sample FID.",
                       numbers + ". " + _tally(comparisons), combine(comparisons), tuple(comparisons),
                       _single_seed(comparisons))


def claim_c4(summary: ExperimentSummary) -> ClaimResult:
    metrics = ("dci_disentanglement", "mig", "irs")
    others = [m for m in _all_models(summary) if m not in ("sae12", "vlae12")]
    comparisons = _model_pairs(summary, ("sae12", "vlae12"), others, metrics, False)
    return _pair_claim(
        "C4", "SAE-12 and VLAE-12 disentangle best; AdaAE does not disentangle (figure 5).",
        "SAE-12 and VLAE-12 each beat every other model on DCI disentanglement, MIG and IRS (higher is better); "
        "this includes AdaAE-12 below SAE-12 on all three.", summary, comparisons, _all_models(summary), metrics)


def _c5_rule_holds(shares: Sequence[Sequence[float]], factor_names: Sequence[str]) -> tuple[bool, list[str]]:
    importance = VariableImportance(tuple(factor_names), (), tuple(tuple(r) for r in shares), ())
    first_third = math.ceil(len(shares) / 3)
    reasons, holds = [], True
    for factor in C5_FACTORS:
        carrier = importance.carrier_of(factor)
        ok = carrier < first_third
        holds &= ok
        reasons.append(f"{factor} mostly in variable {carrier + 1} ({'within' if ok else 'outside'} the first "
                       f"{first_third})")
    smallest = min(importance.variable_shares)
    unused = smallest < C5_UNUSED_SHARE
    holds &= unused
    reasons.append(f"smallest variable share {smallest:.1%} ({'<' if unused else '≥'} {C5_UNUSED_SHARE:.0%})")
    return holds, reasons


def claim_c5(summary: ExperimentSummary) -> ClaimResult:
    statement = ("SAE-12 orders its information: nonlinear factors (shape, orientation) in the first variables and "
                 "some variables unused (figure 4).")
    rule = (f"From SAE-12's DCI importance matrix summed over each variable's dims and divided by the total (mean over "
            f"seeds): the variable carrying most of shape's and of orientation's importance is among the first third "
            f"of the variables, and at least one variable's share of all importance is under "
            f"{C5_UNUSED_SHARE:.0%}. The rule is also checked per seed: seeds that split make it inconclusive.")
    importance = summary.importance.get("sae12")
    missing = ("sae12" if "sae12" not in summary.models else "sae12 DCI importance" if importance is None else
               ", ".join(f"factor {f}" for f in C5_FACTORS if f not in importance.factor_names))
    if missing:
        return ClaimResult("C5", statement, rule, "no importance matrix for SAE-12",
                           Verdict(INCONCLUSIVE, f"missing: {missing}"))
    holds, reasons = _c5_rule_holds(importance.shares, importance.factor_names)
    per_seed = [_c5_rule_holds(m, importance.factor_names)[0] for m in importance.per_seed]
    seeds_text = ", ".join(f"seed {s}: {'holds' if h else 'fails'}" for s, h in zip(importance.seeds, per_seed))
    numbers = (f"mean over {len(importance.seeds)} seed(s): " + "; ".join(reasons) + f". Per seed: {seeds_text}")
    if all(per_seed) and holds:
        verdict = Verdict(AGREES)
    elif not any(per_seed) and not holds:
        verdict = Verdict(DISAGREES)
    else:
        verdict = Verdict(INCONCLUSIVE, f"seeds split: the rule holds for {sum(per_seed)} of {len(per_seed)} seeds"
                          f"{' and on the mean' if holds else ', not on the mean'}")
    details = tuple(f"variable {v + 1}: {importance.top_factor(v)}, {share:.1%} of all importance"
                    for v, share in enumerate(importance.variable_shares))
    single = ("SAE-12 importance",) if len(importance.seeds) == 1 else ()
    return ClaimResult("C5", statement, rule, numbers, verdict, (), single, details)


def claim_c6(summary: ExperimentSummary) -> ClaimResult:
    arms = _unique(EXTRAPOLATION_ARMS + tuple(summary.extrapolation))
    comparisons = []
    for arm in arms:
        table = summary.extrapolation.get(arm, {})
        where = f" in {arm}"

        def mode_pair(a: str, a_mode: str, b: str, b_mode: str) -> Comparison:
            missing = _unique(_missing_inputs(table, (a,), a_mode, where) + _missing_inputs(table, (b,), b_mode, where))
            return _comparison(f"{model_label(a)} {a_mode} [{arm}]", table.get(a, {}).get(a_mode),
                               f"{model_label(b)} {b_mode} [{arm}]", table.get(b, {}).get(b_mode),
                               "heldout_mse_x1000", True, missing)

        for model in sorted(set(table) | {"sae12", "vae", "betavae"}, key=model_sort_key):
            comparisons.append(mode_pair(model, "decoder", model, "encoder"))
        comparisons += [mode_pair("sae12", "decoder", baseline, "decoder") for baseline in ("vae", "betavae")]

    def modes_text(modes: dict[str, Spread]) -> str:
        return " / ".join(f"{mode} {format_spread(modes[mode])}" for mode in ("decoder", "encoder") if mode in modes)

    numbers = "; ".join(f"{arm}: " + ", ".join(f"{model_label(m)} {modes_text(t)}"
                                               for m, t in summary.extrapolation[arm].items())
                        for arm in arms if arm in summary.extrapolation) or "no extrapolation cells"
    return ClaimResult(
        "C6", "Updating the decoder extrapolates better than updating the encoder, and SAE-12 beats the variational "
        "baselines there (figure 7).",
        "In each arm, for each model, held-out MSE after decoder fine-tuning beats that after encoder fine-tuning; "
        "and SAE-12's held-out MSE after decoder fine-tuning beats VAE's and β-VAE's.",
        numbers + ". " + _tally(comparisons), combine(comparisons), tuple(comparisons), _single_seed(comparisons))


def gate_verdict(result: ClaimResult, gate_lines: Sequence[GateLine] | None) -> ClaimResult:
    """The claim as evaluated, or "not testable (below the gate: ...)" when a subject model's gate line did not pass;
    unchanged without gate lines."""
    below = below_gate(CLAIM_SUBJECTS.get(result.claim_id, ()), gate_lines or ())
    if not below:
        return result
    return replace(result, verdict=Verdict(NOT_TESTABLE, "below the gate: " + ", ".join(below)))


def evaluate_claims(summary: ExperimentSummary, gate_lines: Sequence[GateLine] | None = None) -> list[ClaimResult]:
    """C1-C6 in order; with ``gate_lines``, a claim about a model below the gate is not testable."""
    return [gate_verdict(claim(summary), gate_lines)
            for claim in (claim_c1, claim_c2, claim_c3, claim_c4, claim_c5, claim_c6)]
