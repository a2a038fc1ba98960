"""Disentanglement metrics written from the papers' definitions.

Every metric takes latent codes as a float array ``[N, D]`` and the ground-truth factors as an integer-coded
array ``[N, K]`` (one class index per factor, e.g. 3D-Shapes ``floor_hue`` as 0..9) and returns a plain dict of
Python floats, ints, strings and (nested) lists, so the result can be passed straight to ``json.dumps``.

The definitions follow the papers and, where the papers leave a choice open, disentanglement_lib
(Locatello et al., ICML 2019, ``disentanglement_lib/evaluation/metrics``), which is what the SAE authors ran
(Leeb et al., ICLR 2023: 10,000 training and 5,000 test points; DCI with gradient-boosted trees with scikit-learn
defaults, MIG with 20-bin histograms, IRS with a 0.99 quantile). Each docstring states the exact definition used and
where it deviates from disentanglement_lib (only for degenerate inputs such as constant factors). A factor that takes
a single value in the training factors (RFD's shape and size) is skipped by every metric: results list the factor
columns used (``factors_used``; per-factor values follow that order) and the ``skipped_factors``; MIG keeps one
entry per factor, None where skipped.

Only numpy is imported at module level; scikit-learn (and joblib, which ships with it) are imported inside the
functions that need them, so ``import clients`` works without them. Install them with the ``eval`` extra.

Functions: :func:`dci`, :func:`mig`, :func:`irs`, :func:`modularity_explicitness`, :func:`sap`,
:func:`evaluate_all`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = [
    "dci",
    "mig",
    "irs",
    "modularity_explicitness",
    "sap",
    "evaluate_all",
    "histogram_discretize",
    "discrete_mutual_info",
    "discrete_entropy",
]

_EPS_ENTROPY = 1e-11  # added to importances before the entropy, as disentanglement_lib does


# --------------------------------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------------------------------


def _as_codes(x: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array of shape [N, D]: {exc}") from exc
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape [N, D]; got {arr.ndim}-D array of shape {arr.shape}")
    if arr.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 rows (samples); got shape {arr.shape}")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} needs at least 1 column (code dimension); got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")
    return arr


def _as_factors(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.integer)
        or np.issubdtype(arr.dtype, np.bool_)
        or np.issubdtype(arr.dtype, np.floating)
    ):
        raise ValueError(f"{name} must be an integer-coded array of shape [N, K]; got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape [N, K]; got {arr.ndim}-D array of shape {arr.shape}")
    if arr.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 rows (samples); got shape {arr.shape}")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} needs at least 1 column (factor); got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite values")
        if not np.all(arr == np.rint(arr)):
            raise ValueError(
                f"{name} must hold integer class indices per factor (e.g. np.unique(..., return_inverse=True) "
                f"per column); got non-integer values"
            )
    return arr.astype(np.int64)


def _check_pair(codes: Any, factors: Any, codes_name: str, factors_name: str) -> tuple[np.ndarray, np.ndarray]:
    c = _as_codes(codes, codes_name)
    f = _as_factors(factors, factors_name)
    if c.shape[0] != f.shape[0]:
        raise ValueError(
            f"{codes_name} has {c.shape[0]} rows but {factors_name} has {f.shape[0]}; they must describe the same samples"
        )
    return c, f


def _check_train_test(
    codes_train: Any, factors_train: Any, codes_test: Any, factors_test: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    ctr, ftr = _check_pair(codes_train, factors_train, "codes_train", "factors_train")
    cte, fte = _check_pair(codes_test, factors_test, "codes_test", "factors_test")
    if cte.shape[1] != ctr.shape[1]:
        raise ValueError(f"codes_test has {cte.shape[1]} columns but codes_train has {ctr.shape[1]}")
    if fte.shape[1] != ftr.shape[1]:
        raise ValueError(f"factors_test has {fte.shape[1]} columns but factors_train has {ftr.shape[1]}")
    return ctr, ftr, cte, fte


def _varying_factors(factors_train: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """(columns with more than one value in the training factors, the single-valued columns the metric skips).

    A factor that never changes (RFD's shape and size) carries nothing to predict or to disentangle; kept, it would
    inflate informativeness and modularity and deflate SAP."""
    varying = np.array([np.unique(col).size > 1 for col in factors_train.T])
    if not varying.any():
        raise ValueError(f"every factor takes a single value in factors_train (shape {factors_train.shape}); "
                         "there is nothing to measure")
    return np.flatnonzero(varying), [int(k) for k in np.flatnonzero(~varying)]


def _skip_note(kept: np.ndarray, skipped: list[int]) -> dict[str, Any]:
    return {"factors_used": [int(k) for k in kept], "skipped_factors": skipped}


def _floats(x: Any) -> Any:
    """numpy scalars/arrays -> Python floats / nested lists (JSON-serialisable)."""
    return np.asarray(x, dtype=np.float64).tolist()


# --------------------------------------------------------------------------------------------------------------------
# Shared helpers (histograms, mutual information, entropies)
# --------------------------------------------------------------------------------------------------------------------


def histogram_discretize(x: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Discretise every column of ``x`` [N, D] into ``num_bins`` equal-width bins over its own [min, max].

    Exactly disentanglement_lib's ``_histogram_discretize``: ``np.digitize(x, np.histogram(x, num_bins)[1][:-1])``,
    giving bin labels 1..num_bins (the maximum falls in the last bin). A constant column becomes a single bin.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D [N, D]; got shape {x.shape}")
    if int(num_bins) < 1:
        raise ValueError(f"num_bins must be >= 1; got {num_bins}")
    out = np.empty(x.shape, dtype=np.int64)
    for j in range(x.shape[1]):
        edges = np.histogram(x[:, j], bins=int(num_bins))[1]
        out[:, j] = np.digitize(x[:, j], edges[:-1])
    return out


def _relabel(a: np.ndarray) -> tuple[np.ndarray, int]:
    _, inv = np.unique(a, return_inverse=True)
    inv = inv.reshape(-1)
    return inv, int(inv.max()) + 1


def _mi_from_labels(a: np.ndarray, na: int, b: np.ndarray, nb: int) -> float:
    """Mutual information (nats) of two label vectors from their contingency table (= sklearn mutual_info_score)."""
    n = a.shape[0]
    joint = np.bincount(a * nb + b, minlength=na * nb).reshape(na, nb).astype(np.float64)
    pa = joint.sum(axis=1)
    pb = joint.sum(axis=0)
    nz = joint > 0
    # sum_ij p_ij log(p_ij / (p_i p_j)) with p = counts / n
    val = np.sum(joint[nz] / n * (np.log(joint[nz]) + np.log(n) - np.log(np.outer(pa, pb)[nz])))
    return max(float(val), 0.0)


def discrete_mutual_info(codes_discrete: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Matrix ``[D, K]`` of mutual information (nats) between discretised codes and factors.

    Identical (to floating point) to disentanglement_lib's ``discrete_mutual_info``, which calls
    ``sklearn.metrics.mutual_info_score(factor_k, code_d)`` for every pair; computed here from contingency tables.
    """
    cd = np.asarray(codes_discrete)
    f = np.asarray(factors)
    codes_l = [_relabel(cd[:, i]) for i in range(cd.shape[1])]
    facts_l = [_relabel(f[:, k]) for k in range(f.shape[1])]
    m = np.zeros((cd.shape[1], f.shape[1]))
    for i, (a, na) in enumerate(codes_l):
        for k, (b, nb) in enumerate(facts_l):
            m[i, k] = _mi_from_labels(a, na, b, nb)
    return m


def discrete_entropy(factors: np.ndarray) -> np.ndarray:
    """Entropy (nats) of every column of an integer array ``[N, K]`` (= mutual_info_score(y, y))."""
    f = np.asarray(factors)
    h = np.zeros(f.shape[1])
    for k in range(f.shape[1]):
        _, counts = np.unique(f[:, k], return_counts=True)
        p = counts / counts.sum()
        h[k] = float(-np.sum(p * np.log(p)))
    return h


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


def _standardise(train: np.ndarray, test: np.ndarray | None = None):
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    tr = (train - mean) / std
    te = None if test is None else (test - mean) / std
    return tr, te


# --------------------------------------------------------------------------------------------------------------------
# DCI
# --------------------------------------------------------------------------------------------------------------------


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
        raise ValueError(f"regressor must be 'gbt' or 'lasso'; got {regressor!r}")
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


# --------------------------------------------------------------------------------------------------------------------
# MIG
# --------------------------------------------------------------------------------------------------------------------


def mig(codes: Any, factors: Any, num_bins: int = 20) -> dict[str, Any]:
    """Mutual Information Gap (Chen et al., "Isolating Sources of Disentanglement in VAEs", NeurIPS 2018).

    Definition used (disentanglement_lib's ``discrete_mig``): every code dimension is discretised into
    ``num_bins`` (default 20) equal-width bins over its own range (:func:`histogram_discretize`); I(z_d; v_k) is the
    plug-in mutual information of the discretised code and factor k (equal to ``sklearn.metrics.mutual_info_score``);
    H(v_k) is the empirical factor entropy. Then

        MIG = 1/K * sum_k ( I(z_(1); v_k) - I(z_(2); v_k) ) / H(v_k),

    with z_(1), z_(2) the code dimensions of largest and second-largest MI with v_k.

    Degenerate inputs (disentanglement_lib would return NaN): a factor that is constant in ``factors`` has H = 0 and
    is left out of the mean (listed in ``skipped_factors``); with a single code dimension the second-largest MI is
    taken as 0.

    Returns ``mig``, ``mig_per_factor`` (NaN -> None for skipped factors), ``mutual_information`` [D][K] (nats),
    ``factor_entropy`` [K] (nats), ``num_bins``, ``skipped_factors``.
    """
    c, f = _check_pair(codes, factors, "codes", "factors")
    if int(num_bins) < 2:
        raise ValueError(f"num_bins must be >= 2; got {num_bins}")
    m = discrete_mutual_info(histogram_discretize(c, num_bins), f)
    h = discrete_entropy(f)
    sorted_m = np.sort(m, axis=0)[::-1]
    second = sorted_m[1] if m.shape[0] > 1 else np.zeros(m.shape[1])
    valid = h > 0
    per_factor = np.full(m.shape[1], np.nan)
    per_factor[valid] = (sorted_m[0, valid] - second[valid]) / h[valid]
    score = float(np.mean(per_factor[valid])) if valid.any() else 0.0
    return {
        "metric": "mig",
        "mig": score,
        "mig_per_factor": [None if np.isnan(v) else float(v) for v in per_factor],
        "mutual_information": _floats(m),
        "factor_entropy": _floats(h),
        "num_bins": int(num_bins),
        "skipped_factors": [int(k) for k in np.flatnonzero(~valid)],
        "num_samples": int(c.shape[0]),
    }


# --------------------------------------------------------------------------------------------------------------------
# IRS
# --------------------------------------------------------------------------------------------------------------------


def irs(codes: Any, factors: Any, diff_quantile: float = 0.99, factor_bins: int | None = 20) -> dict[str, Any]:
    """Interventional Robustness Score (Suter et al., "Robustly Disentangled Causal Mechanisms", ICML 2019).

    Definition used (disentanglement_lib's ``irs.scalable_disentanglement_score``, the paper's scalable
    estimate from observational samples with every factor treated as the intervened one):

    - Factors are first discretised like disentanglement_lib does (20 equal-width bins per factor,
      ``factor_bins``; for integer factors with <= 20 values this is only a relabelling; ``None`` skips it).
      Code dimensions with zero variance are dropped ("active" dims only).
    - For code d, MAX_d = max_n |z_nd - mean_n z_nd| (normaliser).
    - For factor k and each of its values v: within the samples with v_k = v, the ``diff_quantile`` (0.99)
      percentile over samples of |z_nd - E[z_d | v_k = v]|; EMPIDA_dk is the mean of these over the values v.
    - IRS matrix: 1 - EMPIDA_dk / MAX_d; per-dimension score D_d = max_k IRS_dk (parent = argmax);
      IRS = average of D_d weighted by MAX_d (plain mean if all MAX_d are 0). If no dimension is active, IRS = 0.

    Returns ``irs``, ``num_active_dims``, ``active_dims``, ``disentanglement_scores`` and ``parents`` (per active
    dim), ``irs_matrix`` [D_active][K], ``max_deviations``, ``diff_quantile``.
    """
    c, f = _check_pair(codes, factors, "codes", "factors")
    if not 0.0 <= float(diff_quantile) <= 1.0:
        raise ValueError(f"diff_quantile must be in [0, 1]; got {diff_quantile}")
    kept, skipped = _varying_factors(f)
    f = f[:, kept]
    gen = histogram_discretize(f.astype(np.float64), factor_bins) if factor_bins is not None else f
    active = np.flatnonzero(c.var(axis=0) > 0.0)
    base = {"metric": "irs", "diff_quantile": float(diff_quantile), "num_active_dims": int(active.size),
            "active_dims": [int(i) for i in active], **_skip_note(kept, skipped)}
    if active.size == 0:
        base.update({"irs": 0.0, "disentanglement_scores": [], "parents": [], "irs_matrix": [],
                     "max_deviations": []})
        return base
    z = c[:, active]
    max_dev = np.max(np.abs(z - z.mean(axis=0)), axis=0)
    num_gen = gen.shape[1]
    cum = np.zeros((z.shape[1], num_gen))
    for k in range(num_gen):
        values = np.unique(gen[:, k])
        for v in values:
            zs = z[gen[:, k] == v]
            diffs = np.abs(zs - zs.mean(axis=0))
            cum[:, k] += np.percentile(diffs, q=float(diff_quantile) * 100.0, axis=0)
        cum[:, k] /= values.size
    irs_matrix = 1.0 - cum / max_dev[:, None]
    scores = irs_matrix.max(axis=1)
    avg = float(np.average(scores, weights=max_dev)) if max_dev.sum() > 0 else float(np.mean(scores))
    base.update(
        {
            "irs": avg,
            "disentanglement_scores": _floats(scores),
            "parents": [int(p) for p in irs_matrix.argmax(axis=1)],
            "irs_matrix": _floats(irs_matrix),
            "max_deviations": _floats(max_dev),
        }
    )
    return base


# --------------------------------------------------------------------------------------------------------------------
# Modularity and explicitness
# --------------------------------------------------------------------------------------------------------------------


def _explicitness_one_factor(x_tr, y_tr, x_te, y_te, seed):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.multiclass import OneVsRestClassifier

    classes = np.unique(y_tr)
    if classes.size < 2:
        return float("nan"), float("nan")
    clf = OneVsRestClassifier(LogisticRegression(solver="liblinear", random_state=seed))
    clf.fit(x_tr, y_tr)
    res = []
    for x, y in ((x_tr, y_tr), (x_te, y_te)):
        proba = clf.predict_proba(x)
        aucs = []
        for j, cls in enumerate(clf.classes_):
            target = (y == cls).astype(int)
            if 0 < target.sum() < target.size:
                aucs.append(roc_auc_score(target, proba[:, j]))
        res.append(float(np.mean(aucs)) if aucs else float("nan"))
    return res[0], res[1]


def modularity_explicitness(
    codes_train: Any,
    factors_train: Any,
    codes_test: Any,
    factors_test: Any,
    num_bins: int = 20,
    seed: int = 0,
) -> dict[str, Any]:
    """Modularity and explicitness (Ridgeway & Mozer, "Learning Deep Disentangled Embeddings with the F-Statistic
    Loss", NeurIPS 2018), as implemented in disentanglement_lib's ``modularity_explicitness``.

    Modularity (training split): m_dk = I(z_d; v_k) with codes discretised into ``num_bins`` (20) equal-width bins
    (as in :func:`mig`). For code d with theta_d = max_k m_dk:
    delta_d = sum_{k != argmax} m_dk^2 / (theta_d^2 (K - 1)), modularity_d = 1 - delta_d (0 if theta_d = 0;
    1 if K = 1); modularity = mean over codes d.

    Explicitness: codes standardised with the training mean/std; for every factor a one-vs-rest logistic regression
    (``OneVsRestClassifier(LogisticRegression(solver="liblinear"))``, C = 1, i.e. the scikit-learn < 0.22 default
    that disentanglement_lib ran) is fitted on the training split; explicitness of the factor is the mean over its
    classes of the one-vs-rest ROC-AUC of the predicted class probabilities; the score is the mean over factors, on
    the training and on the test split. Classes absent from a split (only one label in the column) are left out of
    that split's mean; test-only classes are counted as negatives for every trained class.

    Returns ``modularity``, ``modularity_per_code``, ``explicitness_train``, ``explicitness_test``, the per-factor
    explicitness values and ``mutual_information`` [D][K] (nats).
    """
    ctr, ftr, cte, fte = _check_train_test(codes_train, factors_train, codes_test, factors_test)
    kept, skipped = _varying_factors(ftr)
    ftr, fte = ftr[:, kept], fte[:, kept]
    m = discrete_mutual_info(histogram_discretize(ctr, num_bins), ftr)
    sq = np.square(m)
    theta = sq.max(axis=1)
    num_factors = m.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        if num_factors > 1:
            delta = (sq.sum(axis=1) - theta) / (theta * (num_factors - 1.0))
        else:
            delta = np.zeros_like(theta)
        mod = 1.0 - delta
    mod[theta == 0.0] = 0.0

    x_tr, x_te = _standardise(ctr, cte)
    e_tr = np.zeros(num_factors)
    e_te = np.zeros(num_factors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in range(num_factors):
            e_tr[k], e_te[k] = _explicitness_one_factor(x_tr, ftr[:, k], x_te, fte[:, k], seed)
    return {
        "metric": "modularity_explicitness",
        "modularity": float(np.mean(mod)),
        "modularity_per_code": _floats(mod),
        "explicitness_train": float(np.nanmean(e_tr)) if np.isfinite(e_tr).any() else float("nan"),
        "explicitness_test": float(np.nanmean(e_te)) if np.isfinite(e_te).any() else float("nan"),
        "explicitness_train_per_factor": [None if np.isnan(v) else float(v) for v in e_tr],
        "explicitness_test_per_factor": [None if np.isnan(v) else float(v) for v in e_te],
        "mutual_information": _floats(m),
        "num_bins": int(num_bins),
        **_skip_note(kept, skipped),
    }


# --------------------------------------------------------------------------------------------------------------------
# SAP
# --------------------------------------------------------------------------------------------------------------------


def sap(
    codes_train: Any,
    factors_train: Any,
    codes_test: Any,
    factors_test: Any,
    seed: int = 0,
) -> dict[str, Any]:
    """Separated Attribute Predictability (Kumar et al., "Variational Inference of Disentangled Latent Concepts from
    Unlabeled Observations", ICLR 2018), classification variant for discrete factors.

    Definition used (disentanglement_lib's ``sap_score`` with ``continuous_factors=False``): for every pair
    (code d, factor k) a linear classifier on the single raw code value, ``sklearn.svm.LinearSVC(C=0.01,
    class_weight="balanced")``, is fitted on the training split; S_dk is its plain accuracy on the test split.
    SAP = 1/K * sum_k (S_(1)k - S_(2)k), the mean over factors of the gap between the best and the second-best code.
    (Kumar et al. describe a single-threshold classifier scored by balanced accuracy; disentanglement_lib, which the
    published numbers come from, uses the above.) Single-valued factors are skipped; with a single code dimension
    the second-best score is taken as 0.

    Returns ``sap``, ``sap_per_factor`` and ``score_matrix`` [D][K].
    """
    ctr, ftr, cte, fte = _check_train_test(codes_train, factors_train, codes_test, factors_test)
    from sklearn.svm import LinearSVC

    kept, skipped = _varying_factors(ftr)
    ftr, fte = ftr[:, kept], fte[:, kept]

    num_codes, num_factors = ctr.shape[1], ftr.shape[1]
    s = np.zeros((num_codes, num_factors))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on 1-D fits is common and harmless here
        for k in range(num_factors):
            for d in range(num_codes):
                clf = LinearSVC(C=0.01, class_weight="balanced", random_state=seed)
                clf.fit(ctr[:, d : d + 1], ftr[:, k])
                s[d, k] = float(np.mean(clf.predict(cte[:, d : d + 1]) == fte[:, k]))
    srt = np.sort(s, axis=0)
    second = srt[-2] if num_codes > 1 else np.zeros(num_factors)
    gaps = srt[-1] - second
    return {
        "metric": "sap",
        "sap": float(np.mean(gaps)),
        "sap_per_factor": _floats(gaps),
        "score_matrix": _floats(s),
        **_skip_note(kept, skipped),
    }


# --------------------------------------------------------------------------------------------------------------------
# All together
# --------------------------------------------------------------------------------------------------------------------


def evaluate_all(
    codes_train: Any,
    factors_train: Any,
    codes_test: Any,
    factors_test: Any,
    fast: bool = False,
    seed: int = 0,
    n_jobs: int | None = None,
    num_bins: int = 20,
    diff_quantile: float = 0.99,
) -> dict[str, Any]:
    """Every metric of this module, as the SAE authors evaluated (10k train / 5k test points in the paper).

    DCI, modularity/explicitness and SAP use both splits; MIG and IRS use the training split (disentanglement_lib
    computes them on ``num_train`` points). ``fast=True`` replaces the gradient-boosted-tree DCI by the Lasso variant
    (``dci["regressor"]`` says which one ran). ``summary`` collects the headline numbers in one flat dict.
    """
    ctr, ftr, cte, fte = _check_train_test(codes_train, factors_train, codes_test, factors_test)
    res_dci = dci(ctr, ftr, cte, fte, regressor="lasso" if fast else "gbt", seed=seed, n_jobs=n_jobs)
    res_mig = mig(ctr, ftr, num_bins=num_bins)
    res_irs = irs(ctr, ftr, diff_quantile=diff_quantile)
    res_mod = modularity_explicitness(ctr, ftr, cte, fte, num_bins=num_bins, seed=seed)
    res_sap = sap(ctr, ftr, cte, fte, seed=seed)
    summary = {
        "dci_regressor": res_dci["regressor"],
        "dci_disentanglement": res_dci["disentanglement"],
        "dci_completeness": res_dci["completeness"],
        "dci_informativeness_test": res_dci["informativeness_test"],
        "mig": res_mig["mig"],
        "irs": res_irs["irs"],
        "modularity": res_mod["modularity"],
        "explicitness_test": res_mod["explicitness_test"],
        "sap": res_sap["sap"],
    }
    return {
        "fast": bool(fast),
        "num_train": int(ctr.shape[0]),
        "num_test": int(cte.shape[0]),
        "skipped_factors": res_dci["skipped_factors"],
        "summary": summary,
        "dci": res_dci,
        "mig": res_mig,
        "irs": res_irs,
        "modularity_explicitness": res_mod,
        "sap": res_sap,
    }
