"""Hybrid sampler (Leeb et al., 2023, section 2.2) with controllable generation, and prior sampler, as one
python-backend model file. The config parameter ``latents_from`` picks the role:

* ``bank`` (``NAME_sampler``, the first step of ``NAME_hybrid_sample``): the bank holds N latent vectors encoded
  from the training set and a partition of the latent dimensions into variables. A new latent takes each variable
  from a stored vector chosen uniformly, so it follows the product of the marginals of the learned code without a
  prior. Three draw modes (input ``DRAW``; the output ``DRAW_MODE`` names the one used):

  - ``independent`` (default, the paper's definition): each variable (whole chunk) from its own uniform choice of
    the N vectors, with replacement, so two variables of one sample may come from the same stored vector;
  - ``distinct``: each variable from a different stored vector (without replacement; needs N >= k);
  - ``per_dimension``: each latent dimension on its own, with replacement (the authors' code default; also asked
    for by ``PER_DIMENSION=true``).

  Controllable generation (as in the paper): with ``BASE`` and ``MASK``, the variables whose mask is true are
  re-drawn from the bank and the others kept from BASE. The draw is made the same way with or without a mask, so
  MASK all true gives exactly the plain hybrid samples of that SEED, and MASK all false gives BASE.
* ``prior`` (``NAME_prior_sampler``, the first step of ``NAME_prior_sample``; models with a prior only): latents
  drawn from the model's prior N(prior_mean, diag(prior_std²)), both stored in the bank file.

Either way the draw owns its randomness: one ``numpy.random.Generator`` per request, seeded from SEED.
"""
import json
import os

import numpy as np

INDEPENDENT, DISTINCT, PER_DIMENSION = "independent", "distinct", "per_dimension"
DRAW_MODES = (INDEPENDENT, DISTINCT, PER_DIMENSION)  # the first is the default
FROM_BANK, FROM_PRIOR = "bank", "prior"  # values of the config parameter latents_from


def draw_hybrid(bank: np.ndarray, variable_of_dim: np.ndarray, num_samples: int, seed: int,
                mode: str = INDEPENDENT) -> tuple[np.ndarray, np.ndarray]:
    """Return (latents [n, D] float32, source index [n, groups] int64).

    ``variable_of_dim[d]`` is the variable that latent dimension d belongs to. The groups are the variables
    (``independent``, ``distinct``: the dimensions of one variable come from the same stored vector) or the single
    dimensions (``per_dimension``). ``independent`` and ``per_dimension`` choose each group's stored vector
    independently and uniformly (with replacement); ``distinct`` gives the groups of one sample different vectors.
    """
    if mode not in DRAW_MODES:
        raise ValueError(f"draw mode must be one of {', '.join(DRAW_MODES)}, got {mode!r}")
    num_stored, dim = bank.shape
    groups = np.arange(dim) if mode == PER_DIMENSION else np.asarray(variable_of_dim)
    num_groups = int(groups.max()) + 1
    rng = np.random.default_rng(seed)
    if mode == DISTINCT:
        if num_groups > num_stored:
            raise ValueError(f"the distinct draw needs at least as many stored latents as variables ({num_groups}); "
                             f"the bank has {num_stored}")
        source = np.argsort(rng.random((num_samples, num_stored)), axis=1)[:, :num_groups]
    else:
        source = rng.integers(0, num_stored, size=(num_samples, num_groups))
    latents = bank[source[:, groups], np.arange(dim)]
    return latents.astype(np.float32), source.astype(np.int64)


