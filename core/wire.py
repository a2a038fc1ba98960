"""The wire contract of the served models (README, "Served models"): roles, tensors, limits and the name prefix.

One self-contained file needing only the standard library and numpy: ``sae export`` copies it beside the
python-backend ``model.py`` files as ``sae_wire.py`` (``repository/templates/__init__.py``, ``COMPANIONS``),
because Triton's python stub cannot import this package. The config generator (``repository/configs.py``), the
templates, the validator and the clients all take the names, dtypes, shape rules and limits from here.

Shape rules are the config's ``dims`` written with symbols: ``H`` the image side (H = W), ``D`` the latent
dimension, ``K`` the number of variables of the bank's partition, ``N`` a variable axis (``-1``: the sample count,
the traversal's steps or the groups of SOURCE_INDEX). A batching role (``batched``) leaves the batch axis out.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, overload

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

_Float = TypeVar("_Float", bound="np.floating[Any]")

# ---------------------------------------------------------------------------------------------------- roles

ENCODE, DECODE, RECONSTRUCT = "encode", "decode", "reconstruct"
SAMPLER, PRIOR_SAMPLER, TRAVERSE = "sampler", "prior_sampler", "traverse"
HYBRID_SAMPLE, PRIOR_SAMPLE = "hybrid_sample", "prior_sample"
ROLES = (ENCODE, DECODE, SAMPLER, PRIOR_SAMPLER, TRAVERSE, RECONSTRUCT, HYBRID_SAMPLE, PRIOR_SAMPLE)  # leaves first
PRIOR_ROLES = (PRIOR_SAMPLER, PRIOR_SAMPLE)  # served only for models with a prior
SET_ROLES = (HYBRID_SAMPLE, ENCODE)  # every exported set serves both: they mark a set

# ---------------------------------------------------------------------------------------------------- tensor names

IMAGE, IMAGE_U8, LATENT, RECONSTRUCTION = "IMAGE", "IMAGE_U8", "LATENT", "RECONSTRUCTION"
NUM_SAMPLES, SEED, PER_DIMENSION, DRAW, BASE, MASK = "NUM_SAMPLES", "SEED", "PER_DIMENSION", "DRAW", "BASE", "MASK"
SOURCE_INDEX, DRAW_MODE = "SOURCE_INDEX", "DRAW_MODE"
DIMENSION, STEPS = "DIMENSION", "STEPS"

# ---------------------------------------------------------------------------------------------------- config parameters

# Names in the generated configs' ``parameters`` that the templates read and the validator checks.
MAX_SAMPLES_PARAM = "max_samples"  # a sampling model's NUM_SAMPLES ceiling per request
MIN_STEPS_PARAM, MAX_STEPS_PARAM = "min_steps", "max_steps"  # traverse's STEPS range
BANK_SIZE_PARAM = "bank_size"  # the stored latents of the model's bank, where recorded
LATENTS_FROM_PARAM = "latents_from"  # which latents a sampler draws: FROM_BANK or FROM_PRIOR
FROM_BANK, FROM_PRIOR = "bank", "prior"  # hybrid samples from the bank; samples of the model's prior
DRAW_MODES_PARAM = "draw_modes"  # the draw modes a hybrid_sample model serves, comma-separated
DECODE_MODEL_PARAM = "decode_model"  # the served decoder a python model calls through BLS

# ---------------------------------------------------------------------------------------------------- limits

DEFAULT_URL = "127.0.0.1:8001"  # gRPC address of a server that `sae serve` starts with its defaults


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP address (127.x.x.x, ::1); a host name or a malformed address is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


DEFAULT_MAX_SAMPLES = 256  # NUM_SAMPLES ceiling of hybrid_sample and prior_sample when a config does not say
MAX_SAMPLES_PER_CALL = 1 << 20  # one client call's ceiling: a million 64x64 images is already 47 GiB of float32
TRAVERSE_STEPS = (2, 64)  # STEPS range when the traverse config's min_steps/max_steps do not say
MAX_SEED = (1 << 63) - 1  # SEED travels as int64
UINT8_SCALE = 255.0  # uint8 pixel value of intensity 1.0 (IMAGE_U8, the encoder's input)


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # Triton's config type: TYPE_UINT8, TYPE_FP32, TYPE_INT64, TYPE_BOOL, TYPE_STRING
    dims: tuple[int | str, ...]  # the config's dims, with the symbols H, D, K and N (see the module docstring)
    optional: bool = False  # a request may leave it out (inputs); a flavour may not serve it (see RoleTensors)


@dataclass(frozen=True)
class RoleTensors:
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    batched: bool  # max_batch_size > 0: dims leave the batch axis out


_IMAGE_HWC = ("H", "H", 3)
_COUNT_AND_SEED = (Tensor(NUM_SAMPLES, "TYPE_INT64", (1,)), Tensor(SEED, "TYPE_INT64", (1,)))
_HYBRID_CONTROLS = (
    Tensor(PER_DIMENSION, "TYPE_BOOL", (1,), True),
    Tensor(DRAW, "TYPE_STRING", (1,), True),
    Tensor(BASE, "TYPE_FP32", ("N", "D"), True),
    Tensor(MASK, "TYPE_BOOL", ("K",), True),
)
_HYBRID_DRAW = (
    Tensor(LATENT, "TYPE_FP32", ("N", "D")),
    Tensor(SOURCE_INDEX, "TYPE_INT64", ("N", "N")),
    Tensor(DRAW_MODE, "TYPE_STRING", (1,)),
)
_IMAGES = Tensor(IMAGE, "TYPE_FP32", ("N", *_IMAGE_HWC))
_IMAGES_U8 = Tensor(IMAGE_U8, "TYPE_UINT8", ("N", *_IMAGE_HWC))
_PRIOR_DRAW = (Tensor(LATENT, "TYPE_FP32", ("N", "D")),)

# The native flavour's hybrid_sample takes NUM_SAMPLES and SEED only (its optional inputs are absent there).
ROLE_TENSORS: dict[str, RoleTensors] = {
    ENCODE: RoleTensors((Tensor(IMAGE, "TYPE_UINT8", _IMAGE_HWC),), (Tensor(LATENT, "TYPE_FP32", ("D",)),), True),
    DECODE: RoleTensors((Tensor(LATENT, "TYPE_FP32", ("D",)),), (Tensor(IMAGE, "TYPE_FP32", _IMAGE_HWC),), True),
    RECONSTRUCT: RoleTensors(
        (Tensor(IMAGE, "TYPE_UINT8", _IMAGE_HWC),), (Tensor(RECONSTRUCTION, "TYPE_FP32", _IMAGE_HWC),), True
    ),
    SAMPLER: RoleTensors(_COUNT_AND_SEED + _HYBRID_CONTROLS, _HYBRID_DRAW, False),
    PRIOR_SAMPLER: RoleTensors(_COUNT_AND_SEED, _PRIOR_DRAW, False),
    TRAVERSE: RoleTensors(
        (Tensor(LATENT, "TYPE_FP32", ("D",)), Tensor(DIMENSION, "TYPE_INT64", (1,)), Tensor(STEPS, "TYPE_INT64", (1,))),
        (_IMAGES, Tensor(LATENT, "TYPE_FP32", ("N", "D"))),
        False,
    ),
    HYBRID_SAMPLE: RoleTensors(_COUNT_AND_SEED + _HYBRID_CONTROLS, (_IMAGES, _IMAGES_U8) + _HYBRID_DRAW, False),
    PRIOR_SAMPLE: RoleTensors(_COUNT_AND_SEED, (_IMAGES,) + _PRIOR_DRAW, False),
}
IMAGE_OUTPUTS = {"float32": IMAGE, "uint8": IMAGE_U8}  # the image output a sample call asks for, by its dtype


def resolve_dims(dims: tuple[int | str, ...], image_size: int, latent_dim: int, num_variables: int) -> list[int]:
    """A shape rule's dims for one model: ``("N", "D")`` -> ``[-1, latent_dim]``."""
    values = {"H": image_size, "D": latent_dim, "K": num_variables, "N": -1}
    resolved = []
    for d in dims:
        if isinstance(d, int):
            resolved.append(d)
        elif d in values:
            resolved.append(values[d])
        else:
            raise ValueError(f"shape rule {dims}: unknown symbol {d!r} (use H, D, K, N or an integer)")
    return resolved


