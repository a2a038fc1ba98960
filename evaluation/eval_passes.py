"""The passes of `sae eval` over the server: the test images (reconstructed and encoded) and the generated samples,
each fed to every feature extractor of the Fréchet distances."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sae.clients.request_plans import part_seed
from sae.clients.triton_client import SAEClient
from sae.core.atomic import atomic_write
from sae.core.datasets import ImageSource, batches_in_order
from sae.core.draw import to_uint8
from sae.core.wire import to_float_images
from sae.evaluation.distances import (
    FeatureExtractor,
    ReferenceAccumulator,
    ReferenceStats,
    ReferenceStatsCache,
    images_digest,
)
from sae.evaluation.eval_config import EvalConfig
from sae.evaluation.factor_features import FactorClassifierConfig, FactorClassifierFeatures
from sae.evaluation.frechet import FeatureMoments
from sae.evaluation.inception import InceptionFeatures, InceptionFile
from sae.evaluation.randconv import RandConvFeatures

BCE_EPS = 1e-6  # reconstructions are clipped to [eps, 1 - eps] before the log


@dataclass
class Extractor:
    """One distance: its feature network, the reference rows it uses and what it has accumulated."""

    extractor: FeatureExtractor
    rows: np.ndarray  # sorted test rows of the real reference set
    data_sha1: str = ""
    reference: ReferenceStats | None = None
    reference_cached: bool = False
    pending: ReferenceAccumulator | None = None
    reconstructions: FeatureMoments = field(default_factory=FeatureMoments)
    samples: FeatureMoments = field(default_factory=FeatureMoments)
    prior_samples: FeatureMoments = field(default_factory=FeatureMoments)
    seconds: float = 0.0

    def features(self, images: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = self.extractor.features(images)
        self.seconds += time.perf_counter() - start
        return out


def subset_rows(rows: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` of ``rows`` chosen with ``seed`` (all of them when fewer), sorted."""
    if count >= len(rows):
        return np.sort(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, size=count, replace=False))


def read_in_order(source: ImageSource, rows: np.ndarray, batch_size: int):
    return (images for _, images in batches_in_order(source, rows, batch_size))


