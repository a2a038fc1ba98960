"""Helpers of the reliability tests: raw gRPC requests, the server's processes and their resident memory."""

from __future__ import annotations

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from sae.serving.triton import TritonServer
from sae.serving.triton.process_group import _group_members, resident_bytes


def raw_infer(
    client: grpcclient.InferenceServerClient, model: str, inputs: dict[str, np.ndarray], timeout_s: float = 30.0
):
    """One request through plain tritonclient (nothing checked client-side); returns the result or raises."""
    tensors = []
    for name, array in inputs.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(np.ascontiguousarray(array))
        tensors.append(tensor)
    return client.infer(model, tensors, client_timeout=timeout_s)


def refusal(client, model: str, inputs: dict[str, np.ndarray]) -> InferenceServerException:
    """The server's error for a request that must fail (AssertionError when it is answered)."""
    try:
        raw_infer(client, model, inputs)
    except InferenceServerException as e:
        return e
    raise AssertionError(f"{model} answered a bad request: { ({k: (v.dtype, v.shape) for k, v in inputs.items()}) }")


def server_processes(server: TritonServer) -> list[int]:
    """tritonserver and its python-backend stubs (its process group)."""
    return sorted(_group_members(server.pid))


def stub_pids(server: TritonServer) -> list[int]:
    return sorted(server.stub_pids())


# --------------------------------------------------------------------------------------------------- load


def _load_calls(rng: np.random.Generator):
    """One call per served model, in turn: (name, function of a client)."""
    images = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    latents = rng.normal(size=(4, 12)).astype(np.float32)
    return [
        ("encode", lambda c: c.encode(images)),
        ("decode", lambda c: c.decode(latents)),
        ("reconstruct", lambda c: c.reconstruct(images[:2])),
        ("hybrid_sample", lambda c: c.sample(4, seed=int(rng.integers(1 << 30)))),
        ("traverse", lambda c: c.traverse(latents[0], 3, 4)),
    ]


def executions(raw: grpcclient.InferenceServerClient) -> dict[str, tuple[int, int]]:
    """(successful requests, executions) per served model, from Triton's statistics: executions below requests
    mean its dynamic batcher merged requests."""
    counts = {}
    for s in raw.get_inference_statistics("", as_json=True).get("model_stats", []):
        counts[s["name"]] = (int(s["inference_stats"]["success"].get("count", 0)), int(s.get("execution_count", 0)))
    return counts


def run_load(server: TritonServer, clients: int, requests: int, time_cap_s: float, memory_every_s: float = 1.0) -> dict:
    """``requests`` calls (or as many as fit in ``time_cap_s``) from ``clients`` threads, each with its own
    SAEClient, mixing every served model; latencies, errors and the server's resident memory over time."""
    import threading
    import time

    from sae.clients.triton_client import SAEClient

    latencies: dict[str, list[float]] = {}
    errors: list[str] = []
    lock = threading.Lock()
    issued = iter(range(requests))
    deadline = time.monotonic() + time_cap_s
    memory = [(0.0, resident_bytes(server_processes(server)))]
    stop = threading.Event()

    def worker(index: int) -> None:
        calls = _load_calls(np.random.default_rng(index))
        with SAEClient(server.grpc_url, timeout_s=30) as client:
            while time.monotonic() < deadline:
                with lock:
                    i = next(issued, None)
                if i is None:
                    return
                name, call = calls[i % len(calls)]
                started = time.perf_counter()
                try:
                    call(client)
                except Exception as e:  # counted: a load test reports every error
                    with lock:
                        errors.append(f"{name}: {type(e).__name__}: {e}")
                    continue
                with lock:
                    latencies.setdefault(name, []).append(time.perf_counter() - started)

    def sample_memory() -> None:
        start = time.monotonic()
        while not stop.wait(memory_every_s):
            memory.append((time.monotonic() - start, resident_bytes(server_processes(server))))

    raw = grpcclient.InferenceServerClient(server.grpc_url)
    executions_before = executions(raw)
    monitor = threading.Thread(target=sample_memory, daemon=True)
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    started = time.monotonic()
    monitor.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=time_cap_s + 60)
    seconds = time.monotonic() - started
    stop.set()
    monitor.join()
    memory.append((seconds, resident_bytes(server_processes(server))))
    time.sleep(0.5)  # Triton records a request's statistics just after its response
    executions_after = executions(raw)
    raw.close()

    def per_request(model: str) -> float | None:
        (r0, e0), (r1, e1) = executions_before.get(model, (0, 0)), executions_after.get(model, (0, 0))
        return round((e1 - e0) / (r1 - r0), 3) if r1 > r0 else None

    every = [x for values in latencies.values() for x in values]

    def pct(values, q):
        return float(np.percentile(values, q) * 1e3) if values else None

    return {
        "clients": clients,
        "requests_planned": requests,
        "time_cap_s": time_cap_s,
        "requests_done": len(every),
        "errors": len(errors),
        "first_errors": errors[:5],
        "seconds": round(seconds, 2),
        "requests_per_second": round(len(every) / seconds, 1),
        "p50_ms": pct(every, 50),
        "p99_ms": pct(every, 99),
        "per_model": {
            k: {
                "requests": len(v),
                "p50_ms": pct(v, 50),
                "p99_ms": pct(v, 99),
                "executions_per_request": per_request(k),
            }
            for k, v in sorted(latencies.items())
        },
        "executions_per_request": {m: per_request(m) for m in sorted(executions_after)},
        "memory_before_mib": round(memory[0][1] / 2**20, 1),
        "memory_after_mib": round(memory[-1][1] / 2**20, 1),
        "memory_series_mib": [(round(t, 1), round(b / 2**20, 1)) for t, b in memory],
    }
