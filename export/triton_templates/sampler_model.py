"""Hybrid sampler (Leeb et al., 2023, section 3.2) with controllable generation, as a python-backend model
(``NAME_sampler``, the first step of the ``NAME_hybrid_sample`` ensemble).

The bank holds N latent vectors encoded from the training set and a partition of the latent dimensions into
variables. A new latent takes each variable (whole chunk; ``PER_DIMENSION`` false) or each dimension (true) from an
independently chosen stored vector, so it follows the product of the marginals of the learned code without a prior.
Controllable generation (as in the paper): with ``BASE`` and ``MASK``, the variables whose mask is true are
re-drawn from the bank and the others kept from BASE. The draw owns its randomness: one ``numpy.random.Generator``
per request, seeded from SEED, made the same way with or without a mask, so MASK all true gives exactly the plain
hybrid samples of that SEED, and MASK all false gives BASE.
"""
import json
import os

import numpy as np

PER_VARIABLE, PER_DIMENSION = "per_variable", "per_dimension"


def draw_hybrid(bank: np.ndarray, variable_of_dim: np.ndarray, num_samples: int, seed: int,
                per_dimension: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Return (latents [n, D] float32, source index [n, groups] int64).

    ``variable_of_dim[d]`` is the variable that latent dimension d belongs to. Per variable, the dimensions of one
    variable come from the same stored vector; per dimension, every dimension is drawn on its own. Within one sample,
    the groups come from distinct stored vectors (sampling without replacement) when the bank has enough of them,
    so no sample is a mere copy of part of one training latent.
    """
    num_stored, dim = bank.shape
    groups = np.arange(dim) if per_dimension else variable_of_dim
    num_groups = int(groups.max()) + 1
    rng = np.random.default_rng(seed)
    if num_groups <= num_stored:
        source = np.argsort(rng.random((num_samples, num_stored)), axis=1)[:, :num_groups]
    else:
        source = rng.integers(0, num_stored, size=(num_samples, num_groups))
    latents = bank[source[:, groups], np.arange(dim)]
    return latents.astype(np.float32), source.astype(np.int64)


def draw_controlled(bank: np.ndarray, variable_of_dim: np.ndarray, num_samples: int, seed: int,
                    per_dimension: bool = False, base: np.ndarray | None = None,
                    mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Hybrid samples whose unmasked variables are kept from ``base`` ([1, D] or [n, D]).

    ``mask[v]`` true: variable v is re-drawn from the bank; false: kept from base (its source index is -1). In
    per-dimension mode a variable's mask applies to each of its dimensions.
    """
    latents, source = draw_hybrid(bank, variable_of_dim, num_samples, seed, per_dimension)
    if mask is None:
        return latents, source
    redrawn_dims = np.asarray(mask, bool)[variable_of_dim]
    latents = np.where(redrawn_dims, latents, np.broadcast_to(base, latents.shape)).astype(np.float32)
    redrawn_groups = redrawn_dims if per_dimension else np.asarray(mask, bool)
    return latents, np.where(redrawn_groups, source, -1).astype(np.int64)


def load_bank(path: str) -> tuple[np.ndarray, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as f:
        return np.asarray(f["latents"], np.float32), np.asarray(f["variable_of_dim"], np.int64)


class BadRequest(ValueError):
    """A request error; the message names the input."""


def bad_request(pb, message: str):
    """A TritonError with status INVALID_ARGUMENT where the python backend supports codes (else INTERNAL)."""
    code = getattr(pb.TritonError, "INVALID_ARG", None)
    return pb.TritonError(message) if code is None else pb.TritonError(message, code)


def read_scalar(pb, request, name, default=None):
    tensor = pb.get_input_tensor_by_name(request, name)
    if tensor is None:
        if default is None:
            raise BadRequest(f"input {name} is required")
        return default
    value = tensor.as_numpy().reshape(-1)
    if value.size != 1:
        raise BadRequest(f"input {name} must hold exactly one value, got shape {list(tensor.as_numpy().shape)}")
    return value[0]


class TritonPythonModel:
    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        self.model_name = args["model_name"]
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.max_samples = int(params.get("max_samples", "256"))
        path = os.path.join(args["model_repository"], args["model_version"], "bank.h5")
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"{self.model_name}: {path} is missing; run `sae export` first")
        self.bank, self.variable_of_dim = load_bank(path)
        self.num_variables = int(self.variable_of_dim.max()) + 1

    def _parse(self, request):
        pb = self.pb
        n = int(read_scalar(pb, request, "NUM_SAMPLES"))
        if not 1 <= n <= self.max_samples:
            raise BadRequest(f"NUM_SAMPLES must be in 1..{self.max_samples}, got {n}; split larger requests")
        seed = int(read_scalar(pb, request, "SEED"))
        if seed < 0:
            raise BadRequest(f"SEED must be non-negative, got {seed}")
        per_dim = bool(read_scalar(pb, request, "PER_DIMENSION", False))
        base_t, mask_t = pb.get_input_tensor_by_name(request, "BASE"), pb.get_input_tensor_by_name(request, "MASK")
        base = mask = None
        if mask_t is not None:
            if base_t is None:
                raise BadRequest("MASK needs BASE: the latent(s) whose unmasked variables are kept")
            mask = mask_t.as_numpy().reshape(-1).astype(bool)
            if mask.size != self.num_variables:
                raise BadRequest(f"MASK must have one entry per variable ({self.num_variables}), got {mask.size}")
        if base_t is not None:
            if mask is None:
                raise BadRequest("BASE needs MASK: say which variables to re-draw (true) and which to keep (false)")
            base = base_t.as_numpy()
            dim = self.bank.shape[1]
            if base.ndim != 2 or base.shape[1] != dim or base.shape[0] not in (1, n):
                raise BadRequest(f"BASE must have shape [1, {dim}] or [NUM_SAMPLES={n}, {dim}], got {list(base.shape)}")
            if not np.isfinite(base).all():
                raise BadRequest("BASE contains NaN or infinite values")
            base = base.astype(np.float32)
        return n, seed, per_dim, base, mask

    def execute(self, requests):
        pb = self.pb
        responses = []
        for request in requests:
            try:
                n, seed, per_dim, base, mask = self._parse(request)
                latents, source = draw_controlled(self.bank, self.variable_of_dim, n, seed, per_dim, base, mask)
                mode = np.array([(PER_DIMENSION if per_dim else PER_VARIABLE).encode()], dtype=np.object_)
                responses.append(pb.InferenceResponse([pb.Tensor("LATENT", latents),
                                                       pb.Tensor("SOURCE_INDEX", source),
                                                       pb.Tensor("DRAW_MODE", mode)]))
            except BadRequest as e:
                responses.append(pb.InferenceResponse(error=bad_request(pb, f"{self.model_name}: {e}")))
        return responses
