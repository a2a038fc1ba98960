"""Comparisons behind the claims' verdicts (``sae.experiment.claims``): one "A beats B" test under the spread,
paired or approximate rule, and how comparisons combine into a part's and a claim's verdict."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sae.experiment.aggregate import ExperimentSummary, Spread
from sae.experiment.model_groups import MODEL_ORDER, model_label, model_sort_key

AGREES, DISAGREES, INCONCLUSIVE = "agrees", "disagrees", "inconclusive"
# Outcomes of a single comparison besides agrees / disagrees
OVERLAP, SPLIT, FEW, MISSING = "overlap", "seeds split", "too few paired seeds", "missing"
PAIRED_MIN_SEEDS = 2
C6_TOLERANCE = 0.10  # decoder-only ≈ both: within 10% of both's held-out MSE on every paired seed
COMPARISON_RULE = (
    "Models trained independently (spread rule): A beats B on a lower-is-better metric when mean_A + std_A < "
    "mean_B − std_B (agrees); the reverse gap, mean_B + std_B < mean_A − std_A, is a disagreement; otherwise the "
    "spreads overlap (inconclusive). Higher-is-better metrics mirror the rule. std is the sample standard deviation "
    "over the seeds that recorded the value; with a single seed it is 0 and the verdict rests on that one seed."
)
PAIRED_RULE = (
    f"Runs paired by seed (paired rule: two sampling modes of one trained model, fine-tune modes of one pretrained "
    f"model, or two models' runs of the same seed on the same held-out images): A beats B when A is better than B on "
    f"every seed both recorded, with at least {PAIRED_MIN_SEEDS} such seeds (agrees); B better on every paired seed "
    f"is a disagreement; seeds that split, or fewer than {PAIRED_MIN_SEEDS} paired seeds, are inconclusive."
)
APPROX_RULE = (
    f"A ≈ B (approximate rule): |A − B| ≤ {C6_TOLERANCE:.0%} of B on every paired seed (agrees), more than that on "
    f"every paired seed (disagrees), otherwise inconclusive; at least {PAIRED_MIN_SEEDS} paired seeds."
)
COMBINING_RULE = (
    "A part made of several comparisons disagrees if any comparison disagrees, agrees if all agree, and is otherwise "
    "inconclusive (missing inputs are named); a claim disagrees if any part disagrees, agrees if all parts agree, and "
    "is otherwise inconclusive."
)
METRIC_LABELS = {
    "fid": "FID",
    "bce": "BCE",
    "mse": "MSE",
    "fid_hybrid": "hybrid FID",
    "fid_prior": "prior FID",
    "dci_disentanglement": "DCI disentanglement",
    "mig": "MIG",
    "irs": "IRS",
    "heldout_mse_x1000": "held-out MSE×1000",
    "advantage": "held-out minus seen advantage",
}


def format_spread(spread: Spread) -> str:
    """Mean to 4 significant digits, std to 2."""
    return f"{spread.mean:.4g} ± {spread.std:.2g}"


def _metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


@dataclass(frozen=True)
class Comparison:
    """One test of "A beats B" (``test`` "spread" or "paired") or "A ≈ B" (``test`` "approx"): ``outcome`` is agrees,
    disagrees, overlap, seeds split, too few paired seeds or missing (then ``missing`` names what). Paired tests keep
    their seeds' values in ``pairs`` (seed, A, B)."""

    a_label: str
    b_label: str
    metric: str
    a: Spread | None
    b: Spread | None
    lower_is_better: bool
    outcome: str
    missing: tuple[str, ...] = ()
    test: str = "spread"
    pairs: tuple[tuple[int, float, float], ...] = ()

    def describe(self) -> str:
        metric = _metric_label(self.metric)
        if self.outcome == MISSING:
            return f"{self.a_label} vs {self.b_label} on {metric}: missing {', '.join(self.missing)}"
        direction = "lower" if self.lower_is_better else "higher"
        if self.test == "spread":
            a, b = self.spreads()
            return (
                f"{self.a_label} {format_spread(a)} vs {self.b_label} {format_spread(b)} "
                f"on {metric} ({direction} is better): {self.outcome}"
            )
        seeds = ", ".join(f"seed {s}: {a:.4g} vs {b:.4g}" for s, a, b in self.pairs)
        relation = f"≈ within {C6_TOLERANCE:.0%}" if self.test == "approx" else f"paired, {direction} is better"
        return f"{self.a_label} vs {self.b_label} on {metric} ({relation}; {seeds}): {self.outcome}"

    def spreads(self) -> tuple[Spread, Spread]:
        """Both spreads of a comparison that has an outcome (a missing one lacks at least one)."""
        if self.a is None or self.b is None:
            raise ValueError(
                f"{self.a_label} vs {self.b_label} on {self.metric}: no spreads to compare "
                f"(missing {', '.join(self.missing) or 'a spread'})"
            )
        return self.a, self.b

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a_label,
            "b": self.b_label,
            "metric": self.metric,
            "lower_is_better": self.lower_is_better,
            "test": self.test,
            "a_spread": self.a.to_json() if self.a else None,
            "b_spread": self.b.to_json() if self.b else None,
            "outcome": self.outcome,
            "missing": list(self.missing),
            "pairs": [list(p) for p in self.pairs],
        }


