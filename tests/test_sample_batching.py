"""Concurrent sampling requests decoded together against a real Triton server (a beta-VAE set: hybrid and prior
samples): ``NAME_hybrid_sample`` and ``NAME_prior_sample`` draw each request alone and decode through
``NAME_decode``'s dynamic batcher (BLS). Under 16 concurrent clients every answer equals the same request served
alone, a request the decoder refuses fails alone among good ones, and Triton's statistics count fewer decoder runs
than sampling requests."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import copy_repository, short_run

pytestmark = [pytest.mark.server, pytest.mark.slow]

NAME, CONFIG, STEPS = "vae", "betavae-tiny", 20  # k = D = 12: one variable per dimension; a prior
CLIENTS = 16
D = 12


@pytest.fixture(scope="module")
def server(tmp_path_factory, shapes_file):
    from sae.export.model_set import export_run
    from sae.serving.triton import ServerConfig, TritonServer

    run = short_run(tmp_path_factory, shapes_file, CONFIG, STEPS)
    repo = copy_repository(tmp_path_factory.mktemp("batching") / "model_repository")
    export_run(run, repo, name=NAME)
    log = tmp_path_factory.mktemp("batching-server") / "server.log"
    with TritonServer(ServerConfig(repository=repo), log_path=log) as s:
        yield s


@pytest.fixture(scope="module")
def clients(server):
    """One SAEClient per concurrent caller, as 16 independent processes would have."""
    from sae.clients.triton_client import SAEClient

    made = [SAEClient(server.grpc_url, model=NAME) for _ in range(CLIENTS)]
    made[0].wait_ready(timeout_s=60)
    made[0].wait_ready(timeout_s=60, role="prior_sample")
    yield made
    for c in made:
        c.close()


def calls() -> list[tuple[str, dict]]:
    """Sampling calls with their own SEED, NUM_SAMPLES, draw mode and BASE/MASK, prior samples among them."""
    rng = np.random.default_rng(0)
    made = []
    for i in range(48):
        if i % 6 == 5:
            made.append(("prior", {"n": (1, 4, 8)[i % 3], "seed": 1000 + i}))
            continue
        kwargs = {"n": (1, 3, 8, 5)[i % 4], "seed": 7 * i, "draw": ("independent", "per_dimension")[i % 2]}
        if i % 3 == 1:
            rows = 1 if i % 2 else kwargs["n"]
            kwargs["base"] = rng.normal(size=(rows, D)).astype(np.float32)
            kwargs["mask"] = rng.random(D) < 0.5
        made.append(("hybrid", kwargs))
    return made


def serve(client, kind: str, kwargs: dict):
    return client.prior_sample(**kwargs) if kind == "prior" else client.sample(**kwargs)


def assert_same(alone, together, label: str) -> None:
    assert np.array_equal(alone.latents, together.latents), f"{label}: LATENT differs"
    if hasattr(alone, "source_index"):
        assert np.array_equal(alone.source_index, together.source_index), f"{label}: SOURCE_INDEX differs"
        assert alone.draw_mode == together.draw_mode, label
    assert alone.images.shape == together.images.shape, label
    assert np.abs(alone.images - together.images).max() <= 1e-5, f"{label}: IMAGE differs"


def concurrently(clients, work: list, fn) -> list:
    """``fn(client, item)`` for each item, CLIENTS threads at once released together; the results in order."""
    start = threading.Barrier(CLIENTS)
    results: list = [None] * len(work)

    def worker(t: int) -> None:
        start.wait()
        for i in range(t, len(work), CLIENTS):
            try:
                results[i] = fn(clients[t], work[i])
            except Exception as e:
                results[i] = e

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(worker, range(CLIENTS)))
    return results


def stats(raw, model: str) -> tuple[int, int]:
    """(successful requests, executions) Triton has counted for ``model``."""
    s = raw.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return int(s["inference_stats"]["success"].get("count", 0)), int(s.get("execution_count", 0))


def settled(raw, model: str, expected_requests: int, timeout_s: float = 10.0) -> tuple[int, int]:
    """stats() once the request count reaches ``expected_requests`` (Triton records them after the response)."""
    deadline = time.monotonic() + timeout_s
    while True:
        counts = stats(raw, model)
        if counts[0] >= expected_requests or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


@pytest.fixture(scope="module")
def raw(server):
    import tritonclient.grpc as grpcclient

    c = grpcclient.InferenceServerClient(server.grpc_url)
    yield c
    c.close()


def test_concurrent_answers_equal_the_same_requests_served_alone_and_decode_merges_them(clients, raw):
    work = calls()
    alone = [serve(clients[0], kind, kwargs) for kind, kwargs in work]
    models = {"hybrid": f"{NAME}_hybrid_sample", "prior": f"{NAME}_prior_sample"}
    before = {m: stats(raw, m) for m in (*models.values(), f"{NAME}_decode")}
    rounds = 3
    together = concurrently(clients, work * rounds, lambda c, item: serve(c, *item))
    for i, result in enumerate(together):
        kind, kwargs = work[i % len(work)]
        assert not isinstance(result, Exception), f"call {i} ({kind}, {kwargs}): {result}"
        assert_same(alone[i % len(work)], result, f"call {i} ({kind}, {kwargs})")
    sampled = 0
    for kind, model in models.items():
        count = rounds * sum(1 for k, _ in work if k == kind)
        requests, executions = settled(raw, model, before[model][0] + count)
        assert requests - before[model][0] == count, model
        assert executions - before[model][1] == count, f"{model} itself runs once per request"
        sampled += count
    decode = f"{NAME}_decode"
    requests, executions = settled(raw, decode, before[decode][0] + sampled)
    assert requests - before[decode][0] == sampled, "each sampling request decodes through decode once"
    merged = executions - before[decode][1]
    assert merged < sampled, f"{sampled} sampling requests took {merged} decoder runs: none were merged"


def test_a_request_the_decoder_refuses_fails_alone_among_concurrent_good_ones(clients, raw):
    work = [item for item in calls() if item[0] == "hybrid"][: CLIENTS * 2]
    huge = np.full((1, D), np.finfo(np.float32).max, np.float32)  # finite, but the decoder overflows on it
    bad = ("hybrid", {"n": 4, "seed": 5, "base": huge, "mask": np.zeros(D, bool)})
    positions = {3, 17, 30}
    mixed = [bad if i in positions else item for i, item in enumerate(work)]
    alone = [None if i in positions else serve(clients[0], *item) for i, item in enumerate(mixed)]
    before = stats(raw, f"{NAME}_decode")
    together = concurrently(clients, mixed, lambda c, item: serve(c, *item))
    for i, result in enumerate(together):
        if i in positions:
            assert isinstance(result, Exception) and "BASE" in str(result) and "not finite" in str(result), result
        else:
            assert not isinstance(result, Exception), f"call {i}: {result}"
            assert_same(alone[i], result, f"call {i}")
    requests, executions = settled(raw, f"{NAME}_decode", before[0] + len(mixed) - len(positions))
    assert executions - before[1] < len(mixed), "the decoder ran each request alone: nothing was merged"
