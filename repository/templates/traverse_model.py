"""Latent traversal (the paper's traversal figures), as a python-backend model (``NAME_traverse``).

From one latent, STEPS latents that differ only in dimension DIMENSION, which goes linearly from that dimension's
minimum to its maximum over the training set (``dim_min``/``dim_max`` of the bank). The images come from
``NAME_decode``, called in-process through Triton's BLS API: an ensemble cannot serve this contract, because its
input and output share the name LATENT with different shapes ([D] in, [STEPS, D] out), and Triton gives one shape to
each ensemble tensor name.
"""
import json
import os

import numpy as np


def traversal(latent: np.ndarray, dimension: int, steps: int, dim_min: np.ndarray,
              dim_max: np.ndarray) -> np.ndarray:
    """[steps, D] float32: ``latent`` repeated, with ``dimension`` swept from dim_min to dim_max (both included)."""
    latents = np.repeat(np.asarray(latent, np.float32).reshape(1, -1), steps, axis=0)
    latents[:, dimension] = np.linspace(dim_min[dimension], dim_max[dimension], steps, dtype=np.float32)
    return latents


def load_ranges(path: str) -> tuple[np.ndarray, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as f:
        return np.asarray(f["dim_min"], np.float32), np.asarray(f["dim_max"], np.float32)


class BadRequest(ValueError):
    """A request error; the message names the input."""


def bad_request(pb, message: str):
    """A TritonError with status INVALID_ARGUMENT where the python backend supports codes (else INTERNAL)."""
    code = getattr(pb.TritonError, "INVALID_ARG", None)
    return pb.TritonError(message) if code is None else pb.TritonError(message, code)


class TritonPythonModel:
    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        self.model_name = args["model_name"]
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.decode_model = params["decode_model"]
        self.min_steps, self.max_steps = int(params.get("min_steps", "2")), int(params.get("max_steps", "64"))
        path = os.path.join(args["model_repository"], args["model_version"], "bank.h5")
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"{self.model_name}: {path} is missing; run `sae export` first")
        self.dim_min, self.dim_max = load_ranges(path)

    def _scalar(self, request, name) -> int:
        tensor = self.pb.get_input_tensor_by_name(request, name)
        if tensor is None:
            raise BadRequest(f"input {name} is required")
        value = tensor.as_numpy().reshape(-1)
        if value.size != 1:
            raise BadRequest(f"input {name} must hold exactly one value, got shape {list(tensor.as_numpy().shape)}")
        return int(value[0])

    def _latents(self, request) -> np.ndarray:
        dim = len(self.dim_min)
        latent = self.pb.get_input_tensor_by_name(request, "LATENT")
        if latent is None:
            raise BadRequest("input LATENT is required")
        latent = latent.as_numpy().reshape(-1)
        if latent.size != dim or not np.isfinite(latent).all():
            raise BadRequest(f"LATENT must hold {dim} finite values, got {latent.size} values"
                             f"{'' if np.isfinite(latent).all() else ' with NaN or infinity'}")
        dimension = self._scalar(request, "DIMENSION")
        if not 0 <= dimension < dim:
            raise BadRequest(f"DIMENSION must be in 0..{dim - 1}, got {dimension}")
        steps = self._scalar(request, "STEPS")
        if not self.min_steps <= steps <= self.max_steps:
            raise BadRequest(f"STEPS must be in {self.min_steps}..{self.max_steps}, got {steps}")
        return traversal(latent, dimension, steps, self.dim_min, self.dim_max)

    def _decode(self, latents: np.ndarray) -> np.ndarray:
        pb = self.pb
        kwargs = {}
        if hasattr(pb, "PreferredMemory"):  # a GPU decoder's output comes back to host memory
            kwargs["preferred_memory"] = pb.PreferredMemory(pb.TRITONSERVER_MEMORY_CPU, 0)
        request = pb.InferenceRequest(model_name=self.decode_model, requested_output_names=["IMAGE"],
                                      inputs=[pb.Tensor("LATENT", latents)], **kwargs)
        response = request.exec()
        if response.has_error():
            error = response.error()
            message = f"{self.decode_model}: {error.message()}"
            code = getattr(pb.TritonError, "INVALID_ARG", None)
            if code is not None and hasattr(error, "code") and error.code() == code:
                raise BadRequest(message)  # the decoder refused these latents: still the client's input
            raise RuntimeError(message)
        images = pb.get_output_tensor_by_name(response, "IMAGE").as_numpy()
        if not np.isfinite(images).all():
            raise BadRequest("LATENT: the decoded traversal is not finite; send values in the range the encoder "
                             "produces")
        return images

    def execute(self, requests):
        pb = self.pb
        responses = []
        for request in requests:
            try:
                latents = self._latents(request)
                images = self._decode(latents)
                responses.append(pb.InferenceResponse([pb.Tensor("IMAGE", images), pb.Tensor("LATENT", latents)]))
            except BadRequest as e:
                responses.append(pb.InferenceResponse(error=bad_request(pb, f"{self.model_name}: {e}")))
            except RuntimeError as e:
                responses.append(pb.InferenceResponse(error=pb.TritonError(f"{self.model_name}: {e}")))
        return responses