@dataclass(frozen=True)
class Verdict:
    outcome: str  # agrees, disagrees, inconclusive or not testable
    reason: str | None = None  # why it is inconclusive or not testable

    def __str__(self) -> str:
        return f"{self.outcome} ({self.reason})" if self.reason else self.outcome


@dataclass(frozen=True)
class Part:
    """One part of a claim: its rule, its verdict and the comparisons behind it."""

    name: str
    rule: str
    verdict: Verdict
    comparisons: tuple[Comparison, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rule": self.rule,
            "verdict": str(self.verdict),
            "comparisons": [c.to_json() for c in self.comparisons],
        }


@dataclass(frozen=True)
class ClaimResult:
    claim_id: str
    statement: str
    rule: str
    numbers: str
    verdict: Verdict
    comparisons: tuple[Comparison, ...] = ()
    single_seed: tuple[str, ...] = ()  # the inputs measured on one seed only
    details: tuple[str, ...] = ()  # extra lines for the report (C5's positions and unused variables)
    quote: str = ""  # the paper's words
    parts: tuple[Part, ...] = ()
    rule_verdict: Verdict | None = None  # what the rule gave when the gate made the claim not testable

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.claim_id,
            "statement": self.statement,
            "quote": self.quote,
            "rule": self.rule,
            "numbers": self.numbers,
            "verdict": str(self.verdict),
            "outcome": self.verdict.outcome,
            "reason": self.verdict.reason,
            "rule_verdict": str(self.rule_verdict) if self.rule_verdict else None,
            "single_seed": list(self.single_seed),
            "parts": [p.to_json() for p in self.parts],
            "comparisons": [c.to_json() for c in self.comparisons],
            "details": list(self.details),
        }


# --- single comparisons --------------------------------------------------------------------------------------------


def beats(a: Spread, b: Spread, *, lower_is_better: bool) -> bool:
    """A beats B by more than both spreads."""
    if lower_is_better:
        return a.mean + a.std < b.mean - b.std
    return a.mean - a.std > b.mean + b.std


def compare(a: Spread, b: Spread, *, lower_is_better: bool) -> str:
    """The spread rule for "A beats B": agrees, disagrees or overlap."""
    if beats(a, b, lower_is_better=lower_is_better):
        return AGREES
    if beats(b, a, lower_is_better=lower_is_better):
        return DISAGREES
    return OVERLAP


