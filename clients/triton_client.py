"""gRPC client for the served SAE models. Needs numpy and tritonclient only (no torch).

The wire contract (README, "Served models"): a model set exported with ``--name NAME`` is served as ``NAME_encode``,
``NAME_decode``, ``NAME_reconstruct``, ``NAME_hybrid_sample`` and ``NAME_traverse`` (no prefix for the empty name),
and, for models with a prior, ``NAME_prior_sample``::

    with SAEClient("127.0.0.1:8001", model="shapes") as client:
        latents = client.encode(images)             # uint8 [N, H, W, 3] -> float32 [N, D], split by max_batch_size
        samples = client.sample(64, seed=0)         # hybrid samples: .images, .latents, .source_index, .draw_mode
        if client.has_prior():
            prior = client.prior_sample(64, seed=0)  # .images, .latents drawn from the model's prior

Everything a request needs is checked here before it is sent, against the model configuration read from the server,
so that a bad input is refused with a message naming the model and the input. UNAVAILABLE (and DEADLINE_EXCEEDED:
every call here is idempotent) is retried with bounded, jittered backoff inside each call's deadline.
:class:`clients.aio.AsyncSAEClient` is the asyncio twin; both share the checks and request plans of this module.
"""
from __future__ import annotations

import itertools
import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype, triton_to_np_dtype

from clients.draw import DRAW_MODES, to_uint8  # noqa: F401 (re-exported: the client's names)
from clients.errors import (ClientError, ClientTimeoutError, InferenceError, InvalidInputError, ModelNotReadyError,
                            ModelNotServedError, ServerNotFoundError, ServerUnavailableError)

DEFAULT_URL = "127.0.0.1:8001"
DEFAULT_MAX_SAMPLES = 256  # hybrid_sample's per-request limit when the sampler's config does not say
MAX_SAMPLES = 1 << 20  # one call's ceiling: a million 64x64 images is already 47 GiB of float32
TRAVERSE_STEPS = (2, 64)  # the wire contract's range for STEPS (the traverse config's min_steps/max_steps win)
_RETRYABLE = ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED")


