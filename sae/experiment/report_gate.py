"""Each model's gate line for the report, from what its cells carry.

* Cells with a ``gate`` object (the gate's numbers on the cell's own test images): the model's line has the mean over
  its seeds of BCE, MSE, the oracle's BCE and MSE and the floor, and per factor the lowest test accuracy of any seed;
  it passes only when every seed carried the gate and the line passes (``GateLine.passed``).
* Procedural cells without it: a line from the cells' test BCE and MSE against the oracle's and the floor's figures
  measured once on procedural images (``gate.PROCEDURAL_ORACLE_FIGURES``, not the cells' own test images), with the
  per-factor accuracy unknown. Unknown accuracy does not pass, so these lines never pass.
* Cells of other data without it: no line (the gate was not measured); the claims follow their rules.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sae.experiment.aggregate import ExperimentSummary
from sae.experiment.gate import PROCEDURAL_ORACLE_FIGURES, GateLine

__all__ = ["MEASURED", "BCE_ONLY", "NOT_MEASURED", "ModelGate", "model_gates"]

MEASURED, BCE_ONLY, NOT_MEASURED = "measured", "BCE only", "not measured"


@dataclass(frozen=True)
class ModelGate:
    model: str
    source: str  # MEASURED, BCE_ONLY or NOT_MEASURED
    line: GateLine | None
    seeds: tuple[int, ...]  # the seeds the line is taken over
    all_seeds: bool = True  # every seed of the model carried the gate's numbers (MEASURED only)

    @property
    def passed(self) -> bool:
        return self.line is not None and self.all_seeds and self.line.passed

    @property
    def claim_line(self) -> GateLine | None:
        """The line the claims are gated on: a measured line that misses a seed does not pass."""
        if self.line is None or self.all_seeds:
            return self.line
        return replace(self.line, accuracy={})

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "source": self.source,
            "seeds": list(self.seeds),
            "all_seeds": self.all_seeds,
            "passed": self.passed,
            "line": self.line.to_json() if self.line else None,
        }


def _measured(model: str, by_seed: dict[int, dict]) -> GateLine:
    rows = [by_seed[s] for s in sorted(by_seed)]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("bce", "mse", "oracle_bce", "oracle_mse", "floor_bce")}
    factors = sorted({f for r in rows for f in r["accuracy"]})
    accuracy = {f: min(r["accuracy"][f] if f in r["accuracy"] else 0.0 for r in rows) for f in factors}
    return GateLine(
        model, mean["bce"], mean["mse"], mean["oracle_bce"], mean["oracle_mse"], mean["floor_bce"], accuracy
    )


def model_gates(summary: ExperimentSummary, *, procedural: bool) -> list[ModelGate]:
    """One entry per model with main cells, in the summary's order."""
    found = []
    for model, seeds in summary.seeds.items():
        carried = summary.gate.get(model, {})
        bce, mse = summary.models[model].get("bce"), summary.models[model].get("mse")
        if carried:
            found.append(
                ModelGate(
                    model,
                    MEASURED,
                    _measured(model, carried),
                    tuple(sorted(carried)),
                    all_seeds=set(carried) == set(seeds),
                )
            )
        elif procedural and bce is not None and mse is not None:
            line = GateLine(
                model,
                bce.mean,
                mse.mean,
                PROCEDURAL_ORACLE_FIGURES["oracle_bce"],
                PROCEDURAL_ORACLE_FIGURES["oracle_mse"],
                PROCEDURAL_ORACLE_FIGURES["floor_bce"],
                {},
            )
            found.append(ModelGate(model, BCE_ONLY, line, tuple(sorted(summary.per_seed[model]["bce"]))))
        else:
            found.append(ModelGate(model, NOT_MEASURED, None, ()))
    return found
