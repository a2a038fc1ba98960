"""Requests through gRPC with tritonclient directly: no client-side validation in the timed loop, and each worker's
InferInput objects are built once and reused for every request it sends."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import np_to_triton_dtype

from sae.clients.triton_client import channel_args

REQUEST_TIMEOUT_S = 120.0


class GrpcRunner:
    """A pool of clients (one gRPC channel each), one per concurrent worker, kept for the whole run."""

    def __init__(self, url: str, timeout_s: float = REQUEST_TIMEOUT_S):
        self.url = url
        self.timeout_s = timeout_s
        self._clients: list[grpcclient.InferenceServerClient] = []

    def client(self, index: int = 0) -> grpcclient.InferenceServerClient:
        while len(self._clients) <= index:
            self._clients.append(grpcclient.InferenceServerClient(self.url, channel_args=channel_args()))
        return self._clients[index]

    def calls(self, model: str, inputs: dict[str, np.ndarray], concurrency: int) -> list[Callable[[], dict]]:
        """``concurrency`` callables, each sending the same request on its own channel and returning the outputs
        as numpy arrays (their deserialisation is part of the measured latency, as in-process returns arrays)."""
        return [self._call(self.client(i), model, inputs) for i in range(concurrency)]

    def _call(
        self, client: grpcclient.InferenceServerClient, model: str, inputs: dict[str, np.ndarray]
    ) -> Callable[[], dict]:
        tensors = []
        for name, array in inputs.items():
            tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        timeout = self.timeout_s

        def call() -> dict:
            result = client.infer(model, tensors, client_timeout=timeout)
            return {out.name: result.as_numpy(out.name) for out in result.get_response().outputs}

        return call

    def close(self) -> None:
        for c in self._clients:
            c.close()
        self._clients.clear()

    def __enter__(self) -> GrpcRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
