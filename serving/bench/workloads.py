"""The request inputs of each path at a given batch size: the same arrays go over gRPC and into ONNX Runtime."""

from __future__ import annotations

import numpy as np

from sae.core import wire
from sae.serving.bench.served import WireShapes


def path_inputs(
    path: str, batch_size: int, shapes: WireShapes, seed: int = 0, latents: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Wire inputs of one request. Images are seeded uniform noise (every pixel costs the same to the network);
    latents are rows of ``latents`` (the bank, when known) repeated to ``batch_size``, else standard normal."""
    rng = np.random.default_rng([seed, batch_size])
    if path in (wire.ENCODE, wire.RECONSTRUCT):
        images = rng.integers(0, 256, size=(batch_size, shapes.height, shapes.width, 3), dtype=np.uint8)
        return {wire.IMAGE: images}
    if path == wire.DECODE:
        if latents is not None and len(latents):
            rows = np.resize(np.arange(len(latents)), batch_size)
            z = np.asarray(latents, np.float32)[rows]
        else:
            z = rng.standard_normal((batch_size, shapes.latent_dim)).astype(np.float32)
        return {wire.LATENT: np.ascontiguousarray(z)}
    if path == wire.HYBRID_SAMPLE:
        return {wire.NUM_SAMPLES: np.array([batch_size], np.int64), wire.SEED: np.array([seed], np.int64)}
    raise ValueError(f"unknown path {path!r}")
