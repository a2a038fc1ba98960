"""The Fréchet distance between two Gaussians, and Gaussian statistics of features accumulated batch by batch.

d² = |mu1 - mu2|² + Tr(S1 + S2 - 2 (S1 S2)^½)  (Dowson & Landau 1982; Heusel et al. 2017 for FID).

This is the one implementation every distance of the harness uses: FID (Inception features), FD-factor and
FD-randconv differ only in the features. It follows pytorch-fid's ``calculate_frechet_distance``:
``scipy.linalg.sqrtm``, a small ridge on both covariances when the square root is not finite, and the imaginary part
of the square root dropped when its diagonal is numerical noise. Cost: one 2048x2048 ``sqrtm`` (FID) took 20-200 s on
2 shared CPU cores, so the harness computes exactly three per distance (reconstructions, hybrid samples, floor).
"""
from __future__ import annotations

import warnings
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
    def of(cls, features: np.ndarray) -> "GaussianStats":
        """Statistics of a feature matrix [N, F] (unbiased covariance, as np.cov and pytorch-fid)."""
        moments = FeatureMoments()
        moments.update(features)
        return moments.stats()

    def save(self, path: Path) -> None:
        np.savez(path, mean=self.mean, cov=self.cov, count=np.int64(self.count))

    @classmethod
    def load(cls, path: Path) -> "GaussianStats":
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
        mean_centred = self._sum / self.count
        cov = (self._outer - self.count * np.outer(mean_centred, mean_centred)) / (self.count - 1)
        return GaussianStats(self._shift + mean_centred, (cov + cov.T) / 2, self.count)


def frechet_distance(a: GaussianStats, b: GaussianStats, eps: float = 1e-6) -> float:
    """Fréchet distance (squared, as FID is reported) between N(a.mean, a.cov) and N(b.mean, b.cov)."""
    from scipy import linalg

    if a.mean.shape != b.mean.shape:
        raise ValueError(f"feature dimensions differ: {a.mean.size} vs {b.mean.size}")
    diff = a.mean - b.mean
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)  # singular products are handled just below
        covmean = linalg.sqrtm(a.cov @ b.cov)
        if not np.isfinite(covmean).all():
            offset = np.eye(a.cov.shape[0]) * eps
            covmean = linalg.sqrtm((a.cov + offset) @ (b.cov + offset))
    if not np.isfinite(covmean).all():
        raise ValueError("the matrix square root of the covariance product is not finite, even with a ridge of "
                         f"{eps:g}: the features are degenerate")
    if np.iscomplexobj(covmean):
        # only the trace enters the distance: pytorch-fid's test on the diagonal (off-diagonal noise is common when
        # the covariances are singular, as with fewer images than feature dimensions)
        imag = float(np.max(np.abs(np.diagonal(covmean).imag)))
        if imag > 1e-3:
            raise ValueError(f"the matrix square root of the covariance product has an imaginary diagonal component "
                             f"of {imag:.3g}: the covariances are too degenerate for a Fréchet distance")
        covmean = covmean.real
    value = float(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2.0 * np.trace(covmean))
    return max(value, 0.0)
