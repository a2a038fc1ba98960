"""IRS: the Interventional Robustness Score (Suter et al., ICML 2019)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .information import histogram_discretize
from .inputs import MetricInputError, _check_pair, _floats, _skip_note, _varying_factors


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
        raise MetricInputError(f"diff_quantile must be in [0, 1]; got {diff_quantile}")
    kept, skipped = _varying_factors(f)
    f = f[:, kept]
    gen = histogram_discretize(f.astype(np.float64), factor_bins) if factor_bins is not None else f
    active = np.flatnonzero(c.var(axis=0) > 0.0)
    base = {
        "metric": "irs",
        "diff_quantile": float(diff_quantile),
        "num_active_dims": int(active.size),
        "active_dims": [int(i) for i in active],
        **_skip_note(kept, skipped),
    }
    if active.size == 0:
        base.update({"irs": 0.0, "disentanglement_scores": [], "parents": [], "irs_matrix": [], "max_deviations": []})
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
