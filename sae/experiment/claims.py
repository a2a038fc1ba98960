"""The paper's claims (C1-C6) as rules over the aggregated numbers, each giving one verdict; this module applies
the gate and evaluates them in order. The rules are in ``sae.experiment.claims_outputs`` (C1-C3: reconstructions
and samples) and ``sae.experiment.claims_latents`` (C4-C6: disentanglement, factor order, extrapolation).

Each rule tests what the paper says (its words are in ``ClaimResult.quote``) and no more. Three kinds of comparison:

* Between models trained independently, the spread rule (``COMPARISON_RULE``): A beats B on a lower-is-better metric
  when mean_A + std_A < mean_B - std_B; the reverse gap is a disagreement; otherwise the spreads overlap.
* Between runs paired by seed (two sampling modes of one trained model, fine-tune modes of one pretrained model, the
  same seed's held-out set), the paired rule (``PAIRED_RULE``): A beats B when it is better on every paired seed, with
  at least ``PAIRED_MIN_SEEDS`` of them; B better on every paired seed is a disagreement; seeds that split are
  inconclusive.
* "About the same" (``APPROX_RULE``): within ``C6_TOLERANCE`` of each other, relative, on every paired seed.

A claim is made of parts (C1 (a)-(c), ...); a part made of several comparisons disagrees if any disagrees, agrees if
all agree, and is otherwise inconclusive, naming what is missing. A claim disagrees if a part disagrees, agrees if all
its parts agree (C4: see its rule), and is otherwise inconclusive. A disagreement is kept even when inputs are missing.

Given gate lines (``sae.experiment.gate``), a claim whose subject models (``CLAIM_SUBJECTS``), or the models that
make the training budget adequate (SAE-12 and AE), are below the gate is "not testable (below the gate: ...)"; what
its rule gives on the numbers is kept as ``rule_verdict``, for the record only. Without gate lines every claim is
evaluated by its rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from sae.experiment.aggregate import ExperimentSummary
from sae.experiment.claims_latents import claim_c4, claim_c5, claim_c6
from sae.experiment.claims_outputs import claim_c1, claim_c2, claim_c3
from sae.experiment.comparisons import ClaimResult, Verdict, _unique
from sae.experiment.gate import GATE_MODELS, NOT_TESTABLE, GateLine, below_gate

__all__ = ["NOT_TESTABLE", "CLAIM_SUBJECTS", "gate_verdict", "evaluate_claims"]

# The models each claim is about (the paper names VLAE-12 in C1, C3, C4 and C6): below the gate, not testable.
CLAIM_SUBJECTS = {
    "C1": ("sae12", "vlae12"),
    "C2": ("sae12",),
    "C3": ("sae12", "vlae12"),
    "C4": ("sae12", "vlae12"),
    "C5": ("sae12",),
    "C6": ("sae12", "vlae12"),
}


def gate_verdict(result: ClaimResult, gate_lines: Sequence[GateLine] | None) -> ClaimResult:
    """The claim as evaluated, or "not testable (below the gate: ...)" when a subject model's gate line, or SAE-12's or
    AE's (the budget), did not pass, keeping the rule's outcome as ``rule_verdict``; unchanged without gate lines."""
    subjects = _unique(CLAIM_SUBJECTS.get(result.claim_id, ()) + GATE_MODELS)
    below = below_gate(subjects, gate_lines or ())
    if not below:
        return result
    return replace(
        result, verdict=Verdict(NOT_TESTABLE, "below the gate: " + ", ".join(below)), rule_verdict=result.verdict
    )


def evaluate_claims(summary: ExperimentSummary, gate_lines: Sequence[GateLine] | None = None) -> list[ClaimResult]:
    """C1-C6 in order; with ``gate_lines``, a claim about a model below the gate is not testable."""
    return [
        gate_verdict(claim(summary), gate_lines)
        for claim in (claim_c1, claim_c2, claim_c3, claim_c4, claim_c5, claim_c6)
    ]
