"""Hybrid sampler (Leeb et al., 2023, section 2.2) with controllable generation, and prior sampler, as one
python-backend model file. The config parameter ``latents_from`` picks the role:

* ``bank`` (``NAME_sampler``, and ``NAME_hybrid_sample`` itself): the bank holds N latent vectors encoded from the
  training set and a partition of the latent dimensions into variables. A new latent takes each variable from a
  stored vector chosen uniformly, so it follows the product of the marginals of the learned code without a prior.
  Three draw modes (input ``DRAW``; the output ``DRAW_MODE`` names the one used):

  - ``independent`` (default, the paper's definition): each variable (whole chunk) from its own uniform choice of
    the N vectors, with replacement, so two variables of one sample may come from the same stored vector;
  - ``distinct``: each variable from a different stored vector (without replacement; needs N >= k);
  - ``per_dimension``: each latent dimension on its own, with replacement (the authors' code default; also asked
    for by ``PER_DIMENSION=true``).

  Controllable generation (as in the paper): with ``BASE`` and ``MASK``, the variables whose mask is true are
  re-drawn from the bank and the others kept from BASE. The draw is made the same way with or without a mask, so
  MASK all true gives exactly the plain hybrid samples of that SEED, and MASK all false gives BASE.
* ``prior`` (``NAME_prior_sampler``, and ``NAME_prior_sample`` itself; models with a prior only): latents drawn
  from the model's prior N(prior_mean, diag(prior_std²)), both stored in the bank file; one
  ``numpy.random.Generator`` per request, seeded from SEED.

The bank draw is the counter-based one of ``core/draw.py`` (integer arithmetic keyed on SEED, sample and
variable), which ``sae export`` copies beside this file as ``sae_draw.py``, so a client can recompute SOURCE_INDEX.
The tensor names and limits come from the wire contract (``core/wire.py``, copied as ``sae_wire.py``) and the
bank from ``core/bank_file.py`` (``sae_bank_file.py``).

The sampling models (``NAME_hybrid_sample``, ``NAME_prior_sample``) also decode their latents, one of two ways:

* parameter ``decode_model`` (what ``sae export`` writes): a BLS call into ``NAME_decode``
  (``repository/templates/bls.py``, copied as ``sae_bls.py``), whose dynamic batcher merges the latents of
  concurrent sampling requests, and of direct decode and traverse requests, into one ONNX Runtime call of up to its
  ``max_batch_size`` rows. The draw stays per request here, so each request's SEED, DRAW, BASE/MASK and NUM_SAMPLES
  apply to its own rows only, and decode checks each caller's latents and images on their own.
* parameter ``onnx_file``: the decoder graph in this process, with the ONNX Runtime session the decode model opens
  (``onnx_model.open_session``, copied beside as ``sae_onnx_model.py``); one hop fewer, but each request is decoded
  alone.

Either way the model answers ``IMAGE`` (fp32) and, when requested, ``IMAGE_U8`` (``round(clip(IMAGE, 0, 1) * 255)``).
"""

import importlib.util
import json
import os
import sys
from typing import Any

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

draw = common.companion("sae_draw", "sae.core.draw")
wire = common.companion("sae_wire", "sae.core.wire")
bank_file = common.companion("sae_bank_file", "sae.core.bank_file")
bls = common.companion("sae_bls", "sae.repository.templates.bls")
# the decoder's session and checks
onnx_model = common.companion("sae_onnx_model", "sae.repository.templates.onnx_model")
INDEPENDENT, DISTINCT, PER_DIMENSION, DRAW_MODES = draw.INDEPENDENT, draw.DISTINCT, draw.PER_DIMENSION, draw.DRAW_MODES


def draw_hybrid(
    bank: np.ndarray, variable_of_dim: np.ndarray, num_samples: int, seed: int, mode: str = INDEPENDENT
) -> tuple[np.ndarray, np.ndarray]:
    """Return (latents [n, D] float32, source index [n, groups] int64).

    ``variable_of_dim[d]`` is the variable that latent dimension d belongs to. The groups are the variables
    (``independent``, ``distinct``: the dimensions of one variable come from the same stored vector) or the single
    dimensions (``per_dimension``); :func:`sae.core.draw.source_index` chooses each group's stored vector.
    """
    if mode not in DRAW_MODES:
        raise ValueError(f"draw mode must be one of {', '.join(DRAW_MODES)}, got {mode!r}")
    num_stored, dim = bank.shape
    groups = np.arange(dim) if mode == PER_DIMENSION else np.asarray(variable_of_dim)
    source = draw.source_index(seed, num_samples, int(groups.max()) + 1, num_stored, mode)
    latents = bank[source[:, groups], np.arange(dim)]
    return latents.astype(np.float32), source


