"""The explorer's model calls, each from a JSON request body to a JSON-ready dict: images as PNG data URLs,
latents as lists of floats (a float32 written as a JSON number reads back as the same float32, so a latent the page
sends back as BASE is the latent the server returned), and ``served_ms``, the time of the call to the server.

Every call goes through :class:`SAEClient`, which checks each input against the served config and splits a call
above the server's per-request limit; the checks here are the page's own limits (4 to 64 samples, a seed, a draw
mode, the latent's length)."""

from __future__ import annotations

import base64
import io
import time

import numpy as np

from sae.clients.triton_client import SAEClient
from sae.core import wire
from sae.core.draw import to_uint8
from sae.core.errors import SAEError
from sae.core.png import encode_png


class RequestError(SAEError, ValueError):
    """A request body outside the page's limits (not JSON, a count, seed, draw mode or latent out of range): the
    app answers 400 with the message."""


MIN_SAMPLES, MAX_SAMPLES = 4, 64  # a grid of the page
TRAVERSE_STEPS = 8  # images per traversal strip
MAX_LATENT_DIM = 4096


def data_url(image_uint8: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_png(image_uint8, level=1)).decode("ascii")


def data_urls(images: np.ndarray) -> list[str]:
    """float images in [0, 1] (``to_uint8`` as the served IMAGE_U8 is made) or uint8 images -> PNG data URLs."""
    images = np.asarray(images)
    return [data_url(image) for image in (images if images.dtype == np.uint8 else to_uint8(images))]


def _int(body: dict, key: str, low: int, high: int, default: int | None = None) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(f"{key} must be a whole number from {low} to {high}, got {value!r}")
    return value


def _latent(body: dict, key: str, dim: int) -> np.ndarray:
    value = body.get(key)
    if (
        not isinstance(value, list)
        or not 0 < len(value) <= MAX_LATENT_DIM
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise RequestError(f"{key} must be a list of numbers (one per latent dimension)")
    latent = np.asarray(value, dtype=np.float32)
    if dim and latent.shape[0] != dim:
        raise RequestError(f"{key} has {latent.shape[0]} values; this model's latent has {dim}")
    if not np.isfinite(latent).all():
        raise RequestError(f"{key} must hold finite numbers")
    return latent


def _timed(call):
    start = time.perf_counter()
    result = call()
    return result, round((time.perf_counter() - start) * 1e3, 2)


def latent_dim(client: SAEClient) -> int:
    return int(client.model_info(wire.DECODE).input(wire.LATENT).dims[-1])


def hybrid(client: SAEClient, body: dict) -> dict:
    """Hybrid samples; with ``base`` (a latent) and ``mask`` (one bool per variable, true = re-draw) the variables
    whose mask is false keep the base's values and report SOURCE_INDEX -1."""
    n = _int(body, "n", MIN_SAMPLES, MAX_SAMPLES, 16)
    seed = _int(body, "seed", 0, wire.MAX_SEED, 0)
    draw = body.get("draw") or None
    if draw is not None and not isinstance(draw, str):
        raise RequestError("draw must be the name of a draw mode")
    base = mask = None
    if body.get("base") is not None:
        base = _latent(body, "base", latent_dim(client))
        mask_list = body.get("mask")
        if not isinstance(mask_list, list) or not all(isinstance(m, bool) for m in mask_list):
            raise RequestError("mask must be a list of true/false, one per variable (true = re-draw)")
        mask = np.asarray(mask_list, dtype=bool)
    samples, served_ms = _timed(
        lambda: client.sample(n, seed=seed, base=base, mask=mask, draw=draw, image_dtype="uint8")
    )
    return {
        "images": data_urls(samples.images),
        "latents": samples.latents.tolist(),
        "source_index": samples.source_index.tolist(),
        "draw_mode": samples.draw_mode,
        "seed": seed,
        "served_ms": served_ms,
    }


def prior(client: SAEClient, body: dict) -> dict:
    n = _int(body, "n", MIN_SAMPLES, MAX_SAMPLES, 16)
    seed = _int(body, "seed", 0, wire.MAX_SEED, 0)
    samples, served_ms = _timed(lambda: client.prior_sample(n, seed=seed))
    return {
        "images": data_urls(samples.images),
        "latents": samples.latents.tolist(),
        "seed": seed,
        "served_ms": served_ms,
    }


def decode(client: SAEClient, body: dict) -> dict:
    latent = _latent(body, "latent", latent_dim(client))
    images, served_ms = _timed(lambda: client.decode(latent[None]))
    return {"image": data_urls(images)[0], "latent": latent.tolist(), "served_ms": served_ms}


def encode(client: SAEClient, image_uint8: np.ndarray) -> dict:
    """An uploaded image (uint8 HWC at the model's size) -> its latent and its reconstruction (the decoded latent)."""
    start = time.perf_counter()
    latent = client.encode(image_uint8[None])
    reconstruction = client.decode(latent)
    served_ms = round((time.perf_counter() - start) * 1e3, 2)
    return {
        "image": data_url(image_uint8),
        "reconstruction": data_urls(reconstruction)[0],
        "latent": latent[0].tolist(),
        "served_ms": served_ms,
    }


def traversals(client: SAEClient, body: dict) -> dict:
    """One strip per latent dimension, each swept over that dimension's range in the training set (the bank's)."""
    latent = _latent(body, "latent", latent_dim(client))
    steps = _int(body, "steps", 2, 16, TRAVERSE_STEPS)
    strips = []
    start = time.perf_counter()
    for d in range(latent.shape[0]):
        t = client.traverse(latent, d, steps)
        values = t.latents[:, d]
        strips.append(
            {
                "dimension": d,
                "images": data_urls(t.images),
                "values": values.tolist(),
                "min": float(values.min()),
                "max": float(values.max()),
            }
        )
    return {"strips": strips, "served_ms": round((time.perf_counter() - start) * 1e3, 2)}


def npz_bytes(body: dict) -> bytes:
    """The page's current grid as ``.npz``: ``latents`` float32 [n, D], ``source_index`` int64 [n, groups]
    (-1: kept from the base), and the request that drew them."""
    latents = body.get("latents")
    if not isinstance(latents, list) or not 0 < len(latents) <= MAX_SAMPLES:
        raise RequestError(f"latents must be a list of 1 to {MAX_SAMPLES} latents")
    arrays = {"latents": np.stack([_latent({"l": row}, "l", 0) for row in latents])}
    if body.get("source_index") is not None:
        index = np.asarray(body["source_index"], dtype=np.int64)
        if index.ndim != 2 or index.shape[0] != len(latents):
            raise RequestError("source_index must hold one row per latent")
        arrays["source_index"] = index
    arrays["seed"] = np.int64(_int(body, "seed", 0, wire.MAX_SEED, 0))
    arrays["model"] = np.str_(str(body.get("model", ""))[:200])
    arrays["draw_mode"] = np.str_(str(body.get("draw_mode", ""))[:40])
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()
