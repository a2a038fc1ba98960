"""MIG: the Mutual Information Gap (Chen et al., NeurIPS 2018)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .information import discrete_entropy, discrete_mutual_info, histogram_discretize
from .inputs import MetricInputError, _check_pair, _floats


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
        raise MetricInputError(f"num_bins must be >= 2; got {num_bins}")
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
