"""Modularity and explicitness (Ridgeway & Mozer, NeurIPS 2018)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .information import discrete_mutual_info, histogram_discretize
from .inputs import _check_train_test, _floats, _skip_note, _standardise, _varying_factors


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
