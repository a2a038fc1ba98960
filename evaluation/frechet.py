"""The Fréchet distance between two Gaussians, and Gaussian statistics of features accumulated batch by batch.

d² = |mu1 - mu2|² + Tr(S1 + S2 - 2 (S1 S2)^½)  (Dowson & Landau 1982; Heusel et al. 2017 for FID).

This is the one implementation every distance of the harness uses: FID (Inception features), FD-factor and
FD-randconv differ only in the features. It computes what pytorch-fid's ``calculate_frechet_distance`` does, but takes
the trace of the matrix square root from symmetric eigendecompositions instead of ``scipy.linalg.sqrtm``: measured
side by side at 2048 dimensions, 18.7 s instead of 207 s on 2 shared cores, traces equal to about 1e-15.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["GaussianStats", "FeatureMoments", "frechet_distance"]


@dataclass(frozen=True)
class GaussianStats:
    """Mean [F] and covariance [F, F] of ``count`` feature vectors."""

    mean: np.ndarray
    cov: np.ndarray
    count: int

    def __post_init__(self) -> None:
        mean, cov = np.asarray(self.mean, np.float64), np.asarray(self.cov, np.float64)
        if mean.ndim != 1 or cov.shape != (mean.size, mean.size):
            raise ValueError(f"GaussianStats: mean must be [F] and cov [F, F], got {mean.shape} and {cov.shape}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "cov", cov)

    @classmethod
    def of(cls, features: np.ndarray) -> GaussianStats:
        """Statistics of a feature matrix [N, F] (unbiased covariance, as np.cov and pytorch-fid)."""
        moments = FeatureMoments()
        moments.update(features)
        return moments.stats()

    def save(self, path: Path) -> None:
        np.savez(path, mean=self.mean, cov=self.cov, count=np.int64(self.count))

    @classmethod
    def load(cls, path: Path) -> GaussianStats:
        with np.load(path) as f:
            return cls(f["mean"], f["cov"], int(f["count"]))


class FeatureMoments:
    """Running sums for mean and covariance, so features never have to be held all at once."""

    def __init__(self) -> None:
        self.count = 0
        self._shift: np.ndarray | None = None  # first batch's mean: keeps the sums well conditioned
        self._sum: np.ndarray | None = None
        self._outer: np.ndarray | None = None

    def update(self, features: np.ndarray) -> None:
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"features must be a non-empty [N, F] array, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("features contain NaN or infinite values")
        if self._shift is None:
            self._shift = x.mean(axis=0)
            self._sum = np.zeros(x.shape[1])
            self._outer = np.zeros((x.shape[1], x.shape[1]))
        elif x.shape[1] != self._shift.size:
            raise ValueError(f"features have {x.shape[1]} columns, earlier batches had {self._shift.size}")
        centred = x - self._shift
        self._sum += centred.sum(axis=0)
        self._outer += centred.T @ centred
        self.count += x.shape[0]

    def stats(self) -> GaussianStats:
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 feature vectors, got {self.count}")
        shift, total, outer = self._shift, self._sum, self._outer
        if shift is None or total is None or outer is None:  # the first update sets all three, with the count
            raise ValueError("FeatureMoments has a count but no sums")
        mean_centred = total / self.count
        cov = (outer - self.count * np.outer(mean_centred, mean_centred)) / (self.count - 1)
        return GaussianStats(shift + mean_centred, (cov + cov.T) / 2, self.count)


def trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """Tr((A B)^½) for symmetric positive semi-definite A and B.

    (A B)^½ is similar to (A^½ B A^½)^½, which is symmetric, so the trace is the sum of the square roots of the
    eigenvalues of A^½ B A^½. Two ``eigh`` calls replace pytorch-fid's ``sqrtm`` of the non-symmetric product: the
    same value to about 1e-15 relative, an order of magnitude faster at 2048 dimensions, and no complex round-off.
    """
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    inner = root_a @ cov_b @ root_a
    eigenvalues = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """Fréchet distance (squared, as FID is reported) between N(a.mean, a.cov) and N(b.mean, b.cov)."""
    if a.mean.shape != b.mean.shape:
        raise ValueError(f"feature dimensions differ: {a.mean.size} vs {b.mean.size}")
    diff = a.mean - b.mean
    value = float(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2.0 * trace_sqrt_product(a.cov, b.cov))
    return max(value, 0.0)