def factor_extractor(
    source: ImageSource, splits: dict[str, np.ndarray], cfg: EvalConfig, cache: Path, record: dict[str, Any]
) -> FactorClassifierFeatures:
    """Train the FD-factor classifier (or load it from the cache, keyed by its training data and settings)."""
    clf_config = FactorClassifierConfig(seed=cfg.seed)
    classifier_images = cfg.counts.classifier_images
    train_rows = subset_rows(splits["train"], classifier_images, cfg.seed + 1)
    heldout_rows = subset_rows(splits["val"], min(2_000, max(classifier_images // 4, 200)), cfg.seed + 2)
    images = np.concatenate(list(read_in_order(source, train_rows, cfg.batch_size)))
    factors = source.read_factors(train_rows)
    digest = images_digest([images, factors.astype(np.int64)])
    key = f"{digest[:16]}-{'x'.join(map(str, clf_config.hidden))}-{clf_config.max_iter}-{clf_config.seed}"
    path = cache / f"factor-classifier-{key}.npz"
    record["classifier_train_images"] = int(len(train_rows))
    if path.is_file():
        record["classifier_cached"] = True
        return FactorClassifierFeatures.load(path, clf_config)
    heldout = np.concatenate(list(read_in_order(source, heldout_rows, cfg.batch_size))) if len(heldout_rows) else None
    extractor = FactorClassifierFeatures.fit(
        images, factors, clf_config, heldout, source.read_factors(heldout_rows) if len(heldout_rows) else None
    )
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        extractor.save(f)
    record["classifier_cached"] = False
    return extractor


def bce_mse(images: np.ndarray, recon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: BCE summed over pixels and channels; MSE averaged over them (both on the [0, 1] scale)."""
    target = to_float_images(images, np.float64)
    p = np.clip(recon.astype(np.float64), BCE_EPS, 1.0 - BCE_EPS)
    bce = -(target * np.log(p) + (1.0 - target) * np.log1p(-p)).reshape(len(images), -1).sum(axis=1)
    mse = ((target - recon.astype(np.float64)) ** 2).reshape(len(images), -1).mean(axis=1)
    return bce, mse


@dataclass
class TestPass:
    """What one pass over the test images through the server yields."""

    bce: np.ndarray  # per image
    mse: np.ndarray  # per image
    latents: np.ndarray  # [N, D]
    factors: np.ndarray | None  # [N, K], None without ground truth
    examples: np.ndarray  # uint8 [2n, H, W, 3]: n test images spread over the split, then their reconstructions


def setup_extractors(
    source: ImageSource,
    splits: dict[str, np.ndarray],
    cfg: EvalConfig,
    test_rows: np.ndarray,
    inception: InceptionFile | None,
    cache: ReferenceStatsCache,
    factor_record: dict[str, Any],
) -> dict[str, Extractor]:
    """The distances to compute, each with its reference rows and, when cached, its reference statistics."""
    extractors = {"FD-randconv": Extractor(RandConvFeatures(seed=cfg.seed), test_rows)}
    if source.factor_sizes:
        extractors["FD-factor"] = Extractor(factor_extractor(source, splits, cfg, cache.root, factor_record), test_rows)
    if inception is not None:
        extractors["FID"] = Extractor(
            InceptionFeatures(inception), subset_rows(test_rows, cfg.counts.fid_images, cfg.seed + 3)
        )
    for ex in extractors.values():
        ex.data_sha1 = images_digest(read_in_order(source, ex.rows, cfg.batch_size))
        ex.reference = cache.load(ex.extractor, ex.data_sha1, len(ex.rows))
        ex.reference_cached = ex.reference is not None
        ex.pending = None if ex.reference_cached else ReferenceAccumulator()
    return extractors


def run_test_pass(
    client: SAEClient,
    source: ImageSource,
    test_rows: np.ndarray,
    cfg: EvalConfig,
    extractors: dict[str, Extractor],
    cache: ReferenceStatsCache,
) -> TestPass:
    """Reconstruct and encode the test images; feed real images and reconstructions to every extractor."""
    bce, mse, latents, factors, originals, recons = [], [], [], [], [], []
    example_rows = test_rows[np.unique(np.linspace(0, len(test_rows) - 1, 8).astype(int))]
    for rows, images in batches_in_order(source, test_rows, cfg.batch_size):
        recon = client.reconstruct(images)
        b, m = bce_mse(images, recon)
        bce.append(b)
        mse.append(m)
        latents.append(client.encode(images))
        if source.factor_sizes:
            factors.append(source.read_factors(rows))
        recon_u8 = to_uint8(recon)
        shown = np.isin(rows, example_rows, assume_unique=True)
        originals.append(images[shown])
        recons.append(recon_u8[shown])
        for ex in extractors.values():
            chosen = np.isin(rows, ex.rows, assume_unique=True)
            if chosen.any():
                ex.reconstructions.update(ex.features(recon_u8[chosen]))
                if ex.pending is not None:
                    ex.pending.update(ex.features(images[chosen]))
    for ex in extractors.values():
        if ex.pending is not None:
            ex.reference = ex.pending.stats()
            cache.save(ex.extractor, ex.data_sha1, len(ex.rows), ex.reference)
    examples = np.concatenate(originals + recons)
    return TestPass(
        np.concatenate(bce),
        np.concatenate(mse),
        np.concatenate(latents),
        np.concatenate(factors) if factors else None,
        examples,
    )


@dataclass
class SamplePass:
    """What one set of generated samples yields besides the extractors' moments."""

    first: np.ndarray  # uint8 [<=64, H, W, 3], for the figure
    count: int
    draw_mode: str = ""  # hybrid samples: the mode the server reported
    source_width: int = 0  # hybrid samples: SOURCE_INDEX's width (k per variable, D per dimension)


def run_sample_pass(draw, limit: int, cfg: EvalConfig, extractors: dict[str, Extractor], moments: str) -> SamplePass:
    """As many samples as the largest reference set, in parts of at most ``limit`` seeded ``part_seed(seed, part)``
    (so a hybrid and a prior pass share their seeds); fed to each extractor's ``moments`` ("samples" or
    "prior_samples"). ``draw(n, seed)`` returns HybridSamples or PriorSamples."""
    num_samples = max(len(ex.rows) for ex in extractors.values())
    result = None
    for part, start in enumerate(range(0, num_samples, limit)):
        samples = draw(min(limit, num_samples - start), part_seed(cfg.seed, part))
        images = to_uint8(samples.images)
        if result is None:
            result = SamplePass(
                images[:64],
                num_samples,
                getattr(samples, "draw_mode", ""),
                int(samples.source_index.shape[1]) if hasattr(samples, "source_index") else 0,
            )
        for ex in extractors.values():
            if start < len(ex.rows):
                getattr(ex, moments).update(ex.features(images[: len(ex.rows) - start]))
    if result is None:
        raise ValueError("a sample pass needs at least one reference image to draw as many samples for")
    return result