def compare_paired(pairs: Sequence[tuple[int, float, float]], *, lower_is_better: bool) -> str:
    """The paired rule for "A beats B" over (seed, A, B): agrees, disagrees, seeds split or too few paired seeds."""
    if len(pairs) < PAIRED_MIN_SEEDS:
        return FEW
    better = [(a < b) if lower_is_better else (a > b) for _, a, b in pairs]
    worse = [(b < a) if lower_is_better else (b > a) for _, a, b in pairs]
    if all(better):
        return AGREES
    if all(worse):
        return DISAGREES
    return SPLIT


def _compare_approx(pairs: Sequence[tuple[int, float, float]]) -> str:
    if len(pairs) < PAIRED_MIN_SEEDS:
        return FEW
    within = [abs(a - b) <= C6_TOLERANCE * abs(b) for _, a, b in pairs]
    if all(within):
        return AGREES
    if not any(within):
        return DISAGREES
    return SPLIT


def _missing_comparison(
    a_label: str, b_label: str, metric: str, lower_is_better: bool, missing: Sequence[str], test: str
) -> Comparison:
    return Comparison(a_label, b_label, metric, None, None, lower_is_better, MISSING, tuple(missing), test)


def _comparison(
    a_label: str,
    a: Spread | None,
    b_label: str,
    b: Spread | None,
    metric: str,
    lower_is_better: bool,
    missing: Sequence[str] = (),
) -> Comparison:
    """A spread-rule comparison (missing when either spread is absent)."""
    if a is None or b is None:
        missing = tuple(missing) or tuple(
            f"{label} {_metric_label(metric)}" for label, s in ((a_label, a), (b_label, b)) if s is None
        )
        return _missing_comparison(a_label, b_label, metric, lower_is_better, missing, "spread")
    return Comparison(a_label, b_label, metric, a, b, lower_is_better, compare(a, b, lower_is_better=lower_is_better))


def _paired(
    a_label: str,
    a: Mapping[int, float] | None,
    b_label: str,
    b: Mapping[int, float] | None,
    metric: str,
    lower_is_better: bool,
    missing: Sequence[str],
    test: str = "paired",
) -> Comparison:
    """A paired comparison over the seeds both ``a`` and ``b`` (seed -> value) recorded."""
    if not a or not b:
        return _missing_comparison(a_label, b_label, metric, lower_is_better, missing, test)
    pairs = tuple((s, float(a[s]), float(b[s])) for s in sorted(set(a) & set(b)))
    outcome = _compare_approx(pairs) if test == "approx" else compare_paired(pairs, lower_is_better=lower_is_better)
    spread = (lambda k: Spread.of(p[k] for p in pairs)) if pairs else (lambda k: None)
    return Comparison(a_label, b_label, metric, spread(1), spread(2), lower_is_better, outcome, (), test, pairs)


# --- combining -----------------------------------------------------------------------------------------------------


def _missing_sort_key(name: str) -> tuple[tuple[int, str], str]:
    return model_sort_key(name.split(" ", 1)[0]), name


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


REASONS = {OVERLAP: "spreads overlap", SPLIT: "seeds split", FEW: f"fewer than {PAIRED_MIN_SEEDS} paired seeds"}


def _inconclusive(missing: Iterable[str], reasons: Iterable[str]) -> Verdict:
    missing = sorted(set(missing), key=_missing_sort_key)
    text = (["missing: " + ", ".join(missing)] if missing else []) + _unique(reasons)
    return Verdict(INCONCLUSIVE, "; ".join(text) or None)


def combine(comparisons: Sequence[Comparison]) -> Verdict:
    """Disagrees if any comparison disagrees, agrees if all agree, otherwise inconclusive (naming what is missing)."""
    outcomes = [c.outcome for c in comparisons]
    if DISAGREES in outcomes:
        return Verdict(DISAGREES)
    if outcomes and all(o == AGREES for o in outcomes):
        return Verdict(AGREES)
    return _inconclusive(
        (m for c in comparisons for m in c.missing), (REASONS[o] for o in (OVERLAP, SPLIT, FEW) if o in outcomes)
    )