def draw_controlled(bank: np.ndarray, variable_of_dim: np.ndarray, num_samples: int, seed: int,
                    mode: str = INDEPENDENT, base: np.ndarray | None = None,
                    mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Hybrid samples whose unmasked variables are kept from ``base`` ([1, D] or [n, D]).

    ``mask[v]`` true: variable v is re-drawn from the bank; false: kept from base (its source index is -1). In
    per-dimension mode a variable's mask applies to each of its dimensions.
    """
    latents, source = draw_hybrid(bank, variable_of_dim, num_samples, seed, mode)
    if mask is None:
        return latents, source
    redrawn_dims = np.asarray(mask, bool)[variable_of_dim]
    latents = np.where(redrawn_dims, latents, np.broadcast_to(base, latents.shape)).astype(np.float32)
    redrawn_groups = redrawn_dims if mode == PER_DIMENSION else np.asarray(mask, bool)
    return latents, np.where(redrawn_groups, source, -1).astype(np.int64)


def draw_prior(mean: np.ndarray, std: np.ndarray, num_samples: int, seed: int) -> np.ndarray:
    """[n, D] float32 latents from N(mean, diag(std²)), from one generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((num_samples, len(mean)))
    return (np.asarray(mean, np.float64) + np.asarray(std, np.float64) * noise).astype(np.float32)


def load_bank(path: str) -> tuple[np.ndarray, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as f:
        return np.asarray(f["latents"], np.float32), np.asarray(f["variable_of_dim"], np.int64)


def load_prior(path: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(prior_mean, prior_std) of the bank file, or None when the model has no prior."""
    import h5py

    with h5py.File(path, "r") as f:
        if "prior_mean" not in f or "prior_std" not in f:
            return None
        return np.asarray(f["prior_mean"], np.float32), np.asarray(f["prior_std"], np.float32)


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


def draw_mode(draw, per_dimension: bool) -> str:
    """The mode a request asks for: ``DRAW`` (bytes or str, None when absent) and the boolean ``PER_DIMENSION``."""
    if draw is None:
        return PER_DIMENSION if per_dimension else INDEPENDENT
    mode = draw.decode(errors="replace") if isinstance(draw, bytes) else str(draw)
    if mode not in DRAW_MODES:
        raise BadRequest(f"DRAW must be one of {', '.join(DRAW_MODES)}, got {mode!r}")
    if per_dimension and mode != PER_DIMENSION:
        raise BadRequest(f"PER_DIMENSION=true asks for the per_dimension draw, but DRAW asks for {mode}")
    return mode


class TritonPythonModel:
    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        self.model_name = args["model_name"]
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.max_samples = int(params.get("max_samples", "256"))
        self.latents_from = params.get("latents_from", FROM_BANK)
        if self.latents_from not in (FROM_BANK, FROM_PRIOR):
            raise pb_utils.TritonModelException(f"{self.model_name}: parameter latents_from must be {FROM_BANK} or "
                                                f"{FROM_PRIOR}, got {self.latents_from!r}")
        path = os.path.join(args["model_repository"], args["model_version"], "bank.h5")
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"{self.model_name}: {path} is missing; run `sae export` first")
        self.bank, self.variable_of_dim = load_bank(path)
        self.num_variables = int(self.variable_of_dim.max()) + 1
        self.prior = load_prior(path)
        if self.latents_from == FROM_PRIOR and self.prior is None:
            raise pb_utils.TritonModelException(f"{self.model_name}: {path} holds no prior (prior_mean, prior_std): "
                                                "the model has none to sample from")

    def _count_and_seed(self, request) -> tuple[int, int]:
        pb = self.pb
        n = int(read_scalar(pb, request, "NUM_SAMPLES"))
        if not 1 <= n <= self.max_samples:
            raise BadRequest(f"NUM_SAMPLES must be in 1..{self.max_samples}, got {n}; split larger requests")
        seed = int(read_scalar(pb, request, "SEED"))
        if seed < 0:
            raise BadRequest(f"SEED must be non-negative, got {seed}")
        return n, seed

    def _hybrid_request(self, request):
        pb = self.pb
        n, seed = self._count_and_seed(request)
        per_dim = bool(read_scalar(pb, request, "PER_DIMENSION", False))
        draw_t = pb.get_input_tensor_by_name(request, "DRAW")
        mode = draw_mode(None if draw_t is None else read_scalar(pb, request, "DRAW"), per_dim)
        groups = self.bank.shape[1] if mode == PER_DIMENSION else self.num_variables
        if mode == DISTINCT and groups > len(self.bank):
            raise BadRequest(f"DRAW distinct needs at least {groups} stored latents (one per variable); the bank "
                             f"has {len(self.bank)}")
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
        return n, seed, mode, base, mask

    def _respond(self, request):
        pb = self.pb
        if self.latents_from == FROM_PRIOR:
            n, seed = self._count_and_seed(request)
            return pb.InferenceResponse([pb.Tensor("LATENT", draw_prior(*self.prior, n, seed))])
        n, seed, mode, base, mask = self._hybrid_request(request)
        latents, source = draw_controlled(self.bank, self.variable_of_dim, n, seed, mode, base, mask)
        return pb.InferenceResponse([pb.Tensor("LATENT", latents), pb.Tensor("SOURCE_INDEX", source),
                                     pb.Tensor("DRAW_MODE", np.array([mode.encode()], dtype=np.object_))])

    def execute(self, requests):
        pb = self.pb
        responses = []
        for request in requests:
            try:
                responses.append(self._respond(request))
            except BadRequest as e:
                responses.append(pb.InferenceResponse(error=bad_request(pb, f"{self.model_name}: {e}")))
        return responses
