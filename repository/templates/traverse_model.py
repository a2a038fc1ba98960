"""Latent traversal (the paper's traversal figures), as a python-backend model (``NAME_traverse``).

From one latent, STEPS latents that differ only in dimension DIMENSION, which goes linearly from that dimension's
minimum to its maximum over the training set (``dim_min``/``dim_max`` of the bank). The images come from
``NAME_decode``, called in-process through Triton's BLS API: an ensemble cannot serve this contract, because its
input and output share the name LATENT with different shapes ([D] in, [STEPS, D] out), and Triton gives one shape to
each ensemble tensor name. The call (``repository/templates/bls.py``, copied as ``sae_bls.py``) goes through
decode's dynamic batcher, which merges it with concurrent decode work.
"""

import importlib.util
import json
import os
import sys

import numpy as np

# The templates' shared helpers (repository/templates/common.py): copied beside this file as sae_common.py and
# loaded by path once per folder (this model and its companions share one BadRequest), or the package's module.
_COMMON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sae_common.py")
if not os.path.isfile(_COMMON):
    from sae.repository.templates import common
elif getattr(sys.modules.get("sae_common"), "__file__", None) == _COMMON:
    common = sys.modules["sae_common"]
else:
    _spec = importlib.util.spec_from_file_location("sae_common", _COMMON)
    if _spec is None or _spec.loader is None:
        raise ImportError(f"cannot load {_COMMON}")
    common = sys.modules["sae_common"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(common)

wire = common.companion("sae_wire", "sae.core.wire")
bls = common.companion("sae_bls", "sae.repository.templates.bls")
onnx_model = common.companion("sae_onnx_model", "sae.repository.templates.onnx_model")  # its refusal text
bank_file = common.companion("sae_bank_file", "sae.core.bank_file")


def traversal(latent: np.ndarray, dimension: int, steps: int, dim_min: np.ndarray, dim_max: np.ndarray) -> np.ndarray:
    """[steps, D] float32: ``latent`` repeated, with ``dimension`` swept from dim_min to dim_max (both included)."""
    latents = np.repeat(np.asarray(latent, np.float32).reshape(1, -1), steps, axis=0)
    latents[:, dimension] = np.linspace(dim_min[dimension], dim_max[dimension], steps, dtype=np.float32)
    return latents


class TritonPythonModel:
    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        self.model_name = args["model_name"]
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.decode_model = params[wire.DECODE_MODEL_PARAM]
        self.version = int(args["model_version"])  # the decoder's version it calls: the set's, as its own
        low, high = wire.TRAVERSE_STEPS
        self.min_steps = int(params.get(wire.MIN_STEPS_PARAM, low))
        self.max_steps = int(params.get(wire.MAX_STEPS_PARAM, high))
        path = os.path.join(args["model_repository"], args["model_version"], bank_file.BANK_FILE)
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"{self.model_name}: {path} is missing; run `sae export` first")
        bank = bank_file.BankFile.read(path)
        self.dim_min, self.dim_max = np.asarray(bank.dim_min, np.float32), np.asarray(bank.dim_max, np.float32)

    def _scalar(self, request, name) -> int:
        tensor = self.pb.get_input_tensor_by_name(request, name)
        if tensor is None:
            raise common.BadRequest(f"input {name} is required")
        value = tensor.as_numpy().reshape(-1)
        if value.size != 1:
            raise common.BadRequest(
                f"input {name} must hold exactly one value, got shape {list(tensor.as_numpy().shape)}"
            )
        return int(value[0])

    def _latents(self, request) -> np.ndarray:
        dim = len(self.dim_min)
        latent = self.pb.get_input_tensor_by_name(request, wire.LATENT)
        if latent is None:
            raise common.BadRequest(f"input {wire.LATENT} is required")
        latent = latent.as_numpy().reshape(-1)
        if latent.size != dim or not np.isfinite(latent).all():
            raise common.BadRequest(
                f"LATENT must hold {dim} finite values, got {latent.size} values"
                f"{'' if np.isfinite(latent).all() else ' with NaN or infinity'}"
            )
        dimension = self._scalar(request, wire.DIMENSION)
        if not 0 <= dimension < dim:
            raise common.BadRequest(f"DIMENSION must be in 0..{dim - 1}, got {dimension}")
        steps = self._scalar(request, wire.STEPS)
        if not self.min_steps <= steps <= self.max_steps:
            raise common.BadRequest(f"STEPS must be in {self.min_steps}..{self.max_steps}, got {steps}")
        return traversal(latent, dimension, steps, self.dim_min, self.dim_max)

    def _decode(self, latents: np.ndarray) -> np.ndarray:
        try:
            images = bls.call(
                self.pb, self.decode_model, wire.LATENT, latents, wire.IMAGE, (onnx_model.TOO_LARGE,), self.version
            )
        except bls.Refused as e:
            raise common.BadRequest(str(e)) from None  # the decoder refused these latents: still the client's input
        if not np.isfinite(images).all():
            raise common.BadRequest(
                "LATENT: the decoded traversal is not finite; send values in the range the encoder produces"
            )
        return images

    def execute(self, requests):
        pb = self.pb
        responses = []
        for request in requests:
            try:
                latents = self._latents(request)
                images = self._decode(latents)
                responses.append(pb.InferenceResponse([pb.Tensor(wire.IMAGE, images), pb.Tensor(wire.LATENT, latents)]))
            except common.BadRequest as e:
                responses.append(pb.InferenceResponse(error=common.bad_request(pb, f"{self.model_name}: {e}")))
            except bls.VersionUnavailable as e:
                responses.append(pb.InferenceResponse(error=bls.unavailable(pb, f"{self.model_name}: {e}")))
            except RuntimeError as e:
                responses.append(pb.InferenceResponse(error=pb.TritonError(f"{self.model_name}: {e}")))
        return responses
