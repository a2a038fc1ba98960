"""The measuring loop shared by the gRPC and the in-process runners, and the latency summary of one cell."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from sae.serving.bench.config import CellLimits


@dataclass
class CellStats:
    """Latencies (client-side, milliseconds) and throughput of one cell."""

    concurrency: int
    batch_size: int
    requests: int  # completed without error
    errors: int
    wall_s: float  # first request sent -> last response received
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    min_ms: float | None
    max_ms: float | None
    requests_per_s: float
    items_per_s: float  # images (or samples) per second: requests x batch size / wall time
    first_error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(
    latencies_s: Sequence[float],
    wall_s: float,
    batch_size: int,
    concurrency: int,
    errors: int = 0,
    first_error: str | None = None,
) -> CellStats:
    lat = np.asarray(latencies_s, dtype=np.float64) * 1e3
    n = len(lat)

    def pct(q: float) -> float | None:
        return float(np.percentile(lat, q)) if n else None

    rate = n / wall_s if wall_s > 0 else 0.0
    return CellStats(
        concurrency=concurrency,
        batch_size=batch_size,
        requests=n,
        errors=errors,
        wall_s=wall_s,
        p50_ms=pct(50),
        p90_ms=pct(90),
        p99_ms=pct(99),
        mean_ms=float(lat.mean()) if n else None,
        min_ms=float(lat.min()) if n else None,
        max_ms=float(lat.max()) if n else None,
        requests_per_s=rate,
        items_per_s=rate * batch_size,
        first_error=first_error,
    )


def run_cell(calls: Sequence[Callable[[], object]], batch_size: int, limits: CellLimits) -> CellStats:
    """Run ``len(calls)`` workers in parallel, each sending one request at a time through its own ``call``, until
    ``limits.max_requests`` were issued or ``limits.max_seconds`` passed. A worker whose call raises stops; the cell
    reports the number of errors and the first message."""
    lock = threading.Lock()
    issued = 0
    latencies: list[float] = []
    finished_at: list[float] = []
    errors: list[str] = []
    start = time.perf_counter()
    deadline = start + limits.max_seconds

    def worker(call: Callable[[], object]) -> None:
        nonlocal issued
        while True:
            with lock:
                if issued >= limits.max_requests or time.perf_counter() >= deadline:
                    return
                issued += 1
            t0 = time.perf_counter()
            try:
                call()
            except Exception as e:
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")
                return
            t1 = time.perf_counter()
            with lock:
                latencies.append(t1 - t0)
                finished_at.append(t1)

    if len(calls) == 1:
        worker(calls[0])
    else:
        threads = [threading.Thread(target=worker, args=(call,), daemon=True) for call in calls]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    wall = (max(finished_at) if finished_at else time.perf_counter()) - start
    return summarize(latencies, wall, batch_size, len(calls), len(errors), errors[0] if errors else None)


def run_paired(
    first: Callable[[], object], second: Callable[[], object], batch_size: int, limits: CellLimits
) -> tuple[CellStats, CellStats]:
    """Alternate one call of ``first`` and one of ``second`` (concurrency 1 each), so that both see the same load
    on a shared machine: their ratio stays meaningful when the absolute times drift. Each side gets
    ``limits.max_requests`` and together they get twice ``limits.max_seconds``. An error ends the pair."""
    timings: tuple[list[float], list[float]] = ([], [])
    busy = [0.0, 0.0]
    errors: list[str | None] = [None, None]
    deadline = time.perf_counter() + 2 * limits.max_seconds
    for _ in range(limits.max_requests):
        if time.perf_counter() >= deadline:
            break
        for side, call in enumerate((first, second)):
            t0 = time.perf_counter()
            try:
                call()
            except Exception as e:
                errors[side] = f"{type(e).__name__}: {e}"
                break
            elapsed = time.perf_counter() - t0
            timings[side].append(elapsed)
            busy[side] += elapsed
        if any(errors):
            break

    def stats(side: int) -> CellStats:
        return summarize(timings[side], busy[side], batch_size, 1, int(errors[side] is not None), errors[side])

    return stats(0), stats(1)


def warm_up(call: Callable[[], object], requests: int) -> None:
    for _ in range(requests):
        call()
