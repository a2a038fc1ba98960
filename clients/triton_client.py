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
:class:`sae.clients.aio.AsyncSAEClient` is the asyncio twin; both share the checks and request plans
(``clients/request_plans.py``), the retries (``clients/retry.py``), the shared-memory slots (``clients/shm.py``)
and :class:`ClientBase` of this module.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from sae.clients.model_info import ModelInfo
from sae.clients.request_plans import (
    Array,
    Request,
    check_images,
    check_latents,
    join_outputs,
    make_inputs,
    plan_draws,
    plan_sample,
    plan_traverse,
    sample_limit,
    sample_outputs,
    samples_from,
    split_rows,
)
from sae.clients.results import HybridSamples, PriorSamples, Traversal
from sae.clients.retry import Retrier, RetryPolicy, call_with_retries, client_error
from sae.clients.shm import ShmPool, ShmSlot, slot_sizes
from sae.core import wire
from sae.core.errors import ClientError, InferenceError, ModelNotReadyError, ModelNotServedError, ServerNotFoundError


def channel_args() -> list[tuple[str, int]]:
    """Options of the one gRPC channel a client opens and keeps for its lifetime (a channel per call cost 0.5-0.9 ms
    more per batch-1 request; docs/performance.md): tritonclient's own message limits and keepalive, plus no
    compression (tensors barely compress and it costs CPU on both ends), no HTTP proxy (an ``http_proxy`` in the
    environment must not reroute a loopback server) and no BDP probe pings."""
    from tritonclient.grpc._client import MAX_GRPC_MESSAGE_SIZE, KeepAliveOptions

    keepalive = KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.default_compression_algorithm", 0),  # grpc_compression_algorithm GRPC_COMPRESS_NONE
        ("grpc.enable_http_proxy", 0),
        ("grpc.http2.bdp_probe", 0),
    ]


# --------------------------------------------------------------------------------------------------- the client


READY = "READY"  # a model's state in the repository index once it serves


def is_connection_refused(error: InferenceServerException) -> bool:
    """Whether gRPC found nothing listening at the address (as opposed to a server that answered)."""
    text = str(error).lower()
    return "failed to connect" in text or "connection refused" in text or "dns resolution failed" in text


def no_server_error(url: str) -> ServerNotFoundError:
    return ServerNotFoundError(
        f"no server at {url} (connection refused): start one with `sae serve --repo "
        "model_repository` or give the address of a running one (--url)"
    )


def served_sets(model_names: Sequence[str]) -> set[str]:
    """The export names (``NAME`` of ``NAME_encode``, '' for the unprefixed set) behind served model names."""
    return {name for name in map(wire.set_of, model_names) if name is not None}