def _reasons_of(verdicts: Iterable[Verdict]) -> tuple[list[str], list[str]]:
    missing, reasons = [], []
    for v in verdicts:
        for piece in (v.reason or "").split("; "):
            if piece.startswith("missing: "):
                missing += piece[len("missing: ") :].split(", ")
            elif piece:
                reasons.append(piece)
    return missing, reasons


def combine_parts(parts: Sequence[Part]) -> Verdict:
    """Disagrees if any part disagrees, agrees if every part agrees, otherwise inconclusive with the parts' reasons."""
    verdicts = [p.verdict for p in parts]
    if any(v.outcome == DISAGREES for v in verdicts):
        return Verdict(DISAGREES)
    if verdicts and all(v.outcome == AGREES for v in verdicts):
        return Verdict(AGREES)
    return _inconclusive(*_reasons_of(v for v in verdicts if v.outcome != AGREES))


def _single_seed(comparisons: Sequence[Comparison]) -> tuple[str, ...]:
    labels = [
        label
        for c in comparisons
        if c.test == "spread"
        for label, s in ((c.a_label, c.a), (c.b_label, c.b))
        if s and s.n == 1
    ]
    return tuple(_unique(labels))


def _tally(comparisons: Sequence[Comparison]) -> str:
    counts = {o: sum(c.outcome == o for c in comparisons) for o in (AGREES, OVERLAP, SPLIT, FEW, DISAGREES, MISSING)}
    text = f"{len(comparisons)} comparisons: " + ", ".join(f"{n} {o}" for o, n in counts.items() if n)
    against = [c.describe() for c in comparisons if c.outcome == DISAGREES]
    return text + (" (disagreeing: " + "; ".join(against) + ")" if against else "")


def _all_models(summary: ExperimentSummary) -> list[str]:
    return sorted(set(MODEL_ORDER) | set(summary.models), key=model_sort_key)


def _missing_inputs(
    values: Mapping[str, Mapping[str, Any]], models: Sequence[str], metric: str, where: str = ""
) -> list[str]:
    """What a comparison lacks: a model with no cells at all, or a value no seed of a model recorded."""
    label = _metric_label(metric)
    return [
        m + where if m not in values else f"{m} {label}{where}" for m in models if not values.get(m, {}).get(metric)
    ]


def _model_pairs(
    summary: ExperimentSummary,
    subjects: Sequence[str],
    others: Sequence[str],
    metrics: Sequence[str],
    lower_is_better: bool,
) -> list[Comparison]:
    """Every subject against every other model (not itself), once per metric, by the spread rule."""
    found: dict[tuple[str, str, str], Comparison] = {}
    for metric in metrics:
        for a in subjects:
            for b in others:
                if a == b or (a, b, metric) in found:
                    continue
                found[(a, b, metric)] = _comparison(
                    model_label(a),
                    summary.models.get(a, {}).get(metric),
                    model_label(b),
                    summary.models.get(b, {}).get(metric),
                    metric,
                    lower_is_better,
                    _missing_inputs(summary.models, (a, b), metric),
                )
    return list(found.values())


def _metric_numbers(summary: ExperimentSummary, models: Sequence[str], metrics: Sequence[str]) -> str:
    parts = []
    for metric in metrics:
        values = [
            f"{model_label(m)} {format_spread(spread)}"
            for m in models
            if m in summary.models and (spread := summary.models[m].get(metric)) is not None
        ]
        parts.append(f"{_metric_label(metric)}: " + (", ".join(values) if values else "none"))
    return "; ".join(parts)


def _part(name: str, rule: str, comparisons: Sequence[Comparison]) -> Part:
    return Part(name, rule, combine(comparisons), tuple(comparisons))


def _parts_text(parts: Sequence[Part]) -> str:
    return "Parts: " + "; ".join(f"{p.name} {p.verdict}" for p in parts)
