"""Batched encode/decode through plain gRPC messages vs system shared memory (`SAEClient(shared_memory=True)`).

Excluded from the default run (`--benchmark-skip`); `make bench` runs it. Both transports of one model are in the same
group, measured in the same session against the same server, so their ratio is read off side by side.
"""

from __future__ import annotations

import numpy as np
import pytest

from sae.clients.triton_client import SAEClient

pytestmark = pytest.mark.server
BATCH = 256  # the served max_batch_size: one request per call


@pytest.fixture(scope="module")
def clients(triton):
    with SAEClient(triton.grpc_url) as plain, SAEClient(triton.grpc_url, shared_memory=True) as shm:
        yield {"grpc": plain, "shm": shm}


@pytest.fixture(scope="module")
def payloads(clients):
    images = np.random.default_rng(0).integers(0, 256, (BATCH, 64, 64, 3), dtype=np.uint8)
    return {"encode": images, "decode": clients["grpc"].encode(images)}


@pytest.mark.parametrize("transport", ["grpc", "shm"])
@pytest.mark.parametrize("model", ["encode", "decode"])
def test_transport(benchmark, clients, payloads, model, transport):
    client, payload = clients[transport], payloads[model]
    call = getattr(client, model)
    expected = getattr(clients["grpc"], model)(payload)
    benchmark.group = f"{model} batch {BATCH}"
    benchmark.extra_info.update(
        transport=transport, batch=BATCH, request_bytes=int(payload.nbytes), response_bytes=int(expected.nbytes)
    )
    result = benchmark.pedantic(call, args=(payload,), rounds=10, warmup_rounds=1)
    assert np.array_equal(result, expected)
