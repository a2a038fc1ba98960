"""The request inputs of each path at a given batch size: the same arrays go over gRPC and into ONNX Runtime."""
from __future__ import annotations

import numpy as np

from clients.bench.served import WireShapes


def path_inputs(path: str, batch_size: int, shapes: WireShapes, seed: int = 0,
                latents: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Wire inputs of one request. Images are seeded uniform noise (every pixel costs the same to the network);
    latents are rows of ``latents`` (the bank, when known) repeated to ``batch_size``, else standard normal."""
    rng = np.random.default_rng([seed, batch_size])
    if path in ("encode", "reconstruct"):
        images = rng.integers(0, 256, size=(batch_size, shapes.height, shapes.width, 3), dtype=np.uint8)
        return {"IMAGE": images}
    if path == "decode":
        if latents is not None and len(latents):
            rows = np.resize(np.arange(len(latents)), batch_size)
            z = np.asarray(latents, np.float32)[rows]
        else:
            z = rng.standard_normal((batch_size, shapes.latent_dim)).astype(np.float32)
        return {"LATENT": np.ascontiguousarray(z)}
    if path == "hybrid_sample":
        return {"NUM_SAMPLES": np.array([batch_size], np.int64), "SEED": np.array([seed], np.int64)}
    raise ValueError(f"unknown path {path!r}")
