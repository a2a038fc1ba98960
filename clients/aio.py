"""The asyncio twin of :class:`sae.clients.triton_client.SAEClient`, on ``tritonclient.grpc.aio``.

Same methods, same checks, same request plans and errors; the parts of a split call run concurrently (at most
``max_concurrency`` at a time)::

    async with AsyncSAEClient("127.0.0.1:8001") as client:
        latents, samples = await asyncio.gather(client.encode(images), client.sample(64, seed=0))
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
from tritonclient.utils import InferenceServerException

from sae.clients import request_plans as plans
from sae.clients.model_info import ModelInfo
from sae.clients.results import HybridSamples, PriorSamples, Traversal
from sae.clients.retry import RetryPolicy, call_with_retries_async, client_error
from sae.clients.shm import ShmSlot, slot_sizes
from sae.clients.triton_client import ClientBase
from sae.core import wire
from sae.core.errors import InferenceError, ModelNotServedError, ServerUnavailableError

_T = TypeVar("_T")  # what one of the gathered coroutines returns


class AsyncSAEClient(ClientBase):
    """asyncio client for one model set; see :class:`sae.clients.triton_client.SAEClient` for the arguments."""

    def __init__(
        self,
        url: str = wire.DEFAULT_URL,
        model: str = "",
        timeout_s: float = 60.0,
        retry: RetryPolicy | None = None,
        shared_memory: bool = False,
        max_concurrency: int = 4,
    ):
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.max_concurrency = max_concurrency
        super().__init__(url, model, timeout_s, retry, shared_memory)

    def _connect(self) -> Any:
        return grpcaio.InferenceServerClient(self.url)

    # ---------------------------------------------------------------- lifecycle

    async def close(self) -> None:
        if self._closed:
            return
        for slot in self._shm.drain():
            for name, _, _ in slot.registrations():
                try:
                    await self._client.unregister_system_shared_memory(name, client_timeout=5.0)
                except InferenceServerException:
                    pass
            slot.destroy()
        self._closed = True
        await self._client.close()

    async def __aenter__(self) -> AsyncSAEClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_ready(self, timeout_s: float = 60.0, role: str = wire.HYBRID_SAMPLE) -> None:
        served = self.served_name(role)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            try:
                if await self._client.is_server_ready(client_timeout=1.0) and await self._client.is_model_ready(
                    served, client_timeout=1.0
                ):
                    return
            except InferenceServerException:
                pass
            await asyncio.sleep(0.2)
        raise ServerUnavailableError(f"server at {self.url} (model {served}) not ready after {timeout_s:g} s")

    # ---------------------------------------------------------------- configuration

    async def _info(self, served: str) -> ModelInfo:
        if served not in self._infos:
            config = (
                await call_with_retries_async(
                    lambda timeout_s: self._client.get_model_config(served, as_json=True, client_timeout=timeout_s),
                    self._retrier(served),
                )
            )["config"]
            self._remember(served, config)
        return self._infos[served]

    async def model_info(self, role: str) -> ModelInfo:
        return await self._info(self.served_name(role))

    async def max_batch_size(self, role: str) -> int:
        return (await self.model_info(role)).max_batch_size

    async def max_samples(self, role: str = wire.HYBRID_SAMPLE) -> int:
        ensemble = await self.model_info(role)
        try:
            steps = [await self._info(step) for step in ensemble.steps]
        except InferenceError:
            steps = []
        return plans.sample_limit(ensemble, steps)

    async def has_prior(self) -> bool:
        try:
            await self.model_info(wire.PRIOR_SAMPLE)
        except ModelNotServedError:
            return False
        return True

    # ---------------------------------------------------------------- requests

    async def _send(self, served: str, request: plans.Request, outputs: Sequence[str]) -> dict[str, plans.Array]:
        retrier = self._retrier(served)
        inputs = plans.make_inputs(request)
        requested = [grpcclient.InferRequestedOutput(o) for o in outputs]

        async def call(timeout_s: float) -> dict[str, plans.Array]:
            result = await self._client.infer(served, inputs, outputs=requested, client_timeout=timeout_s)
            return {o: result.as_numpy(o) for o in outputs}

        return await call_with_retries_async(call, retrier)

    async def _slot(self, info: ModelInfo, input_name: str, output_name: str) -> ShmSlot:
        slot = self._shm.take(info.name)
        if slot is None:
            slot = ShmSlot(info.name, *slot_sizes(info, input_name, output_name))
            try:
                for name, key, size in slot.registrations():
                    await self._client.register_system_shared_memory(name, key, size, client_timeout=self.timeout_s)
            except InferenceServerException as e:
                slot.destroy()
                raise client_error(e, info.name, self.url) from e
            self._shm.add(slot)
        return slot

    async def _send_shm(self, info: ModelInfo, input_name: str, array: plans.Array, output_name: str) -> plans.Array:
        slot = await self._slot(info, input_name, output_name)
        try:
            retrier = self._retrier(info.name)
            inputs, outputs = slot.inputs(input_name, array), slot.outputs(output_name)

            async def call(timeout_s: float) -> plans.Array:
                result = await self._client.infer(info.name, inputs, outputs=outputs, client_timeout=timeout_s)
                return slot.read(result, output_name)

            return await call_with_retries_async(call, retrier)
        finally:
            self._shm.give_back(slot)

    async def _gather(self, calls: Iterable[Awaitable[_T]]) -> list[_T]:
        """Run the coroutines, at most ``max_concurrency`` at a time; results in order."""
        gate = asyncio.Semaphore(self.max_concurrency)

        async def gated(call: Awaitable[_T]) -> _T:
            async with gate:
                return await call

        return await asyncio.gather(*(gated(c) for c in calls))

    async def _batched(
        self, info: ModelInfo, input_name: str, array: plans.Array, output_name: str
    ) -> npt.NDArray[np.float32]:
        async def one(request: plans.Request) -> dict[str, plans.Array]:
            if self.shared_memory and info.max_batch_size > 0:
                return {output_name: await self._send_shm(info, input_name, request[input_name], output_name)}
            return await self._send(info.name, request, [output_name])

        parts = await self._gather(one(r) for r in plans.split_rows(input_name, array, info.max_batch_size))
        # LATENT, IMAGE and RECONSTRUCTION, the outputs batched here, are FP32 in the wire contract
        return cast("npt.NDArray[np.float32]", plans.join_outputs(parts)[output_name])

    async def infer(
        self, role: str, inputs: plans.Request, outputs: Sequence[str] | None = None
    ) -> dict[str, plans.Array]:
        info = await self.model_info(role)
        return await self._send(info.name, inputs, list(outputs or info.outputs))

    # ---------------------------------------------------------------- the models

    async def encode(self, images: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        info = await self.model_info(wire.ENCODE)
        return await self._batched(info, wire.IMAGE, plans.check_images(info, images), wire.LATENT)

    async def decode(self, latents: npt.ArrayLike) -> npt.NDArray[np.float32]:
        info = await self.model_info(wire.DECODE)
        return await self._batched(info, wire.LATENT, plans.check_latents(info, latents), wire.IMAGE)

    async def reconstruct(self, images: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        info = await self.model_info(wire.RECONSTRUCT)
        return await self._batched(info, wire.IMAGE, plans.check_images(info, images), wire.RECONSTRUCTION)

    async def sample(
        self,
        n: int,
        seed: int = 0,
        base: npt.ArrayLike | None = None,
        mask: npt.ArrayLike | None = None,
        per_dimension: bool = False,
        draw: str | None = None,
        image_dtype: str = "float32",
    ) -> HybridSamples:
        info = await self.model_info(wire.HYBRID_SAMPLE)
        outputs = plans.sample_outputs(info, image_dtype)
        requests = plans.plan_sample(info, await self.max_samples(), n, seed, base, mask, per_dimension, draw)
        parts = await self._gather(self._send(info.name, r, outputs) for r in requests)
        return plans.samples_from(plans.join_outputs(parts), requests)

    async def prior_sample(self, n: int, seed: int = 0) -> PriorSamples:
        info = await self.model_info(wire.PRIOR_SAMPLE)
        requests = plans.plan_draws(info, await self.max_samples(wire.PRIOR_SAMPLE), n, seed)
        parts = await self._gather(self._send(info.name, r, [wire.IMAGE, wire.LATENT]) for r in requests)
        out = plans.join_outputs(parts)
        # FP32 images and latents, as the wire contract gives prior_sample's outputs
        return PriorSamples(
            cast("npt.NDArray[np.float32]", out[wire.IMAGE]), cast("npt.NDArray[np.float32]", out[wire.LATENT])
        )

    async def traverse(self, latent: npt.ArrayLike, dimension: int, steps: int) -> Traversal:
        info = await self.model_info(wire.TRAVERSE)
        out = await self._send(
            info.name, plans.plan_traverse(info, latent, dimension, steps), [wire.IMAGE, wire.LATENT]
        )
        # FP32 images and latents, as the wire contract gives traverse's outputs
        return Traversal(
            cast("npt.NDArray[np.float32]", out[wire.IMAGE]),
            cast("npt.NDArray[np.float32]", out[wire.LATENT]),
            int(dimension),
        )