def draw_controlled(
    bank: np.ndarray,
    variable_of_dim: np.ndarray,
    num_samples: int,
    seed: int,
    mode: str = INDEPENDENT,
    base: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Hybrid samples whose unmasked variables are kept from ``base`` ([1, D] or [n, D]).

    ``mask[v]`` true: variable v is re-drawn from the bank; false: kept from base (its source index is -1). In
    per-dimension mode a variable's mask applies to each of its dimensions.
    """
    latents, source = draw_hybrid(bank, variable_of_dim, num_samples, seed, mode)
    if mask is None:
        return latents, source
    if base is None:  # the request checks refuse a MASK without a BASE
        raise ValueError("a MASK needs a BASE: the latent(s) whose unmasked variables are kept")
    redrawn_dims = np.asarray(mask, bool)[variable_of_dim]
    latents = np.where(redrawn_dims, latents, np.broadcast_to(base, latents.shape)).astype(np.float32)
    redrawn_groups = redrawn_dims if mode == PER_DIMENSION else np.asarray(mask, bool)
    return latents, np.where(redrawn_groups, source, -1).astype(np.int64)


def draw_prior(mean: np.ndarray, std: np.ndarray, num_samples: int, seed: int) -> np.ndarray:
    """[n, D] float32 latents from N(mean, diag(std²)), from one generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((num_samples, len(mean)))
    return (np.asarray(mean, np.float64) + np.asarray(std, np.float64) * noise).astype(np.float32)


def read_scalar(pb, request, name, default=None):
    tensor = pb.get_input_tensor_by_name(request, name)
    if tensor is None:
        if default is None:
            raise common.BadRequest(f"input {name} is required")
        return default
    value = tensor.as_numpy().reshape(-1)
    if value.size != 1:
        raise common.BadRequest(f"input {name} must hold exactly one value, got shape {list(tensor.as_numpy().shape)}")
    return value[0]


def draw_mode(draw, per_dimension: bool) -> str:
    """The mode a request asks for: ``DRAW`` (bytes or str, None when absent) and the boolean ``PER_DIMENSION``."""
    if draw is None:
        return PER_DIMENSION if per_dimension else INDEPENDENT
    mode = draw.decode(errors="replace") if isinstance(draw, bytes) else str(draw)
    if mode not in DRAW_MODES:
        raise common.BadRequest(f"DRAW must be one of {', '.join(DRAW_MODES)}, got {mode!r}")
    if per_dimension and mode != PER_DIMENSION:
        raise common.BadRequest(f"PER_DIMENSION=true asks for the per_dimension draw, but DRAW asks for {mode}")
    return mode


class TritonPythonModel:
    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        self.model_name = args["model_name"]
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.max_samples = int(params.get(wire.MAX_SAMPLES_PARAM, wire.DEFAULT_MAX_SAMPLES))
        self.latents_from = params.get(wire.LATENTS_FROM_PARAM, wire.FROM_BANK)
        if self.latents_from not in (wire.FROM_BANK, wire.FROM_PRIOR):
            raise pb_utils.TritonModelException(
                f"{self.model_name}: parameter {wire.LATENTS_FROM_PARAM} must be "
                f"{wire.FROM_BANK} or {wire.FROM_PRIOR}, got {self.latents_from!r}"
            )
        path = os.path.join(args["model_repository"], args["model_version"], bank_file.BANK_FILE)
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"{self.model_name}: {path} is missing; run `sae export` first")
        bank = bank_file.BankFile.read(path)
        self.bank = np.asarray(bank.latents, np.float32)
        self.variable_of_dim = np.asarray(bank.variable_of_dim, np.int64)
        self.num_variables = bank.num_variables
        self.prior: tuple[np.ndarray, np.ndarray] | None = None
        if bank.prior is not None:
            self.prior = (np.asarray(bank.prior[0], np.float32), np.asarray(bank.prior[1], np.float32))
        if self.latents_from == wire.FROM_PRIOR and self.prior is None:
            raise pb_utils.TritonModelException(
                f"{self.model_name}: {path} holds no prior (prior_mean, prior_std): the model has none to sample from"
            )
        self.session: Any = None  # the decoder graph (onnxruntime, untyped), for the models that decode in-process
        self.decode_model = params.get(wire.DECODE_MODEL_PARAM)  # or the served decoder they call (BLS)
        self.version = int(args["model_version"])  # the decoder's version they call: the set's, as theirs
        self.image_outputs = {o["name"] for o in config["output"]} & {wire.IMAGE, wire.IMAGE_U8}
        if "onnx_file" in params and self.decode_model is None:
            self.session = onnx_model.open_session(args, params, self.model_name)
            self.graph_input = self.session.get_inputs()[0].name

    def _count_and_seed(self, request) -> tuple[int, int]:
        pb = self.pb
        n = int(read_scalar(pb, request, wire.NUM_SAMPLES))
        if not 1 <= n <= self.max_samples:
            raise common.BadRequest(
                f"{wire.NUM_SAMPLES} must be in 1..{self.max_samples}, got {n}; split larger requests"
            )
        seed = int(read_scalar(pb, request, wire.SEED))
        if seed < 0:
            raise common.BadRequest(f"{wire.SEED} must be non-negative, got {seed}")
        return n, seed

    def _hybrid_request(self, request):
        pb = self.pb
        n, seed = self._count_and_seed(request)
        per_dim = bool(read_scalar(pb, request, wire.PER_DIMENSION, False))
        draw_t = pb.get_input_tensor_by_name(request, wire.DRAW)
        mode = draw_mode(None if draw_t is None else read_scalar(pb, request, wire.DRAW), per_dim)
        groups = self.bank.shape[1] if mode == PER_DIMENSION else self.num_variables
        if mode == DISTINCT and groups > len(self.bank):
            raise common.BadRequest(
                f"DRAW distinct needs at least {groups} stored latents (one per variable); the "
                f"bank has {len(self.bank)}"
            )
        base_t = pb.get_input_tensor_by_name(request, wire.BASE)
        mask_t = pb.get_input_tensor_by_name(request, wire.MASK)
        base = mask = None
        if mask_t is not None:
            if base_t is None:
                raise common.BadRequest("MASK needs BASE: the latent(s) whose unmasked variables are kept")
            mask = mask_t.as_numpy().reshape(-1).astype(bool)
            if mask.size != self.num_variables:
                raise common.BadRequest(
                    f"MASK must have one entry per variable ({self.num_variables}), got {mask.size}"
                )
        if base_t is not None:
            if mask is None:
                raise common.BadRequest(
                    "BASE needs MASK: say which variables to re-draw (true) and which to keep (false)"
                )
            base = base_t.as_numpy()
            dim = self.bank.shape[1]
            if base.ndim != 2 or base.shape[1] != dim or base.shape[0] not in (1, n):
                raise common.BadRequest(
                    f"BASE must have shape [1, {dim}] or [NUM_SAMPLES={n}, {dim}], got {list(base.shape)}"
                )
            if not np.isfinite(base).all():
                raise common.BadRequest("BASE contains NaN or infinite values")
            base = base.astype(np.float32)
        return n, seed, mode, base, mask

    def _images(self, request, latents: np.ndarray) -> list:
        """IMAGE and/or IMAGE_U8 of the latents, as the request asks (every image output of the config when it names
        no output)."""
        pb = self.pb
        wanted = (set(request.requested_output_names()) or self.image_outputs) & self.image_outputs
        cause = wire.BASE if self.latents_from == wire.FROM_BANK else wire.SEED
        if self.decode_model is not None:
            try:
                images = bls.call(
                    pb, self.decode_model, wire.LATENT, latents, wire.IMAGE, (onnx_model.TOO_LARGE,), self.version
                )
            except bls.Refused as e:  # the decoder refused the latents drawn from this request's inputs
                raise common.BadRequest(f"input {cause}: {e}") from None
            images = images.astype(np.float32, copy=False)
        elif self.session is None:  # _respond asks for images only with a decoder
            raise RuntimeError(f"{self.model_name}: no decoder to make images with")
        else:
            images = self.session.run(None, {self.graph_input: latents})[0].astype(np.float32, copy=False)
            onnx_model.check_output(cause, wire.IMAGE, images)  # its BadRequest is this model's (one sae_common)
        tensors = [pb.Tensor(wire.IMAGE, images)] if wire.IMAGE in wanted else []
        if wire.IMAGE_U8 in wanted:
            tensors.append(pb.Tensor(wire.IMAGE_U8, draw.to_uint8(images)))
        return tensors

    def _respond(self, request):
        pb = self.pb
        if self.latents_from == wire.FROM_PRIOR:
            n, seed = self._count_and_seed(request)
            if self.prior is None:  # initialize() refuses a prior sampler whose bank holds none
                raise RuntimeError(f"{self.model_name}: no prior to sample from")
            latents = draw_prior(self.prior[0], self.prior[1], n, seed)
            tensors = [pb.Tensor(wire.LATENT, latents)]
        else:
            n, seed, mode, base, mask = self._hybrid_request(request)
            latents, source = draw_controlled(self.bank, self.variable_of_dim, n, seed, mode, base, mask)
            tensors = [
                pb.Tensor(wire.LATENT, latents),
                pb.Tensor(wire.SOURCE_INDEX, source),
                pb.Tensor(wire.DRAW_MODE, np.array([mode.encode()], dtype=np.object_)),
            ]
        if self.session is not None or self.decode_model is not None:
            tensors += self._images(request, latents)
        return pb.InferenceResponse(tensors)

    def execute(self, requests):
        pb = self.pb
        responses = []
        for request in requests:
            try:
                responses.append(self._respond(request))
            except common.BadRequest as e:
                responses.append(pb.InferenceResponse(error=common.bad_request(pb, f"{self.model_name}: {e}")))
            except bls.VersionUnavailable as e:
                responses.append(pb.InferenceResponse(error=bls.unavailable(pb, f"{self.model_name}: {e}")))
            except Exception as e:  # a decoder failure must not take the instance down
                responses.append(pb.InferenceResponse(error=pb.TritonError(f"{self.model_name}: {e}")))
        return responses
