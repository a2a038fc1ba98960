"""Cells -> the numbers the report and the claims use: mean ± std over seeds per model, per arm and fine-tune mode,
and the variable-by-factor importance of DCI (the paper's figure 4); beside each spread, the per-seed values it was
taken over (paired tests compare runs seed by seed).

The std is the sample standard deviation (ddof 1) over seeds; with one seed it is 0 and ``Spread.n`` says so.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sae.experiment.cell_results import FINE_TUNE_MODES, MAIN_METRIC_KEYS, CellFileError, CellResult, Extrapolation
from sae.experiment.model_groups import model_sort_key

__all__ = ["Spread", "VariableImportance", "ExperimentSummary", "variable_importance", "summarise"]


@dataclass(frozen=True)
class Spread:
    """Mean and sample std (ddof 1; 0 for a single value) of one number over ``n`` seeds."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        array = np.asarray(list(values), dtype=np.float64)
        if array.size == 0:
            raise ValueError("a spread needs at least one value")
        std = float(array.std(ddof=1)) if array.size > 1 else 0.0
        return cls(mean=float(array.mean()), std=std, n=int(array.size))

    def to_json(self) -> dict[str, float | int]:
        return {"mean": self.mean, "std": self.std, "n": self.n}


@dataclass(frozen=True)
class VariableImportance:
    """DCI importance summed over each variable's dims and divided by the total, mean over ``seeds``.

    ``shares[v][f]`` is variable v's share of all importance that goes to factor f; ``shares`` sums to 1.
    """

    factor_names: tuple[str, ...]
    seeds: tuple[int, ...]
    shares: tuple[tuple[float, ...], ...]  # [variables][factors], mean over seeds
    per_seed: tuple[tuple[tuple[float, ...], ...], ...]  # the same matrix for each seed, in the order of ``seeds``

    @property
    def variable_shares(self) -> tuple[float, ...]:
        """Each variable's share of the total importance."""
        return tuple(float(sum(row)) for row in self.shares)

    def top_factor(self, variable: int) -> str:
        """The factor a variable's importance mostly goes to."""
        return self.factor_names[int(np.argmax(self.shares[variable]))]

    def carrier_of(self, factor: str) -> int:
        """The variable that carries most of a factor's importance."""
        column = self.factor_names.index(factor)
        return int(np.argmax([row[column] for row in self.shares]))


@dataclass(frozen=True)
class ExperimentSummary:
    models: dict[str, dict[str, Spread | None]]  # main cells: model -> metric -> spread (None: no seed recorded it)
    has_prior: dict[str, bool]
    seeds: dict[str, tuple[int, ...]]  # main cells' seeds per model
    extrapolation: dict[str, dict[str, dict[str, Spread]]]  # arm -> model -> measured mode -> held-out MSE x1000
    extrapolation_seeds: dict[str, dict[str, tuple[int, ...]]]  # arm -> model -> seeds of its cells
    importance: dict[str, VariableImportance]  # models whose main cells carry a DCI importance matrix
    # The values behind the spreads, seed by seed (only the seeds that recorded them):
    per_seed: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)  # model -> metric -> seed -> value
    # arm -> model -> mode -> seed -> held-out MSE x1000
    extrapolation_per_seed: dict[str, dict[str, dict[str, dict[int, float]]]] = field(default_factory=dict)
    # arm -> model -> mode -> seed -> MSE x1000 on values seen in pretraining (the in-distribution control)
    seen_per_seed: dict[str, dict[str, dict[str, dict[int, float]]]] = field(default_factory=dict)
    # model -> seed -> the decoder's image change per variable
    traversal_response: dict[str, dict[int, tuple[float, ...]]] = field(default_factory=dict)
    gate: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)  # model -> seed -> the cell's gate numbers


def _metrics_of(cell: CellResult) -> dict[str, float | None]:
    """A main cell's metrics (``read_cell`` requires them of every main cell)."""
    if cell.metrics is None:
        raise CellFileError(f"{cell.path}: a main cell without its 'metrics' object")
    return cell.metrics


def _extrapolation_of(cell: CellResult) -> Extrapolation:
    """An extrapolation cell's arm and numbers (``read_cell`` requires them of every extrapolation cell)."""
    if cell.extrapolation is None:
        raise CellFileError(f"{cell.path}: an extrapolation cell without its 'extrapolation' object")
    return cell.extrapolation


def _variable_matrix(cell: CellResult) -> np.ndarray:
    importance = np.asarray(cell.dci_importance, dtype=np.float64)
    variables = np.asarray(cell.variable_of_dim)
    if (importance < 0).any():
        raise CellFileError(f"{cell.path}: 'dci_importance' holds negative values")
    total = importance.sum()
    if total <= 0:
        raise CellFileError(f"{cell.path}: 'dci_importance' sums to {total:g}; it must be positive")
    matrix = np.zeros((int(variables.max()) + 1, importance.shape[1]))
    np.add.at(matrix, variables, importance)
    return matrix / total


