"""Input checks shared by the disentanglement metrics, and the conversion of their results to JSON-ready values.

Codes are float arrays ``[N, D]``; factors are integer-coded arrays ``[N, K]`` (one class index per factor). A factor
that takes a single value in the training factors is skipped by every metric (:func:`_varying_factors`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sae.core.errors import SAEError


class MetricInputError(SAEError, ValueError):
    """Codes or factors a metric cannot be computed on (a shape, a dtype, a NaN, no varying factor), or a metric
    setting out of range; the message names the array or argument."""


def _check_matrix_shape(arr: np.ndarray, name: str, axes: str, column: str) -> None:
    """``arr`` is 2-D with at least 2 rows (samples) and 1 column (``column``: what a column holds)."""
    if arr.ndim != 2:
        raise MetricInputError(
            f"{name} must be a 2-D array of shape {axes}; got {arr.ndim}-D array of shape {arr.shape}"
        )
    if arr.shape[0] < 2:
        raise MetricInputError(f"{name} needs at least 2 rows (samples); got shape {arr.shape}")
    if arr.shape[1] < 1:
        raise MetricInputError(f"{name} needs at least 1 column ({column}); got shape {arr.shape}")


def _as_codes(x: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MetricInputError(f"{name} must be a numeric array of shape [N, D]: {exc}") from exc
    _check_matrix_shape(arr, name, "[N, D]", "code dimension")
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise MetricInputError(f"{name} contains {bad} NaN or infinite value(s)")
    return arr


def _as_factors(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.integer)
        or np.issubdtype(arr.dtype, np.bool_)
        or np.issubdtype(arr.dtype, np.floating)
    ):
        raise MetricInputError(f"{name} must be an integer-coded array of shape [N, K]; got dtype {arr.dtype}")
    _check_matrix_shape(arr, name, "[N, K]", "factor")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise MetricInputError(f"{name} contains NaN or infinite values")
        if not np.all(arr == np.rint(arr)):
            raise MetricInputError(
                f"{name} must hold integer class indices per factor (e.g. np.unique(..., return_inverse=True) "
                f"per column); got non-integer values"
            )
    return arr.astype(np.int64)


def _check_pair(codes: Any, factors: Any, codes_name: str, factors_name: str) -> tuple[np.ndarray, np.ndarray]:
    c = _as_codes(codes, codes_name)
    f = _as_factors(factors, factors_name)
    if c.shape[0] != f.shape[0]:
        raise MetricInputError(
            f"{codes_name} has {c.shape[0]} rows but {factors_name} has {f.shape[0]}; "
            "they must describe the same samples"
        )
    return c, f


def _check_train_test(
    codes_train: Any, factors_train: Any, codes_test: Any, factors_test: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    ctr, ftr = _check_pair(codes_train, factors_train, "codes_train", "factors_train")
    cte, fte = _check_pair(codes_test, factors_test, "codes_test", "factors_test")
    if cte.shape[1] != ctr.shape[1]:
        raise MetricInputError(f"codes_test has {cte.shape[1]} columns but codes_train has {ctr.shape[1]}")
    if fte.shape[1] != ftr.shape[1]:
        raise MetricInputError(f"factors_test has {fte.shape[1]} columns but factors_train has {ftr.shape[1]}")
    return ctr, ftr, cte, fte


def _varying_factors(factors_train: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """(columns with more than one value in the training factors, the single-valued columns the metric skips).

    A factor that never changes (RFD's shape and size) carries nothing to predict or to disentangle; kept, it would
    inflate informativeness and modularity and deflate SAP."""
    varying = np.array([np.unique(col).size > 1 for col in factors_train.T])
    if not varying.any():
        raise MetricInputError(
            f"every factor takes a single value in factors_train (shape {factors_train.shape}); "
            "there is nothing to measure"
        )
    return np.flatnonzero(varying), [int(k) for k in np.flatnonzero(~varying)]


def _skip_note(kept: np.ndarray, skipped: list[int]) -> dict[str, Any]:
    return {"factors_used": [int(k) for k in kept], "skipped_factors": skipped}


def _floats(x: Any) -> Any:
    """numpy scalars/arrays -> Python floats / nested lists (JSON-serialisable)."""
    return np.asarray(x, dtype=np.float64).tolist()


def _standardise(train: np.ndarray, test: np.ndarray | None = None):
    """``train`` and ``test`` scaled by ``train``'s column means and standard deviations (1 for a constant column)."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    tr = (train - mean) / std
    te = None if test is None else (test - mean) / std
    return tr, te
