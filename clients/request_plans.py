"""Request checks and plans of the clients: every input is checked against the served configuration before it is
sent (errors name the model and the input), and a call is planned as the requests it takes (split by the model's
limits, each split sample seeded from the call's SEED). Shared by the sync and asyncio clients."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard, cast

import numpy as np
import numpy.typing as npt
import tritonclient.grpc as grpcclient
from tritonclient.utils import np_to_triton_dtype

from sae.clients.model_info import ModelInfo
from sae.clients.results import HybridSamples
from sae.core import wire
from sae.core.draw import DRAW_MODES, PER_DIMENSION
from sae.core.errors import InvalidInputError


def _is_int(value: object) -> TypeGuard[int | np.integer[Any]]:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_images(info: ModelInfo, images: npt.ArrayLike, input_name: str = wire.IMAGE) -> npt.NDArray[np.uint8]:
    """uint8 [N > 0, *dims], as a contiguous array."""
    images = np.asarray(images)
    dims = list(info.input(input_name).dims)
    if images.dtype != np.uint8:
        raise InvalidInputError(
            f"{info.name}: input {input_name} must be uint8 in 0..255, got {images.dtype}", info.name, input_name
        )
    if images.ndim != 1 + len(dims) or list(images.shape[1:]) != dims or len(images) == 0:
        raise InvalidInputError(
            f"{info.name}: input {input_name} must have shape [N>0, {', '.join(map(str, dims))}], "
            f"got {list(images.shape)}",
            info.name,
            input_name,
        )
    return np.ascontiguousarray(images)


def check_latents(
    info: ModelInfo,
    latents: npt.ArrayLike,
    input_name: str = wire.LATENT,
    dim: int | None = None,
    rows: Sequence[int] | None = None,
) -> npt.NDArray[np.float32]:
    """Finite float [N, D] -> float32. ``rows``: the allowed row counts (default: any N > 0)."""
    latents = np.asarray(latents)
    dim = dim if dim is not None else info.input(input_name).dims[-1]
    if not np.issubdtype(latents.dtype, np.floating):
        raise InvalidInputError(
            f"{info.name}: input {input_name} must be floating point, got {latents.dtype}", info.name, input_name
        )
    wanted = "N>0" if rows is None else " or ".join(map(str, sorted(set(rows))))
    if (
        latents.ndim != 2
        or latents.shape[1] != dim
        or len(latents) == 0
        or (rows is not None and len(latents) not in rows)
    ):
        raise InvalidInputError(
            f"{info.name}: input {input_name} must have shape [{wanted}, {dim}], got {list(latents.shape)}",
            info.name,
            input_name,
        )
    if not np.isfinite(latents).all():
        raise InvalidInputError(
            f"{info.name}: input {input_name} contains NaN or infinite values", info.name, input_name
        )
    return np.ascontiguousarray(latents, dtype=np.float32)


def _check_int(model: str, name: str, value: object, low: int, high: int) -> int:
    if not _is_int(value) or not low <= value <= high:
        raise InvalidInputError(
            f"{model}: input {name} must be an integer in {low}..{high}, got {value!r}", model, name
        )
    return int(value)


# --------------------------------------------------------------------------------------------------- request plans


Array = npt.NDArray[np.generic]  # a tensor of any dtype, as a request sends it or a response returns it
Request = dict[str, Array]  # input name -> numpy array: one inference request


def split_rows(input_name: str, array: Array, limit: int) -> list[Request]:
    """Requests of at most ``limit`` rows (``limit`` 0: one request)."""
    limit = limit or len(array)
    return [{input_name: array[i : i + limit]} for i in range(0, len(array), limit)]


def join_outputs(parts: list[dict[str, Array]]) -> dict[str, Array]:
    """Concatenate split requests' outputs along the batch axis (BYTES outputs: the first request's)."""
    return {
        k: parts[0][k] if parts[0][k].dtype == np.object_ else np.concatenate([p[k] for p in parts]) for k in parts[0]
    }


def part_seed(seed: int, part: int) -> int:
    """The seed of the ``part``-th request of a split sample; part 0 keeps ``seed``, so a call that fits in one
    request equals a plain request with the same SEED."""
    return seed if part == 0 else int(np.random.SeedSequence([seed, part]).generate_state(1)[0])


def sample_parts(n: int, seed: int, limit: int) -> list[tuple[int, int]]:
    """(count, SEED) of each request of a split sample: requests of at most ``limit``, part p seeded
    ``part_seed(seed, p)``. The client's split calls and ``sae sample``'s streamed runs share it."""
    return [(min(limit, n - start), part_seed(seed, part)) for part, start in enumerate(range(0, n, limit))]


def draw_mode(model: str, draw: str | None, per_dimension: bool | np.bool_) -> str | None:
    """The draw mode asked for by ``draw`` and the boolean ``per_dimension``; None when neither asks."""
    if not isinstance(per_dimension, (bool, np.bool_)):
        raise InvalidInputError(
            f"{model}: input PER_DIMENSION must be a bool, got {per_dimension!r}", model, wire.PER_DIMENSION
        )
    if draw is None:
        return PER_DIMENSION if per_dimension else None
    if draw not in DRAW_MODES:
        raise InvalidInputError(
            f"{model}: input DRAW must be one of {', '.join(DRAW_MODES)}, got {draw!r}", model, wire.DRAW
        )
    if per_dimension and draw != PER_DIMENSION:
        raise InvalidInputError(f"{model}: input DRAW {draw!r} contradicts per_dimension=True", model, wire.DRAW)
    return draw


def plan_draws(info: ModelInfo, limit: int, n: int, seed: int) -> list[Request]:
    """NUM_SAMPLES/SEED requests for ``n`` samples, each at most ``limit``; part p is seeded ``part_seed(seed, p)``."""
    n = _check_int(info.name, wire.NUM_SAMPLES, n, 1, wire.MAX_SAMPLES_PER_CALL)
    seed = _check_int(info.name, wire.SEED, seed, 0, wire.MAX_SEED)
    return [
        {wire.NUM_SAMPLES: np.array([count], np.int64), wire.SEED: np.array([request_seed], np.int64)}
        for count, request_seed in sample_parts(n, seed, limit)
    ]


def plan_sample(
    info: ModelInfo,
    limit: int,
    n: int,
    seed: int,
    base: npt.ArrayLike | None = None,
    mask: npt.ArrayLike | None = None,
    per_dimension: bool = False,
    draw: str | None = None,
) -> list[Request]:
    """hybrid_sample requests for ``n`` samples, each at most ``limit`` (see :meth:`SAEClient.sample`)."""
    model = info.name
    requests = plan_draws(info, limit, n, seed)
    n = sum(int(r[wire.NUM_SAMPLES][0]) for r in requests)
    mode = draw_mode(model, draw, per_dimension)
    if wire.DRAW not in info.inputs and mode not in (None, PER_DIMENSION):
        info.input(wire.DRAW)  # raises, naming the input
    if mode == PER_DIMENSION and not {wire.DRAW, wire.PER_DIMENSION} & set(info.inputs):
        info.input(wire.PER_DIMENSION)
    if mask is not None and base is None:
        raise InvalidInputError(
            f"{model}: input MASK needs BASE (MASK=false keeps a variable from BASE)", model, wire.MASK
        )
    base_rows = None
    if base is not None:
        dim = info.input(wire.BASE).dims[-1]
        base = np.asarray(base)
        base = base[None] if base.ndim == 1 else base
        base_rows = check_latents(info, base, wire.BASE, dim=dim, rows=(1, n))
    if mask is not None:
        spec = info.input(wire.MASK)
        mask = np.asarray(mask)
        if mask.dtype != np.bool_:
            raise InvalidInputError(
                f"{model}: input MASK must be bool (true = re-draw the variable), got {mask.dtype}", model, wire.MASK
            )
        if mask.ndim != 1 or (spec.dims[-1] > 0 and len(mask) != spec.dims[-1]):
            raise InvalidInputError(
                f"{model}: input MASK must have shape [{spec.dims[-1]}] (one entry per variable), "
                f"got {list(mask.shape)}",
                model,
                wire.MASK,
            )
    start = 0
    for request in requests:
        count = int(request[wire.NUM_SAMPLES][0])
        if wire.DRAW in info.inputs:
            request[wire.DRAW] = np.array([(mode or DRAW_MODES[0]).encode()], dtype=np.object_)
        elif wire.PER_DIMENSION in info.inputs:
            request[wire.PER_DIMENSION] = np.array([mode == PER_DIMENSION])
        if base_rows is not None:
            request[wire.BASE] = base_rows if len(base_rows) == 1 else base_rows[start : start + count]
        if mask is not None:
            request[wire.MASK] = np.ascontiguousarray(mask)
        start += count
    return requests


def plan_traverse(info: ModelInfo, latent: npt.ArrayLike, dimension: int, steps: int) -> Request:
    latent = np.asarray(latent)
    dim = info.input(wire.LATENT).dims[-1]
    start = check_latents(info, latent[None] if latent.ndim == 1 else latent, wire.LATENT, dim=dim, rows=(1,))
    low = int(info.parameters.get("min_steps") or wire.TRAVERSE_STEPS[0])
    high = int(info.parameters.get("max_steps") or wire.TRAVERSE_STEPS[1])
    return {
        wire.LATENT: start[0],
        wire.DIMENSION: np.array([_check_int(info.name, wire.DIMENSION, dimension, 0, dim - 1)]),
        wire.STEPS: np.array([_check_int(info.name, wire.STEPS, steps, low, high)]),
    }


def sample_outputs(info: ModelInfo, image_dtype: str = "float32") -> list[str]:
    """The outputs a hybrid_sample call requests: every output but the image of the other dtype."""
    if image_dtype not in wire.IMAGE_OUTPUTS:
        raise InvalidInputError(
            f"{info.name}: image_dtype must be one of {', '.join(wire.IMAGE_OUTPUTS)}, got {image_dtype!r}",
            info.name,
            wire.IMAGE,
        )
    wanted = wire.IMAGE_OUTPUTS[image_dtype]
    if wanted not in info.outputs:
        raise InvalidInputError(
            f"{info.name}: the served model has no output {wanted} (it has "
            f"{', '.join(info.outputs)}); re-export it for image_dtype={image_dtype!r}",
            info.name,
            wanted,
        )
    return [o for o in info.outputs if o == wanted or o not in wire.IMAGE_OUTPUTS.values()]


def samples_from(outputs: Mapping[str, Array], requests: list[Request]) -> HybridSamples:
    """HybridSamples of joined outputs; the mode is the server's DRAW_MODE, else what the requests asked for."""
    mode = outputs.get(wire.DRAW_MODE)
    if mode is not None and mode.size:
        name = mode.reshape(-1)[0].decode()
    elif wire.DRAW in requests[0]:
        name = requests[0][wire.DRAW][0].decode()
    else:
        name = PER_DIMENSION if requests[0].get(wire.PER_DIMENSION, [False])[0] else DRAW_MODES[0]
    images = outputs[wire.IMAGE] if wire.IMAGE in outputs else outputs[wire.IMAGE_U8]
    # the dtypes the wire contract gives these outputs (FP32 or UINT8 images, FP32 latents, INT64 indices)
    return HybridSamples(
        cast("npt.NDArray[np.float32] | npt.NDArray[np.uint8]", images),
        cast("npt.NDArray[np.float32]", outputs[wire.LATENT]),
        cast("npt.NDArray[np.int64]", outputs[wire.SOURCE_INDEX]),
        name,
    )


def sample_limit(hybrid: ModelInfo, step_infos: Sequence[ModelInfo]) -> int:
    """Samples per request of a sampling model (hybrid_sample, prior_sample): its own ``max_samples`` parameter
    (one-hop models), or for an ensemble its sampler's, capped by the ``max_batch_size`` of the later ensemble steps
    (the decoder takes the whole draw as one batch); fallback 256."""
    limit = int(hybrid.parameters.get("max_samples") or wire.DEFAULT_MAX_SAMPLES)
    if step_infos:
        limit = int(step_infos[0].parameters.get("max_samples") or wire.DEFAULT_MAX_SAMPLES)
        for later in step_infos[1:]:
            if later.max_batch_size > 0:
                limit = min(limit, later.max_batch_size)
    return max(1, limit)


def make_inputs(request: Request) -> list[grpcclient.InferInput]:
    inputs: list[grpcclient.InferInput] = []
    for name, array in request.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(np.ascontiguousarray(array))
        inputs.append(tensor)
    return inputs
