"""SAP: Separated Attribute Predictability (Kumar et al., ICLR 2018), classification variant."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .inputs import _check_train_test, _floats, _skip_note, _varying_factors


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
