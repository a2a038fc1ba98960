"""`FD-factor` features: the last hidden layer of a small factor classifier trained on the dataset's own labels.

Trained features rank image degradations more faithfully than random ones, and the dataset's ground-truth factors
are what the SAE is meant to capture. The classifier is a scikit-learn MLP (no torch) on 16x16 average-pooled,
standardised pixels, fitted to the one-hot codes of every factor at once (one multi-output regression, so one shared
hidden layer serves all factors). Its held-out accuracy per factor is reported, so a reader can see the features
carry the factors. The weights can be saved and loaded, so the same features are reused between runs.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from sae.core.wire import to_float_images

__all__ = ["FactorClassifierConfig", "FactorClassifierFeatures", "pooled_pixels"]


def pooled_pixels(images: np.ndarray, size: int = 16) -> np.ndarray:
    """uint8 [N, H, W, 3] -> float32 [N, size*size*3]: block means (H and W must be multiples of ``size``)."""
    images = np.asarray(images)
    n, h, w, c = images.shape
    if h % size or w % size:
        raise ValueError(f"image size {h}x{w} is not a multiple of the pooled size {size}")
    blocks = images.reshape(n, size, h // size, size, w // size, c).astype(np.float32)
    return to_float_images(blocks.mean(axis=(2, 4))).reshape(n, -1)


@dataclass(frozen=True)
class FactorClassifierConfig:
    pooled_size: int = 16
    hidden: tuple[int, ...] = (128, 64)
    max_iter: int = 40
    seed: int = 0


@dataclass
class FactorClassifierFeatures:
    """Feature extractor: ``features(images)`` returns the last hidden layer's ReLU activations [N, hidden[-1]]."""

    config: FactorClassifierConfig
    pixel_mean: np.ndarray
    pixel_std: np.ndarray
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    factor_sizes: tuple[int, ...]
    heldout_accuracy: list[float] = field(default_factory=list)

    name = "FD-factor"

    @property
    def identity(self) -> str:
        digest = hashlib.sha1(b"".join(np.ascontiguousarray(a).tobytes() for a in self.weights + self.biases))
        return f"factor-mlp-v1-{'x'.join(map(str, self.config.hidden))}-{digest.hexdigest()[:12]}"

    @property
    def dim(self) -> int:
        return int(self.config.hidden[-1])

    @classmethod
    def fit(
        cls,
        images: np.ndarray,
        codes: np.ndarray,
        config: FactorClassifierConfig = FactorClassifierConfig(),
        heldout_images: np.ndarray | None = None,
        heldout_codes: np.ndarray | None = None,
    ) -> FactorClassifierFeatures:
        """Train on uint8 images [N, H, W, 3] and integer factor codes [N, K]; score on the held-out pair if given."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPRegressor

        codes = np.asarray(codes, np.int64)
        if codes.ndim != 2 or len(codes) != len(images):
            raise ValueError(f"FD-factor: codes must be [N, K] with N = {len(images)} images, got {codes.shape}")
        sizes = tuple(int(c.max()) + 1 for c in codes.T)
        x = pooled_pixels(images, config.pooled_size)
        mean, std = x.mean(axis=0), x.std(axis=0) + 1e-3
        model = MLPRegressor(
            hidden_layer_sizes=config.hidden,
            max_iter=config.max_iter,
            random_state=config.seed,
            batch_size=min(256, len(x)),
            learning_rate_init=1e-3,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit((x - mean) / std, _one_hot(codes, sizes))
        extractor = cls(
            config,
            mean,
            std,
            [w.astype(np.float32) for w in model.coefs_],
            [b.astype(np.float32) for b in model.intercepts_],
            sizes,
        )
        if heldout_images is not None and heldout_codes is not None and len(heldout_images):
            extractor.heldout_accuracy = extractor.accuracy(heldout_images, heldout_codes)
        return extractor

    def _hidden(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"{self.name}: images must be uint8 [N, H, W, 3], got {images.dtype} {list(images.shape)}")
        h = (pooled_pixels(images, self.config.pooled_size) - self.pixel_mean) / self.pixel_std
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            h = np.maximum(h @ w + b, 0.0)
        return h

    def features(self, images: np.ndarray) -> np.ndarray:
        return self._hidden(images).astype(np.float64)

    def accuracy(self, images: np.ndarray, codes: np.ndarray) -> list[float]:
        """Per-factor accuracy of the argmax over each factor's block of outputs."""
        out = self._hidden(images) @ self.weights[-1] + self.biases[-1]
        codes = np.asarray(codes, np.int64)
        acc, start = [], 0
        for k, size in enumerate(self.factor_sizes):
            acc.append(float(np.mean(out[:, start : start + size].argmax(axis=1) == codes[:, k])))
            start += size
        return acc

    def save(self, path: Path | BinaryIO) -> None:
        arrays = {f"w{i}": w for i, w in enumerate(self.weights)} | {f"b{i}": b for i, b in enumerate(self.biases)}
        np.savez(
            path,
            pixel_mean=self.pixel_mean,
            pixel_std=self.pixel_std,
            factor_sizes=np.array(self.factor_sizes),
            heldout_accuracy=np.array(self.heldout_accuracy, np.float64),
            **arrays,
        )

    @classmethod
    def load(cls, path: Path, config: FactorClassifierConfig) -> FactorClassifierFeatures:
        with np.load(path) as f:
            layers = len(config.hidden) + 1
            return cls(
                config,
                f["pixel_mean"],
                f["pixel_std"],
                [f[f"w{i}"] for i in range(layers)],
                [f[f"b{i}"] for i in range(layers)],
                tuple(int(s) for s in f["factor_sizes"]),
                [float(a) for a in f["heldout_accuracy"]],
            )


def _one_hot(codes: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    out = np.zeros((len(codes), sum(sizes)), np.float32)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for k, offset in enumerate(offsets):
        out[np.arange(len(codes)), offset + codes[:, k]] = 1.0
    return out