class ClientBase:
    """What the sync and asyncio clients share: names, cached model configurations, the retry policy."""

    def __init__(
        self,
        url: str = wire.DEFAULT_URL,
        model: str = "",
        timeout_s: float = 60.0,
        retry: RetryPolicy | None = None,
        shared_memory: bool = False,
    ):
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.url = url
        self.model = model
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self.shared_memory = shared_memory
        self._infos: dict[str, ModelInfo] = {}
        self._raw_configs: dict[str, dict[str, Any]] = {}
        self._rng = random.Random()
        self._shm = ShmPool()
        self._closed = False
        self._client = self._connect()

    def _connect(self) -> Any:
        """The tritonclient client (sync or asyncio) this client keeps for its lifetime, on ``self.url``."""
        raise NotImplementedError

    def served_name(self, role: str) -> str:
        """``encode`` -> ``NAME_encode`` (unchanged when the client's model name is empty)."""
        return wire.served_name(self.model, role)

    def _retrier(self, served: str) -> Retrier:
        if self._closed:
            raise ClientError(f"{served}: the client for {self.url} is closed")
        return Retrier(self.retry, self.timeout_s, served, self.url, self._rng)

    def _remember(self, served: str, config: dict[str, Any]) -> ModelInfo:
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

    def _connect(self) -> Any:
        return grpcclient.InferenceServerClient(self.url, channel_args=channel_args())

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

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_ready(self, timeout_s: float = 60.0, role: str = wire.HYBRID_SAMPLE) -> None:
        """Wait until the set's ``role`` model is ready. Raises at once what waiting cannot mend: ServerNotFoundError
        (nothing
        listens at the address) and ModelNotServedError (the repository has no such model, it failed to load, or it
        is unloaded under explicit model control); ModelNotReadyError after ``timeout_s`` while it is still loading."""
        served = self.served_name(role)
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
                raise ModelNotReadyError(
                    f"{served} at {self.url} not ready after {timeout_s:g} s ({state}): the "
                    "server is still starting or loading it; wait and retry, or read its log"
                )
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
            raise ModelNotServedError(
                f"{served} is not served at {self.url} (model sets there: {listed}): pass "
                "the set's name (--model NAME; '' is the unprefixed set) or export it with "
                "`sae export RUN --name NAME`",
                served,
            )
        states = {m.get("state", "") for m in entries}
        if READY in states:
            return READY if self._client.is_model_ready(served, client_timeout=1.0) else "loaded, warming up"
        reason = "; ".join(m.get("reason", "") for m in entries if m.get("reason"))
        if "UNAVAILABLE" in states and reason:
            set_arg = self.model or "''"
            step = (
                f"load it (`sae load {set_arg}`), or serve without explicit model control"
                if "unloaded" in reason
                else "fix the model and restart the server; `sae validate --repo REPO` checks the repository"
            )
            raise ModelNotServedError(f"{served} at {self.url} is not loaded ({reason}): {step}", served)
        return f"state {'/'.join(sorted(states)) or 'unknown'}{': ' + reason if reason else ''}"

    # ---------------------------------------------------------------- configuration

    def _info(self, served: str) -> ModelInfo:
        if served not in self._infos:
            config = call_with_retries(
                lambda timeout_s: self._client.get_model_config(served, as_json=True, client_timeout=timeout_s),
                self._retrier(served),
            )["config"]
            self._remember(served, config)
        return self._infos[served]

    def model_info(self, role: str) -> ModelInfo:
        """The served configuration of the set's ``role`` model (``encode``, ``hybrid_sample``, ...)."""
        return self._info(self.served_name(role))

    def model_config(self, role: str) -> dict[str, Any]:
        """The raw configuration (protobuf JSON) of the set's ``role`` model."""
        self.model_info(role)
        return self._raw_configs[self.served_name(role)]

    def max_batch_size(self, role: str) -> int:
        return self.model_info(role).max_batch_size

    def max_samples(self, role: str = wire.HYBRID_SAMPLE) -> int:
        """Samples per request of ``role`` (hybrid_sample or prior_sample; larger calls are split)."""
        ensemble = self.model_info(role)
        try:
            steps = [self._info(step) for step in ensemble.steps]
        except InferenceError:  # a component's config cannot be read: the contract's default
            steps = []
        return sample_limit(ensemble, steps)

    def has_prior(self) -> bool:
        """Whether the served set has ``prior_sample`` (models with a prior: VAE family, WAE)."""
        try:
            self.model_info(wire.PRIOR_SAMPLE)
        except ModelNotServedError:
            return False
        return True

    # ---------------------------------------------------------------- requests

    def _send(self, served: str, request: Request, outputs: Sequence[str]) -> dict[str, Array]:
        retrier = self._retrier(served)
        inputs = make_inputs(request)
        requested = [grpcclient.InferRequestedOutput(o) for o in outputs]

        def call(timeout_s: float) -> dict[str, Array]:
            result = self._client.infer(served, inputs, outputs=requested, client_timeout=timeout_s)
            return {o: result.as_numpy(o) for o in outputs}

        return call_with_retries(call, retrier)

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

    def _send_shm(self, info: ModelInfo, input_name: str, array: Array, output_name: str) -> Array:
        slot = self._slot(info, input_name, output_name)
        try:
            retrier = self._retrier(info.name)
            inputs, outputs = slot.inputs(input_name, array), slot.outputs(output_name)
            return call_with_retries(
                lambda timeout_s: slot.read(
                    self._client.infer(info.name, inputs, outputs=outputs, client_timeout=timeout_s), output_name
                ),
                retrier,
            )
        finally:
            self._shm.give_back(slot)

    def _batched(self, info: ModelInfo, input_name: str, array: Array, output_name: str) -> npt.NDArray[np.float32]:
        """``array`` split by the model's max_batch_size, sent part by part, the outputs ``output_name`` joined."""
        parts: list[dict[str, Array]] = []
        for request in split_rows(input_name, array, info.max_batch_size):
            if self.shared_memory and info.max_batch_size > 0:
                parts.append({output_name: self._send_shm(info, input_name, request[input_name], output_name)})
            else:
                parts.append(self._send(info.name, request, [output_name]))
        # LATENT, IMAGE and RECONSTRUCTION, the outputs batched here, are FP32 in the wire contract
        return cast("npt.NDArray[np.float32]", join_outputs(parts)[output_name])

    def infer(self, role: str, inputs: Request, outputs: Sequence[str] | None = None) -> dict[str, Array]:
        """One raw request to the set's ``role`` model (prefix applied), with retries; ``outputs`` default to all of
        them."""
        info = self.model_info(role)
        return self._send(info.name, inputs, list(outputs or info.outputs))

    # ---------------------------------------------------------------- the models

    def encode(self, images: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """uint8 [N, H, W, 3] -> float32 latents [N, D]."""
        info = self.model_info(wire.ENCODE)
        return self._batched(info, wire.IMAGE, check_images(info, images), wire.LATENT)

    def decode(self, latents: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """float [N, D] -> float32 images [N, H, W, 3] in [0, 1]."""
        info = self.model_info(wire.DECODE)
        return self._batched(info, wire.LATENT, check_latents(info, latents), wire.IMAGE)

    def reconstruct(self, images: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """uint8 [N, H, W, 3] -> decode(encode(images)), float32 in [0, 1], in one call per batch."""
        info = self.model_info(wire.RECONSTRUCT)
        return self._batched(info, wire.IMAGE, check_images(info, images), wire.RECONSTRUCTION)

    def sample(
        self,
        n: int,
        seed: int = 0,
        base: npt.ArrayLike | None = None,
        mask: npt.ArrayLike | None = None,
        per_dimension: bool = False,
        draw: str | None = None,
        image_dtype: str = "float32",
    ) -> HybridSamples:
        """``n`` hybrid samples; the same arguments give the same samples.

        ``draw``: ``"independent"`` (default: each variable from its own uniform choice of stored latent, with
        replacement, as the paper defines it), ``"distinct"`` (the variables of one sample from different stored
        latents) or ``"per_dimension"`` (each dimension on its own; ``per_dimension=True`` asks for it too).
        ``base``: float [D] or [n, D], latents whose variables ``mask`` (bool [k], one per variable) keeps where
        false and re-draws from the bank where true. Calls above the server's per-request limit go out in parts;
        part 0 uses ``seed``, the others seeds derived from it
        (:func:`~sae.clients.request_plans.part_seed`). ``image_dtype="uint8"``
        asks the server for ``IMAGE_U8`` (a quarter of the bytes; exactly ``to_uint8`` of the fp32 images).
        """
        info = self.model_info(wire.HYBRID_SAMPLE)
        outputs = sample_outputs(info, image_dtype)
        requests = plan_sample(info, self.max_samples(), n, seed, base, mask, per_dimension, draw)
        return samples_from(join_outputs([self._send(info.name, r, outputs) for r in requests]), requests)

    def prior_sample(self, n: int, seed: int = 0) -> PriorSamples:
        """``n`` samples of the model's prior, decoded; the same seed gives the same samples (split as
        :meth:`sample`). Raises ModelNotServedError for a set without a prior (see :meth:`has_prior`)."""
        info = self.model_info(wire.PRIOR_SAMPLE)
        requests = plan_draws(info, self.max_samples(wire.PRIOR_SAMPLE), n, seed)
        out = join_outputs([self._send(info.name, r, [wire.IMAGE, wire.LATENT]) for r in requests])
        # FP32 images and latents, as the wire contract gives prior_sample's outputs
        return PriorSamples(
            cast("npt.NDArray[np.float32]", out[wire.IMAGE]), cast("npt.NDArray[np.float32]", out[wire.LATENT])
        )

    def traverse(self, latent: npt.ArrayLike, dimension: int, steps: int) -> Traversal:
        """``steps`` latents equal to ``latent`` but for ``dimension``, swept over its range in the training set."""
        info = self.model_info(wire.TRAVERSE)
        out = self._send(info.name, plan_traverse(info, latent, dimension, steps), [wire.IMAGE, wire.LATENT])
        # FP32 images and latents, as the wire contract gives traverse's outputs
        return Traversal(
            cast("npt.NDArray[np.float32]", out[wire.IMAGE]),
            cast("npt.NDArray[np.float32]", out[wire.LATENT]),
            int(dimension),
        )
