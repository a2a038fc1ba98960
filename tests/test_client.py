"""The client library: request plans and checks (to the wire contract), retries, timeouts, shared memory, asyncio.

The first part needs no server: it checks the client against a configuration shaped like the contract's
hybrid_sample/traverse. The second part calls the real server of the `triton` fixture.
"""

from __future__ import annotations

import asyncio
import random
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from sae import clients
from sae.clients.aio import AsyncSAEClient
from sae.clients.model_info import ModelInfo
from sae.clients.request_plans import check_images, part_seed, plan_sample, plan_traverse, sample_limit
from sae.clients.retry import Retrier, RetryPolicy
from sae.clients.triton_client import SAEClient
from sae.core.errors import (
    ClientError,
    ClientTimeoutError,
    InferenceError,
    InvalidInputError,
    ModelNotServedError,
    ServerUnavailableError,
)

D, K = 12, 4  # a contract-shaped SAE-4 with 12 latent dimensions

CONTRACT_HYBRID = {
    "name": "shapes_hybrid_sample",
    "max_batch_size": 0,
    "input": [
        {"name": "NUM_SAMPLES", "data_type": "TYPE_INT64", "dims": ["1"]},
        {"name": "SEED", "data_type": "TYPE_INT64", "dims": ["1"]},
        {"name": "PER_DIMENSION", "data_type": "TYPE_BOOL", "dims": ["1"], "optional": True},
        {"name": "DRAW", "data_type": "TYPE_STRING", "dims": ["1"], "optional": True},
        {"name": "BASE", "data_type": "TYPE_FP32", "dims": ["-1", str(D)], "optional": True},
        {"name": "MASK", "data_type": "TYPE_BOOL", "dims": [str(K)], "optional": True},
    ],
    "output": [
        {"name": "IMAGE", "data_type": "TYPE_FP32", "dims": ["-1", "64", "64", "3"]},
        {"name": "LATENT", "data_type": "TYPE_FP32", "dims": ["-1", str(D)]},
        {"name": "SOURCE_INDEX", "data_type": "TYPE_INT64", "dims": ["-1", str(K)]},
        {"name": "DRAW_MODE", "data_type": "TYPE_STRING", "dims": ["1"]},
    ],
    "ensemble_scheduling": {"step": [{"model_name": "shapes_sampler"}, {"model_name": "shapes_decode"}]},
}
CONTRACT_TRAVERSE = {
    "name": "shapes_traverse",
    "max_batch_size": 0,
    "input": [
        {"name": "LATENT", "data_type": "TYPE_FP32", "dims": [str(D)]},
        {"name": "DIMENSION", "data_type": "TYPE_INT64", "dims": ["1"]},
        {"name": "STEPS", "data_type": "TYPE_INT64", "dims": ["1"]},
    ],
    "output": [
        {"name": "IMAGE", "data_type": "TYPE_FP32", "dims": ["-1", "64", "64", "3"]},
        {"name": "LATENT", "data_type": "TYPE_FP32", "dims": ["-1", str(D)]},
    ],
}
ENCODE = {
    "name": "encode",
    "max_batch_size": 256,
    "input": [{"name": "IMAGE", "data_type": "TYPE_UINT8", "dims": ["64", "64", "3"]}],
    "output": [{"name": "LATENT", "data_type": "TYPE_FP32", "dims": [str(D)]}],
}


@pytest.fixture
def hybrid() -> ModelInfo:
    return ModelInfo.from_config(CONTRACT_HYBRID)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------------- no server


