"""Sampling under concurrency, two exports of one checkpoint served side by side: samples/s and decoder runs per
request at 16 clients, the lone-request p50, and a mixed load over every batched model.

    python benchmarks/compare_sampling.py --run RUN --before-commit HEAD --seconds 20 --out out/bench/sampling.json
    python benchmarks/compare_sampling.py --repo out/bench/before --repo out/bench/after --out out/bench/sampling.json

With ``--run`` and ``--before-commit`` the two repositories are exported from the same checkpoint as in
``benchmarks/compare_repos.py`` ("before" with that commit's code, "after" with this checkout's). Both servers run
for the whole comparison and the phases alternate between them, so both see the same machine load:

* ``lone``: one client, NUM_SAMPLES 1, in series: the p50 of ``hybrid_sample``;
* ``c16_n1``, ``c16_n8``: 16 client threads calling ``hybrid_sample`` with NUM_SAMPLES 1 or 8 for ``--seconds``:
  samples/s, and from Triton's statistics (``get_inference_statistics``) the executions per request of
  ``hybrid_sample`` and of ``decode`` (its runs per sampling request: below 1 when its batcher merges them; "-"
  for a sampler that decodes in its own process);
* ``mixed``: ``--mixed-clients`` threads for ``--seconds``, each rotating through encode (1 image), decode (2
  latents), reconstruct (4 images) and hybrid_sample (8 samples): req/s, errors, p50/p99 per model and the server's
  resident memory (tritonserver and its python stubs) at the start and the end.

Writes the JSON and a markdown table beside it (``.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_repos import add_repo_options, given_or_exported  # noqa: E402

MIXED_CALLS = ("encode", "decode", "reconstruct", "hybrid_sample")


def resident_mib(pid: int) -> float:
    from sae.serving.triton.process_group import _group_members, resident_bytes

    return round(resident_bytes(_group_members(pid)) / 2**20, 1)


def counts(raw, model: str) -> tuple[int, int]:
    """(successful requests, executions) of ``model`` so far."""
    s = raw.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return int(s["inference_stats"]["success"].get("count", 0)), int(s.get("execution_count", 0))


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q) * 1e3), 2) if values else None


def threads_for(seconds: float, clients: int, call) -> tuple[dict[str, list[float]], list[str], float]:
    """``call(client, thread, i) -> name`` from ``clients`` threads (one SAEClient each) for ``seconds``."""
    from sae.clients.triton_client import SAEClient

    latencies: dict[str, list[float]] = {}
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    url = call.url

    def worker(t: int) -> None:
        with SAEClient(url, timeout_s=60) as client:
            i = 0
            start.wait()
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                began = time.perf_counter()
                try:
                    name = call(client, t, i)
                except Exception as e:
                    with lock:
                        errors.append(f"{type(e).__name__}: {e}")
                    i += 1
                    continue
                with lock:
                    latencies.setdefault(name, []).append(time.perf_counter() - began)
                i += 1

    workers = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(clients)]
    for w in workers:
        w.start()
    start.wait()
    began = time.monotonic()
    for w in workers:
        w.join(timeout=seconds + 120)
    return latencies, errors, time.monotonic() - began


class Calls:
    """The phases' calls against one server."""

    def __init__(self, url: str, samples: int = 8):
        self.url, self.samples = url, samples
        rng = np.random.default_rng(0)
        self.images = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
        self.latents = rng.normal(size=(2, 12)).astype(np.float32)

    def __call__(self, client, thread: int, i: int) -> str:
        client.sample(self.samples, seed=thread * 100_003 + i)
        return "hybrid_sample"


class MixedCalls(Calls):
    def __call__(self, client, thread: int, i: int) -> str:
        name = MIXED_CALLS[(thread + i) % len(MIXED_CALLS)]
        if name == "encode":
            client.encode(self.images[:1])
        elif name == "decode":
            client.decode(self.latents)
        elif name == "reconstruct":
            client.reconstruct(self.images)
        else:
            client.sample(8, seed=thread * 100_003 + i)
        return name


def lone_p50(url: str, requests: int) -> float:
    from sae.clients.triton_client import SAEClient

    with SAEClient(url) as client:
        for i in range(10):
            client.sample(1, seed=i)
        took = []
        for i in range(requests):
            began = time.perf_counter()
            client.sample(1, seed=i)
            took.append(time.perf_counter() - began)
    return pct(took, 50)


def concurrent_sampling(server, raw, samples: int, seconds: float) -> dict:
    before = {m: counts(raw, m) for m in ("hybrid_sample", "decode")}
    latencies, errors, took = threads_for(seconds, 16, Calls(server.grpc_url, samples))
    time.sleep(0.5)  # Triton records a request's statistics just after its response
    after = {m: counts(raw, m) for m in ("hybrid_sample", "decode")}
    done = len(latencies.get("hybrid_sample", []))
    requests = after["hybrid_sample"][0] - before["hybrid_sample"][0]
    return {
        "requests": done,
        "errors": len(errors),
        "first_errors": errors[:3],
        "samples_per_s": round(done * samples / took, 1),
        "p50_ms": pct(latencies.get("hybrid_sample", []), 50),
        "p99_ms": pct(latencies.get("hybrid_sample", []), 99),
        "hybrid_executions_per_request": round(
            (after["hybrid_sample"][1] - before["hybrid_sample"][1]) / max(1, requests), 3
        ),
        "decode_runs_per_sampling_request": round((after["decode"][1] - before["decode"][1]) / max(1, requests), 3),
    }


