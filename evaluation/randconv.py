"""`FD-randconv` features: a fixed-seed random convolutional network in numpy.

Random-network Fréchet distances rank degradations correctly but weakly and depend on seed and architecture
(Lee, Kim & Lee, AAAI 2023; Naeem et al., ICML 2020), so they are reported beside trained features and never as FID.
The network is fixed by its seed and layer widths: three 3x3 stride-2 convolutions with He-normal weights, zero
biases and ReLU; the features are the spatial means of every layer's activations, concatenated (32 + 64 + 128 = 224).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

__all__ = ["RandConvFeatures"]


def _conv3x3_stride2(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """[N, H, W, C] -> [N, ceil(H/2), ceil(W/2), C'] with zero padding 1 (im2col + one matrix product)."""
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    # numpy's stubs type ``axis`` as one index; the function takes a tuple of them (its docs and code).
    windows = np.lib.stride_tricks.sliding_window_view(  # type: ignore[call-overload]
        padded, (3, 3), axis=(1, 2)
    )[:, ::2, ::2]
    n, h, w = windows.shape[:3]
    return (windows.reshape(n * h * w, -1) @ weight).reshape(n, h, w, weight.shape[1])


@dataclass
class RandConvFeatures:
    """Features of uint8 [N, H, W, 3] images from a random CNN fixed by ``seed``."""

    seed: int = 0
    widths: tuple[int, ...] = (32, 64, 128)
    batch_size: int = 128

    name = "FD-randconv"

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.weights = []
        fan_in_channels = 3
        for width in self.widths:
            fan_in = 9 * fan_in_channels
            # rows ordered (channel, ky, kx) like sliding_window_view's flattened windows
            self.weights.append((rng.standard_normal((fan_in, width)) * np.sqrt(2.0 / fan_in)).astype(np.float32))
            fan_in_channels = width
        digest = hashlib.sha1(b"".join(w.tobytes() for w in self.weights)).hexdigest()[:12]
        self.identity = f"randconv-v1-seed{self.seed}-{'x'.join(map(str, self.widths))}-{digest}"

    @property
    def dim(self) -> int:
        return int(sum(self.widths))

    def features(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"{self.name}: images must be uint8 [N, H, W, 3], got {images.dtype} {list(images.shape)}")
        out = []
        for start in range(0, len(images), self.batch_size):
            x = images[start : start + self.batch_size].astype(np.float32) / 127.5 - 1.0
            pooled = []
            for weight in self.weights:
                x = np.maximum(_conv3x3_stride2(x, weight), 0.0)
                pooled.append(x.mean(axis=(1, 2)))
            out.append(np.concatenate(pooled, axis=1))
        return np.concatenate(out).astype(np.float64)