def tensor(role: str, kind: str, name: str) -> Tensor:
    """The contract's ``kind`` ("input" or "output") tensor ``name`` of ``role``."""
    if role not in ROLE_TENSORS:
        raise ValueError(f"role {role!r}: choose one of {', '.join(ROLES)}")
    if kind not in ("input", "output"):
        raise ValueError(f"kind {kind!r}: choose input or output")
    tensors = ROLE_TENSORS[role].inputs if kind == "input" else ROLE_TENSORS[role].outputs
    for t in tensors:
        if t.name == name:
            return t
    raise ValueError(f"{role} has no {kind} {name!r} (it has {', '.join(t.name for t in tensors)})")


def served_name(model: str, role: str) -> str:
    """The served model of ``role`` in the set exported as ``model``: ``NAME_role``, or ``role`` for ``""``."""
    return f"{model}_{role}" if model else role


def set_of(served: str) -> str | None:
    """The export name behind a served model name that marks a set (``SET_ROLES``), '' for the unprefixed set;
    None for any other name."""
    for role in SET_ROLES:
        if served == role:
            return ""
        if served.endswith("_" + role):
            return served[: -len(role) - 1]
    return None


@overload
def to_float_images(images: npt.ArrayLike) -> npt.NDArray[np.float32]: ...
@overload
def to_float_images(images: npt.ArrayLike, dtype: type[_Float]) -> npt.NDArray[_Float]: ...


def to_float_images(images: npt.ArrayLike, dtype: type[np.floating[Any]] = np.float32) -> npt.NDArray[np.floating[Any]]:
    """uint8 pixels (or their means) -> intensities in [0, 1] (``x / 255``) of ``dtype``: what the encoder graph
    (``export/graphs.py``) and the training pipeline (``training/pipeline.py``) do first, in torch."""
    intensities: npt.NDArray[np.floating[Any]] = np.asarray(images).astype(dtype) / np.dtype(dtype).type(UINT8_SCALE)
    return intensities
