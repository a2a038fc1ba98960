"""DCI: disentanglement, completeness and informativeness (Eastwood & Williams, ICLR 2018)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .inputs import MetricInputError, _check_train_test, _floats, _skip_note, _standardise, _varying_factors

_EPS_ENTROPY = 1e-11  # added to importances before the entropy, as disentanglement_lib does


def _normalised_entropy_rows(p: np.ndarray) -> np.ndarray:
    """1 - H(row)/log(#cols) of every row, with disentanglement_lib's +1e-11 and renormalisation.

    (disentanglement_lib: ``1 - scipy.stats.entropy(M.T + 1e-11, base=M.shape[1])``; scipy renormalises each row.)
    With a single column the distribution is trivially concentrated and the score is 1.
    """
    p = np.asarray(p, dtype=np.float64) + _EPS_ENTROPY
    n_cols = p.shape[1]
    if n_cols == 1:
        return np.ones(p.shape[0])
    q = p / p.sum(axis=1, keepdims=True)
    h = -np.sum(q * np.log(q), axis=1) / np.log(n_cols)
    return 1.0 - h


def _dci_scores(importance: np.ndarray) -> dict[str, Any]:
    """Disentanglement and completeness of an importance matrix R [D, K] (Eastwood & Williams 2018)."""
    r = np.asarray(importance, dtype=np.float64)
    d_per_code = _normalised_entropy_rows(r)  # rows = codes, over factors
    c_per_factor = _normalised_entropy_rows(r.T)  # rows = factors, over codes
    weights = r if r.sum() > 0 else np.ones_like(r)
    rho_code = weights.sum(axis=1) / weights.sum()
    rho_factor = weights.sum(axis=0) / weights.sum()
    return {
        "disentanglement": float(np.sum(d_per_code * rho_code)),
        "completeness": float(np.sum(c_per_factor * rho_factor)),
        "disentanglement_per_code": _floats(d_per_code),
        "completeness_per_factor": _floats(c_per_factor),
        "code_weights": _floats(rho_code),
    }


def _gbt_one_factor(x_tr, y_tr, x_te, y_te, seed):
    from sklearn.ensemble import GradientBoostingClassifier

    classes = np.unique(y_tr)
    if classes.size < 2:
        # GradientBoostingClassifier refuses a single class; every code is irrelevant, prediction is that class.
        return np.zeros(x_tr.shape[1]), 1.0, float(np.mean(y_te == classes[0]))
    model = GradientBoostingClassifier(random_state=seed)  # scikit-learn defaults: 100 trees, depth 3, lr 0.1
    model.fit(x_tr, y_tr)
    imp = np.abs(model.feature_importances_)
    acc_tr = float(np.mean(model.predict(x_tr) == y_tr))
    acc_te = float(np.mean(model.predict(x_te) == y_te))
    return imp, acc_tr, acc_te


def _majority_accuracy(y_tr: np.ndarray, y: np.ndarray) -> float:
    vals, counts = np.unique(y_tr, return_counts=True)
    return float(np.mean(y == vals[np.argmax(counts)]))


def dci(
    codes_train: Any,
    factors_train: Any,
    codes_test: Any,
    factors_test: Any,
    regressor: str = "gbt",
    seed: int = 0,
    n_jobs: int | None = None,
) -> dict[str, Any]:
    """DCI: Disentanglement, Completeness, Informativeness (Eastwood & Williams, ICLR 2018).

    Definition used. For every factor k a predictor of factor k from all D code dimensions is fitted on the
    training split; its relative feature importances form column k of the importance matrix R [D, K]
    (R_dk >= 0).

    - Disentanglement of code d: D_d = 1 - H_K(P_d.), P_dk = R_dk / sum_k' R_dk', H_K the entropy with log base K.
      Overall disentanglement: sum_d rho_d D_d with rho_d = sum_k R_dk / sum_dk R_dk.
    - Completeness of factor k: C_k = 1 - H_D(P~_.k), P~_dk = R_dk / sum_d' R_d'k; overall: sum_k rho~_k C_k with
      rho~_k = sum_d R_dk / sum_dk R_dk (disentanglement_lib weights completeness by factor importance the same way).
    - Informativeness: the predictors' mean score over factors, on the training and on the test split.

    As in disentanglement_lib, 1e-11 is added to R before the entropies and an all-zero R is weighted uniformly.

    Regressors:

    - ``"gbt"`` (the authors' setting, disentanglement_lib's ``compute_importance_gbt``): one
      ``sklearn.ensemble.GradientBoostingClassifier()`` with scikit-learn defaults (100 trees of depth 3,
      learning rate 0.1) per factor on the raw codes, R_.k = ``feature_importances_`` (impurity-based, summing to
      1), informativeness = classification accuracy (mean over factors). ``random_state=seed`` only fixes
      tie-breaking. Slow: 2-5 min for 10k codes (12 dims) x 6 3D-Shapes-sized factors on one core
      (measured 285 s on a loaded 2-core machine); ``n_jobs`` (joblib) runs factors in parallel.
    - ``"lasso"`` (fast linear variant for tests/CI; not comparable with published numbers): codes standardised
      with the training mean/std, factor indices standardised likewise, one ``sklearn.linear_model.Lasso(alpha=0.01)``
      per factor, R_.k = |coefficients|, informativeness = R^2 (coefficient of determination; can be negative on
      the test split).

    Returns a dict with ``disentanglement``, ``completeness``, ``informativeness_train``, ``informativeness_test``,
    ``informativeness_kind`` ("accuracy" or "r2"), ``informativeness_chance_train/test`` (majority-class accuracy
    for "gbt", 0.0 for R^2), per-code / per-factor values, ``importance_matrix`` [D][K] and ``regressor``.
    """
    ctr, ftr, cte, fte = _check_train_test(codes_train, factors_train, codes_test, factors_test)
    if regressor not in ("gbt", "lasso"):
        raise MetricInputError(f"regressor must be 'gbt' or 'lasso'; got {regressor!r}")
    kept, skipped = _varying_factors(ftr)
    ftr, fte = ftr[:, kept], fte[:, kept]
    num_codes, num_factors = ctr.shape[1], ftr.shape[1]
    importance = np.zeros((num_codes, num_factors))
    inf_tr = np.zeros(num_factors)
    inf_te = np.zeros(num_factors)
    chance_tr = np.zeros(num_factors)
    chance_te = np.zeros(num_factors)

    if regressor == "gbt":
        jobs = [(ctr, ftr[:, k], cte, fte[:, k], seed) for k in range(num_factors)]
        if n_jobs is not None and n_jobs != 1 and num_factors > 1:
            from joblib import Parallel, delayed

            results = Parallel(n_jobs=n_jobs)(delayed(_gbt_one_factor)(*j) for j in jobs)
        else:
            results = [_gbt_one_factor(*j) for j in jobs]
        for k, (imp, a_tr, a_te) in enumerate(results):
            importance[:, k] = imp
            inf_tr[k], inf_te[k] = a_tr, a_te
            chance_tr[k] = _majority_accuracy(ftr[:, k], ftr[:, k])
            chance_te[k] = _majority_accuracy(ftr[:, k], fte[:, k])
        kind = "accuracy"
    else:
        from sklearn.linear_model import Lasso

        x_tr, x_te = _standardise(ctr, cte)
        y_tr, y_te = _standardise(ftr.astype(np.float64), fte.astype(np.float64))
        for k in range(num_factors):
            model = Lasso(alpha=0.01, random_state=seed)
            model.fit(x_tr, y_tr[:, k])
            importance[:, k] = np.abs(model.coef_)
            inf_tr[k] = _r2(y_tr[:, k], model.predict(x_tr))
            inf_te[k] = _r2(y_te[:, k], model.predict(x_te))
        kind = "r2"

    out: dict[str, Any] = {"metric": "dci", "regressor": regressor}
    out.update(_dci_scores(importance))
    out.update(
        {
            "informativeness_train": float(inf_tr.mean()),
            "informativeness_test": float(inf_te.mean()),
            "informativeness_kind": kind,
            "informativeness_train_per_factor": _floats(inf_tr),
            "informativeness_test_per_factor": _floats(inf_te),
            "informativeness_chance_train": float(chance_tr.mean()),
            "informativeness_chance_test": float(chance_te.mean()),
            "importance_matrix": _floats(importance),
            "num_train": int(ctr.shape[0]),
            "num_test": int(cte.shape[0]),
            **_skip_note(kept, skipped),
        }
    )
    return out


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss_res = float(np.sum((y - pred) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0.0:
        return 1.0 if ss_res == 0.0 else 0.0
    return 1.0 - ss_res / ss_tot