def mixed_load(server, raw, clients: int, seconds: float) -> dict:
    memory_before = resident_mib(server.pid)
    before = {m: counts(raw, m) for m in MIXED_CALLS}
    latencies, errors, took = threads_for(seconds, clients, MixedCalls(server.grpc_url))
    time.sleep(0.5)
    after = {m: counts(raw, m) for m in MIXED_CALLS}
    done = sum(len(v) for v in latencies.values())
    return {
        "clients": clients,
        "seconds": round(took, 1),
        "requests": done,
        "errors": len(errors),
        "first_errors": errors[:3],
        "requests_per_s": round(done / took, 1),
        "per_model": {
            m: {
                "requests": len(latencies.get(m, [])),
                "p50_ms": pct(latencies.get(m, []), 50),
                "p99_ms": pct(latencies.get(m, []), 99),
                "executions_per_request": round((after[m][1] - before[m][1]) / max(1, after[m][0] - before[m][0]), 3),
            }
            for m in MIXED_CALLS
        },
        "memory_before_mib": memory_before,
        "memory_after_mib": resident_mib(server.pid),
    }


def ratio(a, b) -> str:
    return f"{b / a:.2f}x" if a and b else "-"


def markdown(result: dict) -> str:
    (la, a), (lb, b) = list(result["sides"].items())
    rows = [
        f"| measurement | {la} | {lb} | {lb} / {la} |",
        "| --- | --- | --- | --- |",
        f"| hybrid_sample p50, 1 client, NUM_SAMPLES 1 (ms) | {a['lone_p50_ms']} | {b['lone_p50_ms']} | "
        f"{ratio(a['lone_p50_ms'], b['lone_p50_ms'])} |",
    ]
    for n in (1, 8):
        key = f"c16_n{n}"
        rows += [
            f"| 16 clients, NUM_SAMPLES {n}: samples/s | {a[key]['samples_per_s']} | {b[key]['samples_per_s']} | "
            f"{ratio(a[key]['samples_per_s'], b[key]['samples_per_s'])} |",
            f"| 16 clients, NUM_SAMPLES {n}: hybrid_sample p50 / p99 (ms) | {a[key]['p50_ms']} / "
            f"{a[key]['p99_ms']} | {b[key]['p50_ms']} / {b[key]['p99_ms']} | |",
            f"| 16 clients, NUM_SAMPLES {n}: hybrid_sample executions per request | "
            f"{a[key]['hybrid_executions_per_request']} | {b[key]['hybrid_executions_per_request']} | |",
            f"| 16 clients, NUM_SAMPLES {n}: decoder runs per sampling request | "
            f"{a[key]['decode_runs_per_sampling_request'] or '-'} | "
            f"{b[key]['decode_runs_per_sampling_request'] or '-'} | |",
        ]
    ma, mb = a["mixed"], b["mixed"]
    rows += [
        f"| mixed, {ma['clients']} clients: req/s (errors) | {ma['requests_per_s']} ({ma['errors']}) | "
        f"{mb['requests_per_s']} ({mb['errors']}) | {ratio(ma['requests_per_s'], mb['requests_per_s'])} |"
    ]
    for m in MIXED_CALLS:
        pa, pb_ = ma["per_model"][m], mb["per_model"][m]
        rows.append(
            f"| mixed: {m} p50 / p99 (ms), executions per request | {pa['p50_ms']} / {pa['p99_ms']}, "
            f"{pa['executions_per_request']} | {pb_['p50_ms']} / {pb_['p99_ms']}, "
            f"{pb_['executions_per_request']} | p99 {ratio(pa['p99_ms'], pb_['p99_ms'])} |"
        )
    rows.append(
        f"| mixed: server memory start -> end (MiB) | {ma['memory_before_mib']} -> {ma['memory_after_mib']} | "
        f"{mb['memory_before_mib']} -> {mb['memory_after_mib']} | |"
    )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_repo_options(p, "two repositories", "one per --repo (default: before, after)", Path("out/bench/sampling"))
    p.add_argument("--out", type=Path, default=Path("out/bench/sampling.json"))
    p.add_argument("--seconds", type=float, default=60.0, help="each concurrent phase, per side")
    p.add_argument("--mixed-clients", type=int, default=32)
    p.add_argument("--lone-requests", type=int, default=200)
    args = p.parse_args(argv)
    repos = given_or_exported(p, args, "--run needs --before-commit and no --repo")
    if len(repos) != 2:
        p.error("give two repositories (--repo A --repo B) or --run with --before-commit")
    labels = args.label or ["before", "after"]

    import tritonclient.grpc as grpcclient

    from sae.clients.triton_client import SAEClient
    from sae.serving.triton import ServerConfig, TritonServer

    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"seconds_per_phase": args.seconds, "sides": {label: {} for label in labels}}
    with contextlib.ExitStack() as stack:
        sides = []
        for label, repo in zip(labels, repos):
            server = stack.enter_context(
                TritonServer(
                    ServerConfig(repository=repo), log_path=args.out.parent / f"tritonserver-sampling-{label}.log"
                )
            )
            raw = grpcclient.InferenceServerClient(server.grpc_url)
            stack.callback(raw.close)
            with SAEClient(server.grpc_url) as c:
                c.wait_ready(timeout_s=120)
            sides.append((label, server, raw))
        phases = [
            ("lone_p50_ms", lambda s, r: lone_p50(s.grpc_url, args.lone_requests)),
            ("c16_n1", lambda s, r: concurrent_sampling(s, r, 1, args.seconds)),
            ("c16_n8", lambda s, r: concurrent_sampling(s, r, 8, args.seconds)),
            ("mixed", lambda s, r: mixed_load(s, r, args.mixed_clients, args.seconds)),
        ]
        for key, phase in phases:
            for label, server, raw in sides:
                print(f"{key} {label} ...", file=sys.stderr, flush=True)
                result["sides"][label][key] = phase(server, raw)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    args.out.with_suffix(".md").write_text(table)
    print(table)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