def variable_importance(cells: Sequence[CellResult]) -> VariableImportance | None:
    """The mean variable-by-factor importance over the cells (one model's seeds) that carry a DCI matrix."""
    cells = sorted((c for c in cells if c.dci_importance is not None), key=lambda c: c.seed)
    if not cells:
        return None
    matrices = [_variable_matrix(c) for c in cells]
    first = cells[0]
    for c, m in zip(cells[1:], matrices[1:]):
        if c.factor_names != first.factor_names or m.shape != matrices[0].shape:
            raise CellFileError(f"{c.path}: its factors or variables differ from those of {first.path}")
    if first.factor_names is None:
        raise CellFileError(f"{first.path}: 'dci_importance' without the 'factor_names' of its columns")
    as_tuple = lambda m: tuple(tuple(float(v) for v in row) for row in m)  # noqa: E731
    return VariableImportance(
        factor_names=tuple(first.factor_names),
        seeds=tuple(c.seed for c in cells),
        shares=as_tuple(np.mean(matrices, axis=0)),
        per_seed=tuple(as_tuple(m) for m in matrices),
    )


def _check_consistent_prior(cells: Sequence[CellResult]) -> bool:
    for c in cells[1:]:
        if c.has_prior != cells[0].has_prior:
            raise CellFileError(
                f"{c.path}: has_prior is {c.has_prior} but {cells[0].path} says {cells[0].has_prior}"
                f" for the same model {c.model!r}"
            )
    return cells[0].has_prior


def _spread_of_recorded(values: Iterable[float | None]) -> Spread | None:
    """The spread over the seeds that recorded a value (its n says how many); None if none did."""
    recorded = [v for v in values if v is not None]
    return Spread.of(recorded) if recorded else None


def summarise(cells: Sequence[CellResult]) -> ExperimentSummary:
    """Group the cells by model (main) and by arm and model (extrapolation) and take the spreads over seeds."""
    main: dict[str, list[CellResult]] = defaultdict(list)
    arms: dict[str, dict[str, list[CellResult]]] = defaultdict(lambda: defaultdict(list))
    for c in cells:
        if c.kind == "main":
            main[c.model].append(c)
        else:
            arms[_extrapolation_of(c).arm][c.model].append(c)
    models, has_prior, seeds, importance = {}, {}, {}, {}
    for model in sorted(main, key=model_sort_key):
        group = sorted(main[model], key=lambda c: c.seed)
        has_prior[model] = _check_consistent_prior(group)
        seeds[model] = tuple(c.seed for c in group)
        models[model] = {key: _spread_of_recorded(_metrics_of(c)[key] for c in group) for key in MAIN_METRIC_KEYS}
        found = variable_importance(group)
        if found is not None:
            importance[model] = found
    extrapolation = {
        arm: {
            model: {
                mode: spread
                for mode in FINE_TUNE_MODES
                if (
                    spread := _spread_of_recorded(
                        _extrapolation_of(c).heldout_mse_x1000.get(mode) for c in by_model[model]
                    )
                )
                is not None
            }
            for model in sorted(by_model, key=model_sort_key)
        }
        for arm, by_model in sorted(arms.items())
    }
    extrapolation_seeds = {
        arm: {model: tuple(sorted(c.seed for c in by_model[model])) for model in table}
        for arm, table in extrapolation.items()
        for by_model in (arms[arm],)
    }
    per_seed = {
        model: {
            key: {c.seed: value for c in main[model] if (value := _metrics_of(c)[key]) is not None}
            for key in MAIN_METRIC_KEYS
        }
        for model in models
    }

    def by_seed(attribute: str) -> dict[str, dict[str, dict[str, dict[int, float]]]]:
        return {
            arm: {
                model: {
                    mode: found
                    for mode in FINE_TUNE_MODES
                    if (
                        found := {
                            c.seed: getattr(c.extrapolation, attribute)[mode]
                            for c in by_model[model]
                            if mode in getattr(c.extrapolation, attribute)
                        }
                    )
                }
                for model in sorted(by_model, key=model_sort_key)
            }
            for arm, by_model in sorted(arms.items())
        }

    traversal = {
        model: {c.seed: tuple(c.traversal_response) for c in main[model] if c.traversal_response is not None}
        for model in models
    }
    gate = {model: {c.seed: c.gate for c in main[model] if c.gate is not None} for model in models}
    return ExperimentSummary(
        models=models,
        has_prior=has_prior,
        seeds=seeds,
        extrapolation=extrapolation,
        extrapolation_seeds=extrapolation_seeds,
        importance=importance,
        per_seed=per_seed,
        extrapolation_per_seed=by_seed("heldout_mse_x1000"),
        seen_per_seed=by_seed("seen_mse_x1000"),
        traversal_response={m: t for m, t in traversal.items() if t},
        gate={m: g for m, g in gate.items() if g},
    )