def test_clients_package_exports_both_clients_without_importing_grpc_eagerly():
    import subprocess

    code = (
        "import sys; from sae import clients; assert 'tritonclient' not in sys.modules; "
        "print(clients.SAEClient.__name__, clients.AsyncSAEClient.__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["SAEClient", "AsyncSAEClient"]
    assert clients.SAEClient is SAEClient and clients.AsyncSAEClient is AsyncSAEClient


def test_model_info_reads_protobuf_json(hybrid):
    assert hybrid.max_batch_size == 0 and hybrid.steps == ("shapes_sampler", "shapes_decode")
    assert hybrid.inputs["MASK"].dims == (K,) and hybrid.inputs["MASK"].optional
    assert hybrid.inputs["BASE"].datatype == "FP32" and hybrid.inputs["BASE"].dims == (-1, D)
    sampler = ModelInfo.from_config({"name": "shapes_sampler", "parameters": {"max_samples": {"string_value": "100"}}})
    decode = ModelInfo.from_config({"name": "shapes_decode", "max_batch_size": 64})
    assert sample_limit(hybrid, [sampler, decode]) == 64, "the decoder's batch caps the draw"
    assert sample_limit(hybrid, [sampler]) == 100
    assert sample_limit(hybrid, []) == 256, "the contract's default"


def test_prefixed_names():
    assert SAEClient("127.0.0.1:1", model="shapes").served_name("encode") == "shapes_encode"
    assert SAEClient("127.0.0.1:1").served_name("hybrid_sample") == "hybrid_sample"


def test_large_samples_are_split_with_base_rows_following_their_samples(hybrid):
    base = np.arange(600 * D, dtype=np.float64).reshape(600, D)
    mask = np.array([True, False, True, False])
    requests = plan_sample(hybrid, 256, 600, 7, base=base, mask=mask, per_dimension=True)
    assert [int(r["NUM_SAMPLES"][0]) for r in requests] == [256, 256, 88]
    assert int(requests[0]["SEED"][0]) == 7, "a call that fits in one request is the plain request"
    assert len({int(r["SEED"][0]) for r in requests}) == 3
    assert [int(r["SEED"][0]) for r in requests] == [part_seed(7, i) for i in range(3)]
    assert np.array_equal(np.concatenate([r["BASE"] for r in requests]), base.astype(np.float32))
    assert all(r["BASE"].dtype == np.float32 and np.array_equal(r["MASK"], mask) for r in requests)
    assert all(r["DRAW"].tolist() == [b"per_dimension"] for r in requests)
    one_row = plan_sample(hybrid, 256, 300, 7, base=base[0])  # one BASE row serves every sample
    assert [r["BASE"].shape for r in one_row] == [(1, D), (1, D)]
    plain = plan_sample(hybrid, 256, 10, 7)
    assert set(plain[0]) == {"NUM_SAMPLES", "SEED", "DRAW"}, "BASE and MASK are optional on the wire"
    assert plain[0]["DRAW"].tolist() == [b"independent"], "the paper's independent draw is the default"


@pytest.mark.parametrize(
    "kwargs,wire",
    [
        (dict(), b"independent"),
        (dict(draw="distinct"), b"distinct"),
        (dict(draw="per_dimension"), b"per_dimension"),
        (dict(per_dimension=True), b"per_dimension"),
        (dict(draw="per_dimension", per_dimension=True), b"per_dimension"),
    ],
)
def test_the_draw_mode_goes_on_the_wire_as_DRAW(hybrid, kwargs, wire):
    (request,) = plan_sample(hybrid, 256, 4, 0, **kwargs)
    assert request["DRAW"].dtype == np.object_ and request["DRAW"].tolist() == [wire]
    assert "PER_DIMENSION" not in request, "one input names the mode"


def test_a_server_without_DRAW_still_gets_per_dimension_through_PER_DIMENSION():
    older = ModelInfo.from_config(
        {**CONTRACT_HYBRID, "input": [i for i in CONTRACT_HYBRID["input"] if i["name"] != "DRAW"]}
    )
    assert plan_sample(older, 256, 4, 0, draw="per_dimension")[0]["PER_DIMENSION"].tolist() == [True]
    assert plan_sample(older, 256, 4, 0)[0]["PER_DIMENSION"].tolist() == [False]
    with pytest.raises(InvalidInputError, match="has no input DRAW"):
        plan_sample(older, 256, 4, 0, draw="distinct")


@pytest.mark.parametrize(
    "kwargs,name,match",
    [
        (dict(n=0), "NUM_SAMPLES", r"NUM_SAMPLES must be an integer in 1\.\."),
        (dict(n=True), "NUM_SAMPLES", "NUM_SAMPLES"),
        (dict(n=2.0), "NUM_SAMPLES", "NUM_SAMPLES"),
        (dict(seed=-1), "SEED", "SEED must be an integer"),
        (dict(per_dimension="yes"), "PER_DIMENSION", "PER_DIMENSION must be a bool"),
        (dict(draw="per_variable"), "DRAW", "DRAW must be one of independent, distinct, per_dimension"),
        (dict(draw="distinct", per_dimension=True), "DRAW", "contradicts per_dimension=True"),
        (dict(mask=np.ones(K, bool)), "MASK", "MASK needs BASE"),
        (dict(base=np.zeros((1, D)), mask=np.ones(K + 1, bool)), "MASK", rf"MASK must have shape \[{K}\]"),
        (dict(base=np.zeros((1, D)), mask=np.ones(K, np.int64)), "MASK", "MASK must be bool"),
        (dict(base=np.zeros((1, D + 1))), "BASE", rf"BASE must have shape \[1 or 5, {D}\]"),
        (dict(base=np.zeros((3, D))), "BASE", r"BASE must have shape \[1 or 5"),
        (dict(base=np.full((1, D), np.nan)), "BASE", "BASE contains NaN"),
        (dict(base=np.zeros((1, D), np.int32)), "BASE", "BASE must be floating point"),
    ],
)
def test_bad_sample_arguments_name_the_model_and_the_input(hybrid, kwargs, name, match):
    args = dict(n=5, seed=0) | kwargs
    with pytest.raises(InvalidInputError, match=match) as err:
        plan_sample(hybrid, 256, args.pop("n"), args.pop("seed"), **args)
    assert err.value.model == "shapes_hybrid_sample" and err.value.input_name == name
    assert str(err.value).startswith("shapes_hybrid_sample: input " + name)


def test_inputs_the_served_model_lacks_are_refused_by_name():
    old = ModelInfo.from_config({**CONTRACT_HYBRID, "input": CONTRACT_HYBRID["input"][:2]})
    with pytest.raises(InvalidInputError, match="has no input BASE"):
        plan_sample(old, 256, 4, 0, base=np.zeros(D))
    with pytest.raises(InvalidInputError, match="has no input PER_DIMENSION"):
        plan_sample(old, 256, 4, 0, per_dimension=True)
    assert set(plan_sample(old, 256, 4, 0)[0]) == {"NUM_SAMPLES", "SEED"}, "the default asks for nothing it lacks"


def test_traverse_requests_and_their_checks():
    info = ModelInfo.from_config(CONTRACT_TRAVERSE)
    request = plan_traverse(info, np.ones(D), 3, 8)
    assert request["LATENT"].shape == (D,) and request["LATENT"].dtype == np.float32
    assert request["DIMENSION"].tolist() == [3] and request["STEPS"].tolist() == [8]
    narrow = ModelInfo.from_config({**CONTRACT_TRAVERSE, "parameters": {"max_steps": {"string_value": "16"}}})
    with pytest.raises(InvalidInputError, match=r"shapes_traverse: input STEPS must be an integer in 2\.\.16"):
        plan_traverse(narrow, np.ones(D), 0, 17)  # the served limit wins over the contract's 64
    for kwargs, name in [
        (dict(dimension=D), "DIMENSION"),
        (dict(dimension=-1), "DIMENSION"),
        (dict(steps=1), "STEPS"),
        (dict(steps=65), "STEPS"),
        (dict(latent=np.ones((2, D))), "LATENT"),
        (dict(latent=np.ones(D - 1)), "LATENT"),
    ]:
        args = dict(latent=np.ones(D), dimension=0, steps=8) | kwargs
        with pytest.raises(InvalidInputError, match=f"shapes_traverse: input {name}"):
            plan_traverse(info, **args)


def test_images_are_checked_against_the_served_dims():
    info = ModelInfo.from_config(ENCODE)
    assert check_images(info, np.zeros((2, 64, 64, 3), np.uint8)).flags.c_contiguous
    with pytest.raises(
        InvalidInputError,
        match=r"encode: input IMAGE must have shape \[N>0, 64, 64, 3\], "
        r"got \[64, 64, 3\]",
    ):
        check_images(info, np.zeros((64, 64, 3), np.uint8))


def _error(status: str) -> InferenceServerException:
    return InferenceServerException("boom", status=status)


def test_only_unavailable_and_deadline_are_retried_with_bounded_jittered_backoff():
    policy = RetryPolicy(attempts=4, initial_backoff_s=0.1, max_backoff_s=0.25)
    retrier = Retrier(policy, 60.0, "encode", "127.0.0.1:1", random.Random(0))
    delays = [
        retrier.next_delay(_error("StatusCode.UNAVAILABLE")),
        retrier.next_delay(_error("StatusCode.DEADLINE_EXCEEDED")),
        retrier.next_delay(_error("StatusCode.UNAVAILABLE")),
    ]
    assert all(0 <= d <= cap for d, cap in zip(delays, [0.1, 0.2, 0.25])), delays
    assert len(set(delays)) == 3, "jittered"
    with pytest.raises(ServerUnavailableError, match="encode: server at 127.0.0.1:1 unavailable after 4 tries"):
        retrier.next_delay(_error("StatusCode.UNAVAILABLE"))
    refused = Retrier(policy, 60.0, "encode", "u", random.Random(0))
    with pytest.raises(InferenceError, match="encode: server at u refused the request: boom") as err:
        refused.next_delay(_error("StatusCode.INVALID_ARGUMENT"))
    assert err.value.status == "StatusCode.INVALID_ARGUMENT" and refused.tries == 1
    short = Retrier(
        RetryPolicy(attempts=10, initial_backoff_s=1.0, max_backoff_s=1.0), 0.01, "decode", "u", random.Random(1)
    )
    time.sleep(0.02)
    with pytest.raises(ClientTimeoutError, match="decode: no answer from u within the 0.01 s timeout"):
        short.next_delay(_error("StatusCode.DEADLINE_EXCEEDED"))  # no retry starts past the deadline


def test_unreachable_server_fails_after_the_bounded_retries():
    url = f"127.0.0.1:{free_port()}"
    client = SAEClient(url, retry=RetryPolicy(attempts=3, initial_backoff_s=0.05, max_backoff_s=0.1), timeout_s=10)
    started = time.monotonic()
    with pytest.raises(ServerUnavailableError, match=f"encode: server at {url} unavailable after 3 tries"):
        client.encode(np.zeros((1, 64, 64, 3), np.uint8))
    assert time.monotonic() - started < 5.0
    client.close()
    with pytest.raises(ClientError, match="closed"):
        client.encode(np.zeros((1, 64, 64, 3), np.uint8))


# --------------------------------------------------------------------------------------------------- real server


@pytest.fixture(scope="module")
def raw(triton):
    import tritonclient.grpc as grpcclient

    c = grpcclient.InferenceServerClient(triton.grpc_url)
    yield c
    c.close()


def _stats(raw, model: str, expected: tuple[int, int] | None = None, timeout_s: float = 10.0) -> tuple[int, int]:
    """(requests, images) the server has answered for ``model`` so far. Triton records a request's statistics after
    its response has gone out, so with ``expected`` this polls (up to ``timeout_s``) until the counts reach it."""
    deadline = time.monotonic() + timeout_s
    while True:
        stats = raw.get_inference_statistics(model, as_json=True)["model_stats"][0]
        counts = int(stats["inference_stats"]["success"].get("count", 0)), int(stats.get("inference_count", 0))
        if expected is None or counts == expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


@pytest.mark.server
def test_a_batch_larger_than_max_batch_size_goes_out_in_parts(client, raw):
    limit = client.max_batch_size("encode")
    assert limit == 256
    images = np.random.default_rng(1).integers(0, 256, (limit + 44, 64, 64, 3), dtype=np.uint8)
    requests, count = _stats(raw, "encode")
    latents = client.encode(images)
    assert latents.shape == (limit + 44, 12) and latents.dtype == np.float32
    expected = (requests + 2, count + limit + 44)
    assert _stats(raw, "encode", expected) == expected
    assert np.allclose(latents[limit:], client.encode(images[limit:]), atol=1e-5)
    with pytest.raises(InferenceError, match="batch"):  # the server itself would refuse one request of them all
        client.infer("encode", {"IMAGE": images})


@pytest.mark.server
def test_samples_beyond_the_per_request_limit_are_split(client):
    assert client.max_samples() == 256  # the sampler's max_samples parameter
    big, plain = client.sample(300, seed=3), client.sample(256, seed=3)
    assert big.images.shape == (300, 64, 64, 3) and big.source_index.shape[0] == 300
    assert np.array_equal(big.latents[:256], plain.latents), "part 0 is the plain request with the same seed"
    assert big.draw_mode == "independent"
    assert client.sample(2, seed=3, per_dimension=True).draw_mode == "per_dimension"


@pytest.mark.server
def test_a_bad_request_the_server_refuses_names_the_model_and_the_input(client):
    with pytest.raises(InferenceError, match="hybrid_sample: .*NUM_SAMPLES must be in 1..256") as err:
        client.infer("hybrid_sample", {"NUM_SAMPLES": np.array([1000]), "SEED": np.array([0])})
    assert err.value.model == "hybrid_sample"
    assert client.sample(1, seed=0).images.shape == (1, 64, 64, 3), "the server keeps serving"


@pytest.mark.server
def test_an_unknown_model_name_is_reported_as_not_served(triton):
    with SAEClient(triton.grpc_url, model="nope") as c:
        with pytest.raises(ModelNotServedError, match="nope_encode: not served at"):
            c.encode(np.zeros((1, 64, 64, 3), np.uint8))


@pytest.mark.server
def test_timeouts_are_honoured(triton):
    with SAEClient(triton.grpc_url, timeout_s=0.001) as hasty:
        started = time.monotonic()
        with pytest.raises(ClientTimeoutError, match="encode: no answer .* within the 0.001 s timeout"):
            hasty.encode(np.zeros((256, 64, 64, 3), np.uint8))
        assert time.monotonic() - started < 30, "the deadline ended the call, not the server's answer"


def _regions(raw) -> set[str]:
    return set(raw.get_system_shared_memory_status(as_json=True).get("regions", {}))


@pytest.mark.server
def test_shared_memory_transport_gives_the_same_answers_and_cleans_up(triton, client, raw):
    images = np.random.default_rng(2).integers(0, 256, (300, 64, 64, 3), dtype=np.uint8)
    before = _regions(raw)
    with SAEClient(triton.grpc_url, shared_memory=True) as shm:
        latents = shm.encode(images)
        assert np.array_equal(latents, client.encode(images))
        assert np.array_equal(shm.decode(latents[:8]), client.decode(latents[:8]))
        assert np.array_equal(shm.reconstruct(images[:8]), client.reconstruct(images[:8]))
        regions = _regions(raw) - before
        assert len(regions) == 6, "one input and one output region per model, reused across requests"
    assert _regions(raw) == before, "regions unregistered on close"
    assert not [name for name in regions if Path("/dev/shm", name).exists()], "and unlinked"


@pytest.mark.server
def test_async_twin_matches_the_sync_client(triton, client):
    images = np.random.default_rng(4).integers(0, 256, (300, 64, 64, 3), dtype=np.uint8)

    async def run():
        async with AsyncSAEClient(triton.grpc_url) as ac:
            await ac.wait_ready(timeout_s=30)
            latents, samples = await asyncio.gather(ac.encode(images), ac.sample(300, seed=9))
            decoded = await ac.decode(latents[:4])
            with pytest.raises(InvalidInputError, match="hybrid_sample: input MASK needs BASE"):
                await ac.sample(2, seed=0, mask=np.ones(12, bool))
            assert await ac.max_batch_size("encode") == 256 and await ac.max_samples() == 256
        return latents, samples, decoded

    latents, samples, decoded = asyncio.run(run())
    assert np.array_equal(latents, client.encode(images))
    assert np.array_equal(samples.latents, client.sample(300, seed=9).latents)
    assert np.allclose(decoded, client.decode(latents[:4]), atol=1e-6)


# --------------------------------------------------------------------------------------------------- the new contract


@pytest.fixture(scope="module")
def contract(client):
    """The served hybrid_sample's contract: a missing BASE/MASK/DRAW_MODE is a failure, not a skip."""
    info = client.model_info("hybrid_sample")
    missing = [n for n in ("BASE", "MASK") if n not in info.inputs] + [
        n for n in ("DRAW_MODE",) if n not in info.outputs
    ]
    assert not missing, f"the exported hybrid_sample has no {', '.join(missing)}"
    return info


@pytest.fixture(scope="module")
def traverse_served(client):
    return client.model_info("traverse")  # ModelNotServedError (a failure) if export stopped serving it


@pytest.mark.server
def test_mask_all_true_is_plain_hybrid_sampling_and_all_false_is_decode_of_base(client, contract):
    k = contract.inputs["MASK"].dims[0]
    base = client.sample(6, seed=100).latents
    plain = client.sample(6, seed=1)
    redrawn = client.sample(6, seed=1, base=base, mask=np.ones(k, bool))
    assert np.array_equal(redrawn.latents, plain.latents) and np.array_equal(redrawn.images, plain.images)
    kept = client.sample(6, seed=1, base=base, mask=np.zeros(k, bool))
    assert np.array_equal(kept.latents, base)
    assert np.allclose(kept.images, client.decode(base), atol=1e-5)
    assert (kept.source_index == -1).all()


@pytest.mark.server
def test_mask_keeps_the_false_variables_of_base(client, contract, exported_repo):
    from sae.export.bank import Bank

    bank = Bank.load(exported_repo / "sampler" / "1" / "bank.h5")
    k = contract.inputs["MASK"].dims[0]
    mask = np.arange(k) % 2 == 0
    base = client.sample(1, seed=100).latents[0]
    s = client.sample(5, seed=2, base=base, mask=mask)  # one BASE row for every sample
    kept_dims = ~mask[bank.variable_of_dim]
    assert np.array_equal(s.latents[:, kept_dims], np.broadcast_to(base[kept_dims], (5, kept_dims.sum())))
    assert (s.source_index[:, ~mask] == -1).all() and (s.source_index[:, mask] >= 0).all()
    drawn = s.source_index[:, bank.variable_of_dim][:, ~kept_dims]
    assert np.array_equal(s.latents[:, ~kept_dims], bank.latents[drawn, np.arange(len(base))[~kept_dims]])
    per_dim = client.sample(5, seed=2, base=base, mask=mask, per_dimension=True)
    assert per_dim.draw_mode == "per_dimension" and per_dim.source_index.shape == (5, len(base))
    assert (per_dim.source_index[:, kept_dims] == -1).all()


@pytest.mark.server
def test_server_refuses_mask_without_base_naming_mask(client, contract):
    k = contract.inputs["MASK"].dims[0]
    with pytest.raises(InferenceError, match="MASK"):
        client.infer("hybrid_sample", {"NUM_SAMPLES": np.array([2]), "SEED": np.array([0]), "MASK": np.ones(k, bool)})


@pytest.mark.server
def test_traverse_sweeps_one_dimension_over_its_training_range(client, traverse_served, exported_repo):
    from sae.export.bank import Bank

    bank = Bank.load(exported_repo / "sampler" / "1" / "bank.h5")
    start = bank.latents[0]
    t = client.traverse(start, dimension=3, steps=7)
    assert t.latents.shape == (7, len(start)) and t.images.shape == (7, 64, 64, 3)
    others = np.arange(len(start)) != 3
    assert np.array_equal(t.latents[:, others], np.broadcast_to(start[others], (7, others.sum())))
    assert np.allclose(t.latents[:, 3], np.linspace(bank.dim_min[3], bank.dim_max[3], 7), atol=1e-5)
    assert np.allclose(t.images, client.decode(t.latents), atol=1e-5)
    with pytest.raises(InferenceError, match="STEPS"):
        client.infer("traverse", {"LATENT": start, "DIMENSION": np.array([0]), "STEPS": np.array([100])})
