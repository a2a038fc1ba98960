"""Feature extractors behind one interface, and a cache of the real data's reference statistics.

Reference statistics are keyed by the SHA1 of the reference images' bytes, the feature extractor's identity (which
names its weights) and the image count, so a cached file is reused only for exactly the same comparison. Each entry
also holds the statistics of the two halves of the reference set (alternate images): their Fréchet distance is the
real-vs-real floor that sampling alone gives at half the count, printed beside every score for scale.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from sae.core.atomic import atomic_write
from sae.evaluation.frechet import FeatureMoments, GaussianStats, frechet_distance

__all__ = ["FeatureExtractor", "ReferenceStats", "ReferenceStatsCache", "ReferenceAccumulator", "images_digest"]


class FeatureExtractor(Protocol):
    @property
    def name(self) -> str:
        """What the distance is called: "FID" only for the Inception network."""

    @property
    def identity(self) -> str:
        """Names the network and its weights, for cache keys and the report."""

    @property
    def dim(self) -> int:
        """The width of the features."""

    def features(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] -> float64 [N, dim]."""


def images_digest(batches: Iterable[np.ndarray]) -> str:
    """SHA1 over the dtypes, row shapes and bytes of array batches (images, then e.g. labels), in order."""
    digest = hashlib.sha1()
    for images in batches:
        images = np.ascontiguousarray(images)
        digest.update(repr((images.dtype.str, images.shape[1:])).encode())
        digest.update(images.tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class ReferenceStats:
    whole: GaussianStats
    half_a: GaussianStats
    half_b: GaussianStats

    def floor(self) -> float:
        """Fréchet distance between the two halves of the real reference images."""
        return frechet_distance(self.half_a, self.half_b)


class ReferenceAccumulator:
    """Moments of the whole reference set and of its alternate halves, fed batch by batch."""

    def __init__(self) -> None:
        self.whole, self.halves = FeatureMoments(), (FeatureMoments(), FeatureMoments())
        self._seen = 0

    def update(self, features: np.ndarray) -> None:
        self.whole.update(features)
        parity = (self._seen + np.arange(len(features))) % 2
        for half, moments in enumerate(self.halves):
            if np.any(parity == half):
                moments.update(features[parity == half])
        self._seen += len(features)

    def stats(self) -> ReferenceStats:
        return ReferenceStats(self.whole.stats(), self.halves[0].stats(), self.halves[1].stats())


class ReferenceStatsCache:
    """``DIR/<extractor name>-<key>.npz``; writes are atomic (temporary file, then rename)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @staticmethod
    def key(data_sha1: str, extractor_identity: str, count: int) -> str:
        return hashlib.sha1(f"{data_sha1}|{extractor_identity}|{count}".encode()).hexdigest()[:20]

    def path(self, extractor: FeatureExtractor, data_sha1: str, count: int) -> Path:
        safe_name = "".join(c if c.isalnum() or c in "-_" else "_" for c in extractor.name)
        return self.root / f"{safe_name}-{self.key(data_sha1, extractor.identity, count)}.npz"

    def load(self, extractor: FeatureExtractor, data_sha1: str, count: int) -> ReferenceStats | None:
        path = self.path(extractor, data_sha1, count)
        if not path.is_file():
            return None
        try:
            with np.load(path) as f:
                meta = json.loads(str(f["meta"]))
                if meta != _meta(extractor, data_sha1, count):
                    return None
                parts = [
                    GaussianStats(f[f"{p}_mean"], f[f"{p}_cov"], int(f[f"{p}_count"]))
                    for p in ("whole", "half_a", "half_b")
                ]
        except (OSError, ValueError, KeyError):
            return None  # a damaged cache entry is recomputed, not trusted
        return ReferenceStats(*parts)

    def save(self, extractor: FeatureExtractor, data_sha1: str, count: int, stats: ReferenceStats) -> Path:
        path = self.path(extractor, data_sha1, count)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray | np.int64] = {"meta": np.array(json.dumps(_meta(extractor, data_sha1, count)))}
        for prefix, part in (("whole", stats.whole), ("half_a", stats.half_a), ("half_b", stats.half_b)):
            arrays |= {f"{prefix}_mean": part.mean, f"{prefix}_cov": part.cov, f"{prefix}_count": np.int64(part.count)}
        with atomic_write(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        return path


def _meta(extractor: FeatureExtractor, data_sha1: str, count: int) -> dict:
    return {"extractor": extractor.identity, "data_sha1": data_sha1, "count": int(count)}
