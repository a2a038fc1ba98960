"""Histograms, mutual information and entropies of discretised codes and factors (MIG, modularity, IRS)."""

from __future__ import annotations

import numpy as np

from .inputs import MetricInputError


def histogram_discretize(x: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Discretise every column of ``x`` [N, D] into ``num_bins`` equal-width bins over its own [min, max].

    Exactly disentanglement_lib's ``_histogram_discretize``: ``np.digitize(x, np.histogram(x, num_bins)[1][:-1])``,
    giving bin labels 1..num_bins (the maximum falls in the last bin). A constant column becomes a single bin.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise MetricInputError(f"x must be 2-D [N, D]; got shape {x.shape}")
    if int(num_bins) < 1:
        raise MetricInputError(f"num_bins must be >= 1; got {num_bins}")
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
