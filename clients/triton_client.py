"""gRPC client for the served SAE models. Needs numpy and tritonclient only (no torch)."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from clients.errors import InferenceError, InvalidInputError, ServerUnavailableError


@dataclass
class HybridSamples:
    images: np.ndarray  # float32 [n, H, W, 3] in [0, 1]
    latents: np.ndarray  # float32 [n, D]
    source_index: np.ndarray  # int64 [n, groups]: which stored latent each variable (or dimension) came from
    per_dimension: bool


def to_uint8(images: np.ndarray) -> np.ndarray:
    """float images in [0, 1] -> uint8."""
    return np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)


MAX_SAMPLES = 1 << 20  # one call's ceiling: a million 64x64 images is already 47 GiB of float32


class SAEClient:
    """Calls ``encode``, ``decode``, ``reconstruct`` and ``hybrid_sample`` on a Triton server over gRPC."""

    def __init__(self, url: str = "127.0.0.1:8001", timeout_s: float = 60.0):
        self.url = url
        self.timeout_s = timeout_s
        self._client = grpcclient.InferenceServerClient(url)
        self._configs: dict[str, dict] = {}

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "SAEClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def wait_ready(self, timeout_s: float = 60.0, model: str = "hybrid_sample") -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self._client.is_server_ready() and self._client.is_model_ready(model):
                    return
            except InferenceServerException:
                pass
            time.sleep(0.2)
        raise ServerUnavailableError(f"server at {self.url} (model {model}) not ready after {timeout_s:.0f} s")

    def model_config(self, model: str) -> dict:
        if model not in self._configs:
            self._configs[model] = self._client.get_model_config(model, as_json=True)["config"]
        return self._configs[model]

    def _input_spec(self, model: str, name: str) -> list[int]:
        for spec in self.model_config(model)["input"]:
            if spec["name"] == name:
                return [int(d) for d in spec["dims"]]
        raise InvalidInputError(f"{model} has no input {name}")

    def _infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        infer_inputs = []
        for name, array in inputs.items():
            tensor = grpcclient.InferInput(name, list(array.shape), _triton_dtype(array))
            tensor.set_data_from_numpy(array)
            infer_inputs.append(tensor)
        try:
            result = self._client.infer(model, infer_inputs, outputs=[grpcclient.InferRequestedOutput(o)
                                                                      for o in outputs],
                                        client_timeout=self.timeout_s)
        except InferenceServerException as e:
            if e.status() in ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED"):
                raise ServerUnavailableError(f"{model}: server at {self.url} unavailable: {e.message()}") from e
            raise InferenceError(f"{model}: {e.message()}") from e
        return {o: result.as_numpy(o) for o in outputs}

    def _batched(self, model: str, input_name: str, array: np.ndarray, outputs: list[str]) -> dict[str, np.ndarray]:
        """Split ``array`` along the batch axis into requests of at most the model's max_batch_size."""
        limit = int(self.model_config(model).get("max_batch_size", 0)) or len(array)
        parts = [self._infer(model, {input_name: array[i:i + limit]}, outputs) for i in range(0, len(array), limit)]
        return {o: np.concatenate([p[o] for p in parts]) for o in outputs}

    def _check_images(self, model: str, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        dims = self._input_spec(model, "IMAGE")
        if images.dtype != np.uint8:
            raise InvalidInputError(f"{model}: input IMAGE must be uint8 in 0..255, got {images.dtype}")
        if images.ndim != 1 + len(dims) or list(images.shape[1:]) != dims or len(images) == 0:
            raise InvalidInputError(f"{model}: input IMAGE must have shape [N>0, {', '.join(map(str, dims))}], "
                                    f"got {list(images.shape)}")
        return np.ascontiguousarray(images)

    def _check_latents(self, model: str, latents: np.ndarray) -> np.ndarray:
        latents = np.asarray(latents)
        dims = self._input_spec(model, "LATENT")
        if not np.issubdtype(latents.dtype, np.floating):
            raise InvalidInputError(f"{model}: input LATENT must be floating point, got {latents.dtype}")
        if latents.ndim != 2 or list(latents.shape[1:]) != dims or len(latents) == 0:
            raise InvalidInputError(f"{model}: input LATENT must have shape [N>0, {dims[0]}], got {list(latents.shape)}")
        if not np.isfinite(latents).all():
            raise InvalidInputError(f"{model}: input LATENT contains NaN or infinite values")
        return np.ascontiguousarray(latents, dtype=np.float32)

    def encode(self, images: np.ndarray) -> np.ndarray:
        return self._batched("encode", "IMAGE", self._check_images("encode", images), ["LATENT"])["LATENT"]

    def decode(self, latents: np.ndarray) -> np.ndarray:
        return self._batched("decode", "LATENT", self._check_latents("decode", latents), ["IMAGE"])["IMAGE"]

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        images = self._check_images("reconstruct", images)
        return self._batched("reconstruct", "IMAGE", images, ["RECONSTRUCTION"])["RECONSTRUCTION"]

    def sample(self, n: int, seed: int = 0, per_dimension: bool = False) -> HybridSamples:
        """``n`` hybrid samples; requests above the server's per-call limit go out in parts with derived seeds."""
        if not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_SAMPLES:
            raise InvalidInputError(f"hybrid_sample: NUM_SAMPLES must be an integer in 1..{MAX_SAMPLES}, got {n!r}")
        if not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
            raise InvalidInputError(f"hybrid_sample: SEED must be an integer in [0, 2**63), got {seed!r}")
        limit = 256
        parts = []
        for part, start in enumerate(range(0, n, limit)):
            part_seed = seed if part == 0 else int(np.random.SeedSequence([seed, part]).generate_state(1)[0])
            inputs = {"NUM_SAMPLES": np.array([min(limit, n - start)], np.int64),
                      "SEED": np.array([part_seed], np.int64), "PER_DIMENSION": np.array([per_dimension])}
            parts.append(self._infer("hybrid_sample", inputs, ["IMAGE", "LATENT", "SOURCE_INDEX"]))
        joined = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return HybridSamples(joined["IMAGE"], joined["LATENT"], joined["SOURCE_INDEX"], per_dimension)


def _triton_dtype(array: np.ndarray) -> str:
    from tritonclient.utils import np_to_triton_dtype

    return np_to_triton_dtype(array.dtype)
