"""What the sampling and traversal calls of the clients return (numpy arrays with names)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sae.core.draw import PER_DIMENSION


@dataclass
class HybridSamples:
    # float32 [n, H, W, 3] in [0, 1]; uint8 (round(clip(x, 0, 1) * 255)) with image_dtype="uint8"
    images: npt.NDArray[np.float32] | npt.NDArray[np.uint8]
    latents: npt.NDArray[np.float32]  # float32 [n, D]
    # int64 [n, groups]: stored latent each variable (or dimension) came from; -1 = from BASE
    source_index: npt.NDArray[np.int64]
    draw_mode: str  # one of DRAW_MODES, as the server reports it

    @property
    def per_dimension(self) -> bool:
        return self.draw_mode == PER_DIMENSION


@dataclass
class PriorSamples:
    images: npt.NDArray[np.float32]  # float32 [n, H, W, 3] in [0, 1]
    latents: npt.NDArray[np.float32]  # float32 [n, D], drawn from the model's prior


@dataclass
class Traversal:
    images: npt.NDArray[np.float32]  # float32 [steps, H, W, 3]
    # float32 [steps, D]: the start latent with `dimension` swept from its min to its max
    latents: npt.NDArray[np.float32]
    dimension: int