def channel_args() -> list[tuple[str, int]]:
    """Options of the one gRPC channel a client opens and keeps for its lifetime (a channel per call cost 0.5-0.9 ms
    more per batch-1 request; docs/performance.md): tritonclient's own message limits and keepalive, plus no
    compression (tensors barely compress and it costs CPU on both ends), no HTTP proxy (an ``http_proxy`` in the
    environment must not reroute a loopback server) and no BDP probe pings."""
    from tritonclient.grpc._client import MAX_GRPC_MESSAGE_SIZE, KeepAliveOptions

    keepalive = KeepAliveOptions()
    return [("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
            ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
            ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
            ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
            ("grpc.default_compression_algorithm", 0),  # grpc_compression_algorithm GRPC_COMPRESS_NONE
            ("grpc.enable_http_proxy", 0),
            ("grpc.http2.bdp_probe", 0)]


# --------------------------------------------------------------------------------------------------- results


IMAGE_DTYPES = {"float32": "IMAGE", "uint8": "IMAGE_U8"}  # the image output a sample call asks for


@dataclass
class HybridSamples:
    images: np.ndarray  # float32 [n, H, W, 3] in [0, 1]; uint8 (round(clip(x, 0, 1) * 255)) with image_dtype="uint8"
    latents: np.ndarray  # float32 [n, D]
    source_index: np.ndarray  # int64 [n, groups]: stored latent each variable (or dimension) came from; -1 = from BASE
    draw_mode: str  # one of DRAW_MODES, as the server reports it

    @property
    def per_dimension(self) -> bool:
        return self.draw_mode == "per_dimension"


@dataclass
class PriorSamples:
    images: np.ndarray  # float32 [n, H, W, 3] in [0, 1]
    latents: np.ndarray  # float32 [n, D], drawn from the model's prior


@dataclass
class Traversal:
    images: np.ndarray  # float32 [steps, H, W, 3]
    latents: np.ndarray  # float32 [steps, D]: the start latent with `dimension` swept from its min to its max
    dimension: int


# --------------------------------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # Triton's name: UINT8, FP32, INT64, BOOL, BYTES
    dims: tuple[int, ...]  # without the batch axis when the model batches; -1 = variable
    optional: bool = False


@dataclass(frozen=True)
class ModelInfo:
    """What the client needs from a served model's configuration."""

    name: str  # the served name, prefix included
    max_batch_size: int  # 0: the model does not batch
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    parameters: dict[str, str] = field(default_factory=dict)
    steps: tuple[str, ...] = ()  # an ensemble's component models, in order

    @classmethod
    def from_config(cls, config: dict) -> ModelInfo:
        """From ``get_model_config(..., as_json=True)["config"]`` (protobuf JSON: int64 dims come as strings)."""

        def specs(entries):
            return {e["name"]: TensorSpec(e["name"], e.get("data_type", "TYPE_INVALID").removeprefix("TYPE_"),
                                          tuple(int(d) for d in e.get("dims", ())), bool(e.get("optional", False)))
                    for e in entries}

        steps = config.get("ensemble_scheduling", {}).get("step", [])
        return cls(name=config["name"], max_batch_size=int(config.get("max_batch_size", 0)),
                   inputs=specs(config.get("input", [])), outputs=specs(config.get("output", [])),
                   parameters={k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()},
                   steps=tuple(s["model_name"] for s in steps))

    def input(self, name: str) -> TensorSpec:
        if name not in self.inputs:
            raise InvalidInputError(f"{self.name}: the served model has no input {name} "
                                    f"(it takes {', '.join(self.inputs) or 'nothing'})", self.name, name)
        return self.inputs[name]


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries of UNAVAILABLE / DEADLINE_EXCEEDED with full-jitter exponential backoff."""

    attempts: int = 4  # tries in all, the first included
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 1.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be >= 1, got {self.attempts}")
        if not 0 <= self.initial_backoff_s <= self.max_backoff_s:
            raise ValueError("RetryPolicy needs 0 <= initial_backoff_s <= max_backoff_s")

    def backoff_s(self, retry: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.max_backoff_s, self.initial_backoff_s * 2 ** retry))


class Retrier:
    """One call's retry state: its deadline and the tries made so far (shared by the sync and asyncio clients)."""

    def __init__(self, policy: RetryPolicy, timeout_s: float, model: str, url: str, rng: random.Random):
        self.policy, self.timeout_s, self.model, self.url, self.rng = policy, timeout_s, model, url, rng
        self.deadline = time.monotonic() + timeout_s
        self.tries = 0

    def remaining_s(self) -> float:
        return max(self.deadline - time.monotonic(), 1e-3)

    def next_delay(self, error: InferenceServerException) -> float:
        """Seconds to wait before the next try, or raise the client error for ``error`` when it is final."""
        self.tries += 1
        status = str(error.status())
        if status in _RETRYABLE and self.tries < self.policy.attempts:
            delay = self.policy.backoff_s(self.tries - 1, self.rng)
            if time.monotonic() + delay < self.deadline:
                return delay
        raise client_error(error, self.model, self.url, self.tries, self.timeout_s)


def _tries(n: int) -> str:
    return f"{n} try" if n == 1 else f"{n} tries"


def client_error(error: InferenceServerException, model: str, url: str, tries: int = 1,
                 timeout_s: float | None = None) -> ClientError:
    status, message = str(error.status()), error.message() or str(error)
    if status == "StatusCode.UNAVAILABLE":
        return ServerUnavailableError(f"{model}: server at {url} unavailable after {_tries(tries)}: {message}")
    if status == "StatusCode.DEADLINE_EXCEEDED":
        return ClientTimeoutError(f"{model}: no answer from {url} within the {timeout_s:g} s timeout "
                                  f"({_tries(tries)}): {message}")
    if status == "StatusCode.NOT_FOUND" or "unknown model" in message:
        return ModelNotServedError(f"{model}: not served at {url} ({message}); check the client's model= prefix "
                                   "and that `sae export --name` wrote it", model, status)
    return InferenceError(f"{model}: server at {url} refused the request: {message}", model, status)


# --------------------------------------------------------------------------------------------------- checks


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_images(info: ModelInfo, images, input_name: str = "IMAGE") -> np.ndarray:
    """uint8 [N > 0, *dims], as a contiguous array."""
    images = np.asarray(images)
    dims = list(info.input(input_name).dims)
    if images.dtype != np.uint8:
        raise InvalidInputError(f"{info.name}: input {input_name} must be uint8 in 0..255, got {images.dtype}",
                                info.name, input_name)
    if images.ndim != 1 + len(dims) or list(images.shape[1:]) != dims or len(images) == 0:
        raise InvalidInputError(f"{info.name}: input {input_name} must have shape [N>0, {', '.join(map(str, dims))}], "
                                f"got {list(images.shape)}", info.name, input_name)
    return np.ascontiguousarray(images)


def check_latents(info: ModelInfo, latents, input_name: str = "LATENT", dim: int | None = None,
                  rows: Sequence[int] | None = None) -> np.ndarray:
    """Finite float [N, D] -> float32. ``rows``: the allowed row counts (default: any N > 0)."""
    latents = np.asarray(latents)
    dim = dim if dim is not None else info.input(input_name).dims[-1]
    if not np.issubdtype(latents.dtype, np.floating):
        raise InvalidInputError(f"{info.name}: input {input_name} must be floating point, got {latents.dtype}",
                                info.name, input_name)
    wanted = "N>0" if rows is None else " or ".join(map(str, sorted(set(rows))))
    if latents.ndim != 2 or latents.shape[1] != dim or len(latents) == 0 \
            or (rows is not None and len(latents) not in rows):
        raise InvalidInputError(f"{info.name}: input {input_name} must have shape [{wanted}, {dim}], "
                                f"got {list(latents.shape)}", info.name, input_name)
    if not np.isfinite(latents).all():
        raise InvalidInputError(f"{info.name}: input {input_name} contains NaN or infinite values",
                                info.name, input_name)
    return np.ascontiguousarray(latents, dtype=np.float32)


def _check_int(model: str, name: str, value, low: int, high: int) -> int:
    if not _is_int(value) or not low <= value <= high:
        raise InvalidInputError(f"{model}: input {name} must be an integer in {low}..{high}, got {value!r}",
                                model, name)
    return int(value)


# --------------------------------------------------------------------------------------------------- request plans


Request = dict  # input name -> numpy array: one inference request


def split_rows(input_name: str, array: np.ndarray, limit: int) -> list[Request]:
    """Requests of at most ``limit`` rows (``limit`` 0: one request)."""
    limit = limit or len(array)
    return [{input_name: array[i:i + limit]} for i in range(0, len(array), limit)]


def join_outputs(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate split requests' outputs along the batch axis (BYTES outputs: the first request's)."""
    return {k: parts[0][k] if parts[0][k].dtype == np.object_ else np.concatenate([p[k] for p in parts])
            for k in parts[0]}


def part_seed(seed: int, part: int) -> int:
    """The seed of the ``part``-th request of a split sample; part 0 keeps ``seed``, so a call that fits in one
    request equals a plain request with the same SEED."""
    return seed if part == 0 else int(np.random.SeedSequence([seed, part]).generate_state(1)[0])


def sample_parts(n: int, seed: int, limit: int) -> list[tuple[int, int]]:
    """(count, SEED) of each request of a split sample: requests of at most ``limit``, part p seeded
    ``part_seed(seed, p)``. The client's split calls and ``sae sample``'s streamed runs share it."""
    return [(min(limit, n - start), part_seed(seed, part)) for part, start in enumerate(range(0, n, limit))]


def draw_mode(model: str, draw: str | None, per_dimension) -> str | None:
    """The draw mode asked for by ``draw`` and the boolean ``per_dimension``; None when neither asks."""
    if not isinstance(per_dimension, (bool, np.bool_)):
        raise InvalidInputError(f"{model}: input PER_DIMENSION must be a bool, got {per_dimension!r}",
                                model, "PER_DIMENSION")
    if draw is None:
        return "per_dimension" if per_dimension else None
    if draw not in DRAW_MODES:
        raise InvalidInputError(f"{model}: input DRAW must be one of {', '.join(DRAW_MODES)}, got {draw!r}",
                                model, "DRAW")
    if per_dimension and draw != "per_dimension":
        raise InvalidInputError(f"{model}: input DRAW {draw!r} contradicts per_dimension=True", model, "DRAW")
    return draw


def plan_draws(info: ModelInfo, limit: int, n, seed) -> list[Request]:
    """NUM_SAMPLES/SEED requests for ``n`` samples, each at most ``limit``; part p is seeded ``part_seed(seed, p)``."""
    n = _check_int(info.name, "NUM_SAMPLES", n, 1, MAX_SAMPLES)
    seed = _check_int(info.name, "SEED", seed, 0, 2 ** 63 - 1)
    return [{"NUM_SAMPLES": np.array([count], np.int64), "SEED": np.array([request_seed], np.int64)}
            for count, request_seed in sample_parts(n, seed, limit)]


def plan_sample(info: ModelInfo, limit: int, n, seed, base=None, mask=None, per_dimension=False,
                draw: str | None = None) -> list[Request]:
    """hybrid_sample requests for ``n`` samples, each at most ``limit`` (see :meth:`SAEClient.sample`)."""
    model = info.name
    requests = plan_draws(info, limit, n, seed)
    n = sum(int(r["NUM_SAMPLES"][0]) for r in requests)
    mode = draw_mode(model, draw, per_dimension)
    if "DRAW" not in info.inputs and mode not in (None, "per_dimension"):
        info.input("DRAW")  # raises, naming the input
    if mode == "per_dimension" and not {"DRAW", "PER_DIMENSION"} & set(info.inputs):
        info.input("PER_DIMENSION")
    if mask is not None and base is None:
        raise InvalidInputError(f"{model}: input MASK needs BASE (MASK=false keeps a variable from BASE)",
                                model, "MASK")
    base_rows = None
    if base is not None:
        dim = info.input("BASE").dims[-1]
        base = np.asarray(base)
        base = base[None] if base.ndim == 1 else base
        base_rows = check_latents(info, base, "BASE", dim=dim, rows=(1, n))
    if mask is not None:
        spec = info.input("MASK")
        mask = np.asarray(mask)
        if mask.dtype != np.bool_:
            raise InvalidInputError(f"{model}: input MASK must be bool (true = re-draw the variable), got {mask.dtype}",
                                    model, "MASK")
        if mask.ndim != 1 or (spec.dims[-1] > 0 and len(mask) != spec.dims[-1]):
            raise InvalidInputError(f"{model}: input MASK must have shape [{spec.dims[-1]}] (one entry per variable), "
                                    f"got {list(mask.shape)}", model, "MASK")
    start = 0
    for request in requests:
        count = int(request["NUM_SAMPLES"][0])
        if "DRAW" in info.inputs:
            request["DRAW"] = np.array([(mode or DRAW_MODES[0]).encode()], dtype=np.object_)
        elif "PER_DIMENSION" in info.inputs:
            request["PER_DIMENSION"] = np.array([mode == "per_dimension"])
        if base_rows is not None:
            request["BASE"] = base_rows if len(base_rows) == 1 else base_rows[start:start + count]
        if mask is not None:
            request["MASK"] = np.ascontiguousarray(mask)
        start += count
    return requests


def plan_traverse(info: ModelInfo, latent, dimension, steps) -> Request:
    latent = np.asarray(latent)
    dim = info.input("LATENT").dims[-1]
    start = check_latents(info, latent[None] if latent.ndim == 1 else latent, "LATENT", dim=dim, rows=(1,))
    low = int(info.parameters.get("min_steps") or TRAVERSE_STEPS[0])
    high = int(info.parameters.get("max_steps") or TRAVERSE_STEPS[1])
    return {"LATENT": start[0], "DIMENSION": np.array([_check_int(info.name, "DIMENSION", dimension, 0, dim - 1)]),
            "STEPS": np.array([_check_int(info.name, "STEPS", steps, low, high)])}


def sample_outputs(info: ModelInfo, image_dtype: str = "float32") -> list[str]:
    """The outputs a hybrid_sample call requests: every output but the image of the other dtype."""
    if image_dtype not in IMAGE_DTYPES:
        raise InvalidInputError(f"{info.name}: image_dtype must be one of {', '.join(IMAGE_DTYPES)}, got "
                                f"{image_dtype!r}", info.name, "IMAGE")
    wanted = IMAGE_DTYPES[image_dtype]
    if wanted not in info.outputs:
        raise InvalidInputError(f"{info.name}: the served model has no output {wanted} (it has "
                                f"{', '.join(info.outputs)}); re-export it for image_dtype={image_dtype!r}",
                                info.name, wanted)
    return [o for o in info.outputs if o == wanted or o not in IMAGE_DTYPES.values()]


def samples_from(outputs: dict[str, np.ndarray], requests: list[Request]) -> HybridSamples:
    """HybridSamples of joined outputs; the mode is the server's DRAW_MODE, else what the requests asked for."""
    mode = outputs.get("DRAW_MODE")
    if mode is not None and mode.size:
        name = mode.reshape(-1)[0].decode()
    elif "DRAW" in requests[0]:
        name = requests[0]["DRAW"][0].decode()
    else:
        name = "per_dimension" if requests[0].get("PER_DIMENSION", [False])[0] else DRAW_MODES[0]
    images = outputs["IMAGE"] if "IMAGE" in outputs else outputs["IMAGE_U8"]
    return HybridSamples(images, outputs["LATENT"], outputs["SOURCE_INDEX"], name)


def sample_limit(hybrid: ModelInfo, step_infos: Sequence[ModelInfo]) -> int:
    """Samples per request of a sampling model (hybrid_sample, prior_sample): its own ``max_samples`` parameter
    (one-hop models), or for an ensemble its sampler's, capped by the ``max_batch_size`` of the later ensemble steps
    (the decoder takes the whole draw as one batch); fallback 256."""
    limit = int(hybrid.parameters.get("max_samples") or DEFAULT_MAX_SAMPLES)
    if step_infos:
        limit = int(step_infos[0].parameters.get("max_samples") or DEFAULT_MAX_SAMPLES)
        for later in step_infos[1:]:
            if later.max_batch_size > 0:
                limit = min(limit, later.max_batch_size)
    return max(1, limit)


def make_inputs(request: Request) -> list[grpcclient.InferInput]:
    inputs = []
    for name, array in request.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(np.ascontiguousarray(array))
        inputs.append(tensor)
    return inputs


# --------------------------------------------------------------------------------------------------- shared memory


class ShmSlot:
    """A pair of system shared-memory regions (input, output) sized for one full batch of one model."""

    _ids = itertools.count()

    def __init__(self, model: str, input_bytes: int, output_bytes: int):
        import tritonclient.utils.shared_memory as shm

        self._shm = shm
        tag = f"sae_{os.getpid()}_{id(self):x}_{next(self._ids)}"
        self.input_name, self.output_name = f"{tag}_in", f"{tag}_out"
        self.input_bytes, self.output_bytes = input_bytes, output_bytes
        self.input = shm.create_shared_memory_region(self.input_name, f"/{self.input_name}", input_bytes,
                                                     create_only=True)
        try:
            self.output = shm.create_shared_memory_region(self.output_name, f"/{self.output_name}", output_bytes,
                                                          create_only=True)
        except Exception:
            shm.destroy_shared_memory_region(self.input)
            raise
        self.model = model

    def registrations(self) -> list[tuple[str, str, int]]:
        """(name, key, byte size) for ``register_system_shared_memory``."""
        return [(self.input_name, f"/{self.input_name}", self.input_bytes),
                (self.output_name, f"/{self.output_name}", self.output_bytes)]

    def inputs(self, input_name: str, array: np.ndarray) -> list[grpcclient.InferInput]:
        self._shm.set_shared_memory_region(self.input, [np.ascontiguousarray(array)])
        tensor = grpcclient.InferInput(input_name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_shared_memory(self.input_name, array.nbytes)
        return [tensor]

    def outputs(self, output_name: str) -> list[grpcclient.InferRequestedOutput]:
        output = grpcclient.InferRequestedOutput(output_name)
        output.set_shared_memory(self.output_name, self.output_bytes)
        return [output]

    def read(self, result, output_name: str) -> np.ndarray:
        meta = result.get_output(output_name)
        view = self._shm.get_contents_as_numpy(self.output, triton_to_np_dtype(meta.datatype), list(meta.shape))
        array = view.copy()
        del view  # the mapping cannot be closed while a view of it exists
        return array

    def destroy(self) -> None:
        for region in (self.input, self.output):
            try:
                self._shm.destroy_shared_memory_region(region)
            except Exception:  # already gone
                pass


class ShmPool:
    """Slots per model, handed out to one request at a time (thread-safe; slots are reused, never shrunk)."""

    def __init__(self):
        self._free: dict[str, list[ShmSlot]] = {}
        self._all: list[ShmSlot] = []
        self._lock = threading.Lock()

    def take(self, model: str) -> ShmSlot | None:
        with self._lock:
            free = self._free.get(model)
            return free.pop() if free else None

    def add(self, slot: ShmSlot) -> None:
        with self._lock:
            self._all.append(slot)

    def give_back(self, slot: ShmSlot) -> None:
        with self._lock:
            self._free.setdefault(slot.model, []).append(slot)

    def drain(self) -> list[ShmSlot]:
        with self._lock:
            slots, self._all, self._free = self._all, [], {}
        return slots


def slot_sizes(info: ModelInfo, input_name: str, output_name: str) -> tuple[int, int]:
    """Bytes of one full batch of ``input_name`` and ``output_name``."""

    def nbytes(spec: TensorSpec) -> int:
        return info.max_batch_size * int(np.prod(spec.dims)) * np.dtype(triton_to_np_dtype(spec.datatype)).itemsize

    return nbytes(info.inputs[input_name]), nbytes(info.outputs[output_name])


# --------------------------------------------------------------------------------------------------- the client


READY = "READY"  # a model's state in the repository index once it serves


def is_connection_refused(error: InferenceServerException) -> bool:
    """Whether gRPC found nothing listening at the address (as opposed to a server that answered)."""
    text = str(error).lower()
    return "failed to connect" in text or "connection refused" in text or "dns resolution failed" in text


def no_server_error(url: str) -> ServerNotFoundError:
    return ServerNotFoundError(f"no server at {url} (connection refused): start one with `sae serve --repo "
                               "model_repository` or give the address of a running one (--url)")


def served_sets(model_names: Sequence[str]) -> set[str]:
    """The export names (``NAME`` of ``NAME_encode``, '' for the unprefixed set) behind served model names."""
    found = set()
    for name in model_names:
        for role in SET_ROLES:
            if name == role:
                found.add("")
            elif name.endswith("_" + role):
                found.add(name[:-len(role) - 1])
    return found


SET_ROLES = ("hybrid_sample", "encode")  # every exported set serves both: they mark a set


class ClientBase:
    """What the sync and asyncio clients share: names, cached model configurations, the retry policy."""

    def __init__(self, url: str = DEFAULT_URL, model: str = "", timeout_s: float = 60.0,
                 retry: RetryPolicy | None = None, shared_memory: bool = False):
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.url = url
        self.model = model
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self.shared_memory = shared_memory
        self._infos: dict[str, ModelInfo] = {}
        self._raw_configs: dict[str, dict] = {}
        self._rng = random.Random()
        self._shm = ShmPool()
        self._closed = False

    def served_name(self, model: str) -> str:
        """``encode`` -> ``NAME_encode`` (unchanged when the client's model name is empty)."""
        return f"{self.model}_{model}" if self.model else model

    def _retrier(self, served: str) -> Retrier:
        if self._closed:
            raise ClientError(f"{served}: the client for {self.url} is closed")
        return Retrier(self.retry, self.timeout_s, served, self.url, self._rng)

    def _remember(self, served: str, config: dict) -> ModelInfo:
        self._raw_configs[served] = config
        self._infos[served] = ModelInfo.from_config(config)
        return self._infos[served]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, model={self.model!r})"


class SAEClient(ClientBase):
    """Calls one model set (``encode``, ``decode``, ``reconstruct``, ``hybrid_sample``, ``traverse``) over gRPC.

    ``model``: the name the set was exported under ("" = unprefixed). ``timeout_s``: each request's deadline, retries
    included. ``shared_memory``: send batched images/latents through system shared memory instead of the gRPC
    message (the server must be on this host). Thread-safe: one client can serve many threads.
    """

    def __init__(self, url: str = DEFAULT_URL, model: str = "", timeout_s: float = 60.0,
                 retry: RetryPolicy | None = None, shared_memory: bool = False):
        super().__init__(url, model, timeout_s, retry, shared_memory)
        self._client = grpcclient.InferenceServerClient(url, channel_args=channel_args())

    # ---------------------------------------------------------------- lifecycle

    def close(self) -> None:
        if self._closed:
            return
        slots = self._shm.drain()
        for slot in slots:
            for name, _, _ in slot.registrations():
                try:
                    self._client.unregister_system_shared_memory(name, client_timeout=5.0)
                except InferenceServerException:  # the server is gone: nothing to unregister
                    pass
            slot.destroy()
        self._closed = True
        self._client.close()

    def __enter__(self) -> SAEClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def wait_ready(self, timeout_s: float = 60.0, model: str = "hybrid_sample") -> None:
        """Wait until ``model`` is ready. Raises at once what waiting cannot mend: ServerNotFoundError (nothing
        listens at the address) and ModelNotServedError (the repository has no such model, it failed to load, or it
        is unloaded under explicit model control); ModelNotReadyError after ``timeout_s`` while it is still loading."""
        served = self.served_name(model)
        deadline = time.monotonic() + timeout_s
        state = "the server is not ready"
        while True:
            try:
                state = self._readiness(served)
                if state == READY:
                    return
            except InferenceServerException as e:
                if is_connection_refused(e):
                    raise no_server_error(self.url) from None
                state = f"the server did not answer ({e.message()})"
            if time.monotonic() >= deadline:
                raise ModelNotReadyError(f"{served} at {self.url} not ready after {timeout_s:g} s ({state}): the "
                                         "server is still starting or loading it; wait and retry, or read its log")
            time.sleep(0.2)

    def _readiness(self, served: str) -> str:
        """READY, or why ``served`` is not ready yet; raises ModelNotServedError where waiting will not help."""
        if not self._client.is_server_live(client_timeout=1.0):
            return "the server is not live"
        index = self._client.get_model_repository_index(as_json=True, client_timeout=2.0).get("models", [])
        entries = [m for m in index if m.get("name") == served]
        if not entries:
            sets = sorted(served_sets([m.get("name", "") for m in index]))
            listed = ", ".join(repr(name) for name in sets) or "none"
            raise ModelNotServedError(f"{served} is not served at {self.url} (model sets there: {listed}): pass "
                                      "the set's name (--model NAME; '' is the unprefixed set) or export it with "
                                      "`sae export RUN --name NAME`", served)
        states = {m.get("state", "") for m in entries}
        if READY in states:
            return READY if self._client.is_model_ready(served, client_timeout=1.0) else "loaded, warming up"
        reason = "; ".join(m.get("reason", "") for m in entries if m.get("reason"))
        if "UNAVAILABLE" in states and reason:
            step = ("load it (`sae load`, or serve without explicit model control)" if "unloaded" in reason
                    else "fix the model and restart the server; `sae validate --repo REPO` checks the repository")
            raise ModelNotServedError(f"{served} at {self.url} is not loaded ({reason}): {step}", served)
        return f"state {'/'.join(sorted(states)) or 'unknown'}{': ' + reason if reason else ''}"

    # ---------------------------------------------------------------- configuration

    def _info(self, served: str) -> ModelInfo:
        if served not in self._infos:
            retrier = self._retrier(served)
            while True:
                try:
                    config = self._client.get_model_config(served, as_json=True,
                                                           client_timeout=retrier.remaining_s())["config"]
                    break
                except InferenceServerException as e:
                    time.sleep(retrier.next_delay(e))
            self._remember(served, config)
        return self._infos[served]

    def model_info(self, model: str) -> ModelInfo:
        """The served configuration of ``model`` (a name without the prefix: ``encode``, ``hybrid_sample``, ...)."""
        return self._info(self.served_name(model))

    def model_config(self, model: str) -> dict:
        """The raw configuration (protobuf JSON) of ``model``."""
        self.model_info(model)
        return self._raw_configs[self.served_name(model)]

    def max_batch_size(self, model: str) -> int:
        return self.model_info(model).max_batch_size

    def max_samples(self, model: str = "hybrid_sample") -> int:
        """Samples per request of ``model`` (hybrid_sample or prior_sample; larger calls are split)."""
        ensemble = self.model_info(model)
        try:
            steps = [self._info(step) for step in ensemble.steps]
        except InferenceError:  # a component's config cannot be read: the contract's default
            steps = []
        return sample_limit(ensemble, steps)

    def has_prior(self) -> bool:
        """Whether the served set has ``prior_sample`` (models with a prior: VAE family, WAE)."""
        try:
            self.model_info("prior_sample")
        except ModelNotServedError:
            return False
        return True

    # ---------------------------------------------------------------- requests

    def _send(self, served: str, request: Request, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        retrier = self._retrier(served)
        inputs = make_inputs(request)
        requested = [grpcclient.InferRequestedOutput(o) for o in outputs]
        while True:
            try:
                result = self._client.infer(served, inputs, outputs=requested, client_timeout=retrier.remaining_s())
                return {o: result.as_numpy(o) for o in outputs}
            except InferenceServerException as e:
                time.sleep(retrier.next_delay(e))

    def _slot(self, info: ModelInfo, input_name: str, output_name: str) -> ShmSlot:
        slot = self._shm.take(info.name)
        if slot is None:
            slot = ShmSlot(info.name, *slot_sizes(info, input_name, output_name))
            try:
                for name, key, size in slot.registrations():
                    self._client.register_system_shared_memory(name, key, size, client_timeout=self.timeout_s)
            except InferenceServerException as e:
                slot.destroy()
                raise client_error(e, info.name, self.url) from e
            self._shm.add(slot)
        return slot

    def _send_shm(self, info: ModelInfo, input_name: str, array: np.ndarray, output_name: str) -> np.ndarray:
        slot = self._slot(info, input_name, output_name)
        try:
            retrier = self._retrier(info.name)
            inputs, outputs = slot.inputs(input_name, array), slot.outputs(output_name)
            while True:
                try:
                    result = self._client.infer(info.name, inputs, outputs=outputs,
                                                client_timeout=retrier.remaining_s())
                    return slot.read(result, output_name)
                except InferenceServerException as e:
                    time.sleep(retrier.next_delay(e))
        finally:
            self._shm.give_back(slot)

    def _batched(self, info: ModelInfo, input_name: str, array: np.ndarray, output_name: str) -> np.ndarray:
        parts = []
        for request in split_rows(input_name, array, info.max_batch_size):
            if self.shared_memory and info.max_batch_size > 0:
                parts.append({output_name: self._send_shm(info, input_name, request[input_name], output_name)})
            else:
                parts.append(self._send(info.name, request, [output_name]))
        return join_outputs(parts)[output_name]

    def infer(self, model: str, inputs: Request, outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """One raw request to ``model`` (prefix applied), with retries; ``outputs`` default to all of them."""
        info = self.model_info(model)
        return self._send(info.name, inputs, list(outputs or info.outputs))

    # ---------------------------------------------------------------- the models

    def encode(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] -> float32 latents [N, D]."""
        info = self.model_info("encode")
        return self._batched(info, "IMAGE", check_images(info, images), "LATENT")

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """float [N, D] -> float32 images [N, H, W, 3] in [0, 1]."""
        info = self.model_info("decode")
        return self._batched(info, "LATENT", check_latents(info, latents), "IMAGE")

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] -> decode(encode(images)), float32 in [0, 1], in one call per batch."""
        info = self.model_info("reconstruct")
        return self._batched(info, "IMAGE", check_images(info, images), "RECONSTRUCTION")

    def sample(self, n: int, seed: int = 0, base: np.ndarray | None = None, mask: np.ndarray | None = None,
               per_dimension: bool = False, draw: str | None = None, image_dtype: str = "float32") -> HybridSamples:
        """``n`` hybrid samples; the same arguments give the same samples.

        ``draw``: ``"independent"`` (default: each variable from its own uniform choice of stored latent, with
        replacement, as the paper defines it), ``"distinct"`` (the variables of one sample from different stored
        latents) or ``"per_dimension"`` (each dimension on its own; ``per_dimension=True`` asks for it too).
        ``base``: float [D] or [n, D], latents whose variables ``mask`` (bool [k], one per variable) keeps where
        false and re-draws from the bank where true. Calls above the server's per-request limit go out in parts;
        part 0 uses ``seed``, the others seeds derived from it (:func:`part_seed`). ``image_dtype="uint8"``
        asks the server for ``IMAGE_U8`` (a quarter of the bytes; exactly ``to_uint8`` of the fp32 images).
        """
        info = self.model_info("hybrid_sample")
        outputs = sample_outputs(info, image_dtype)
        requests = plan_sample(info, self.max_samples(), n, seed, base, mask, per_dimension, draw)
        return samples_from(join_outputs([self._send(info.name, r, outputs) for r in requests]), requests)

    def prior_sample(self, n: int, seed: int = 0) -> PriorSamples:
        """``n`` samples of the model's prior, decoded; the same seed gives the same samples (split as
        :meth:`sample`). Raises ModelNotServedError for a set without a prior (see :meth:`has_prior`)."""
        info = self.model_info("prior_sample")
        requests = plan_draws(info, self.max_samples("prior_sample"), n, seed)
        out = join_outputs([self._send(info.name, r, ["IMAGE", "LATENT"]) for r in requests])
        return PriorSamples(out["IMAGE"], out["LATENT"])

    def traverse(self, latent: np.ndarray, dimension: int, steps: int) -> Traversal:
        """``steps`` latents equal to ``latent`` but for ``dimension``, swept over its range in the training set."""
        info = self.model_info("traverse")
        out = self._send(info.name, plan_traverse(info, latent, dimension, steps), ["IMAGE", "LATENT"])
        return Traversal(out["IMAGE"], out["LATENT"], int(dimension))
