"""Triton's own load generator, where its binary exists: one perf_analyzer run per path x batch size x concurrency.

No wheel that installs into this project's environment ships a working perf_analyzer (see
``../shared/notes/triton-on-cpu.md``): the one in ``tritonclient==2.51.0``, installed with ``--no-deps --target DIR``
and given ``libb64.so.0d`` and ``libcudart.so.12`` through ``LD_LIBRARY_PATH``, runs here. Pass it (or a wrapper
script that sets the library path) with ``--perf-analyzer PATH``, or put it on PATH. Without one, this part is
skipped and the report says why. Its runs share one time budget: perf_analyzer wants several stable measurement
windows per cell, which for large batches at high concurrency would take minutes each.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sae.serving.bench.config import CellLimits

MAX_TRIALS = 5  # measurement windows at most, per run

# perf_analyzer's CSV columns (latencies in microseconds) -> report names in milliseconds
LATENCY_COLUMNS = {
    "p50 latency": "p50_ms",
    "p90 latency": "p90_ms",
    "p95 latency": "p95_ms",
    "p99 latency": "p99_ms",
    "Server Queue": "server_queue_ms",
    "Server Compute Infer": "server_compute_infer_ms",
}


def find_perf_analyzer(explicit: Path | None = None) -> tuple[Path | None, str]:
    """(binary, how it was found) or (None, why not)."""
    if explicit is not None:
        path = Path(explicit)
        if path.is_file() and os.access(path, os.X_OK):
            return path, f"given: {path}"
        return None, f"--perf-analyzer {path} is not an executable file"
    found = shutil.which("perf_analyzer")
    if found:
        return Path(found), f"on PATH: {found}"
    return None, "no perf_analyzer binary on PATH and none given with --perf-analyzer"


def perf_analyzer_version(binary: Path) -> str | None:
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or out.stderr.strip() or None


def parse_csv(text: str) -> dict:
    """The first data row of perf_analyzer's ``-f`` CSV: throughput and latencies (ms)."""
    rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        raise ValueError("perf_analyzer wrote no measurement row")
    row = rows[0]
    result = {"concurrency": int(row["Concurrency"]), "items_per_s": float(row["Inferences/Second"])}
    for column, key in LATENCY_COLUMNS.items():
        if column in row and row[column] != "":
            result[key] = float(row[column]) / 1e3
    return result


def window_requests(concurrency: int, limits: CellLimits) -> int:
    """Requests per measurement window: enough to cover every worker twice, few enough to stay quick."""
    return max(2 * concurrency, min(limits.max_requests, 10))


def target_args(binary: Path, url: str, model: str) -> list[str]:
    """The start of every perf_analyzer command line: the binary and the model it calls over gRPC at ``url``."""
    return [str(binary), "-m", model, "-u", url, "-i", "grpc"]


def count_windows_args(requests: int) -> list[str]:
    """Measurement windows of ``requests`` requests each (rather than of a span of time)."""
    return ["--measurement-mode", "count_windows", "--measurement-request-count", str(requests)]


def command(
    target: list[str], concurrency: int, input_args: list[str], csv_path: Path, limits: CellLimits
) -> list[str]:
    # Stability is judged on p50 (not the mean, which one stalled request on a shared machine throws off), with a
    # loose threshold: the harness wants a bounded run, not perf_analyzer's search for a steady state.
    return [
        *target,
        "--concurrency-range",
        str(concurrency),
        *count_windows_args(window_requests(concurrency, limits)),
        "--max-trials",
        str(MAX_TRIALS),
        "-s",
        "1000",
        "--percentile",
        "50",
        "-f",
        str(csv_path),
        *input_args,
    ]


def run_cell(
    binary: Path,
    url: str,
    model: str,
    batch_size: int,
    concurrency: int,
    batching: bool,
    limits: CellLimits,
    fixed_inputs: dict[str, list] | None = None,
    timeout_s: float = 60.0,
) -> dict:
    """One measurement. ``batching``: the model batches (``-b``); otherwise ``fixed_inputs`` are sent as they are
    (hybrid_sample: NUM_SAMPLES and SEED)."""
    started = time.monotonic()
    cell = {"model": model, "batch_size": batch_size, "concurrency": concurrency}
    with tempfile.TemporaryDirectory(prefix="sae-perf-analyzer-") as tmp:
        csv_path = Path(tmp) / "result.csv"
        if batching:  # zeros: perf_analyzer's random floats overflow the decoder, whose non-finite output is refused
            input_args = ["-b", str(batch_size), "--input-data", "zero"]
        else:
            input_data = Path(tmp) / "inputs.json"
            input_data.write_text(json.dumps({"data": [fixed_inputs or {}]}))
            input_args = ["--input-data", str(input_data)]
        cmd = command(target_args(binary, url, model), concurrency, input_args, csv_path, limits)
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {
                **cell,
                "wall_s": time.monotonic() - started,
                "error": f"perf_analyzer did not finish within {timeout_s:.0f} s",
            }
        cell["wall_s"] = time.monotonic() - started
        if out.returncode != 0 or not csv_path.is_file():
            lines = [ln.strip() for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
            return {**cell, "error": f"perf_analyzer exited {out.returncode}: " + " | ".join(lines[-2:])}
        try:
            return {**cell, **parse_csv(csv_path.read_text())}
        except (ValueError, KeyError) as e:
            return {**cell, "error": f"unreadable perf_analyzer CSV: {e}"}


def predicted_seconds(requests_per_s: float, concurrency: int, limits: CellLimits) -> float:
    """perf_analyzer's least run time at the request rate the harness measured: a warm-up window and at least three
    measurement windows of ``window_requests`` each."""
    if requests_per_s <= 0:
        return float("inf")
    return 4 * window_requests(concurrency, limits) / requests_per_s


def run_grid(
    binary: Path,
    url: str,
    cells: list[dict],
    limits: CellLimits,
    budget_s: float,
    fixed_inputs: Callable[[dict], dict | None],
    log: Callable[[str], None],
) -> list[dict]:
    """perf_analyzer on the harness's gRPC ``cells`` (path, model, batch_size, concurrency, requests_per_s), cheapest
    first, within ``budget_s`` seconds in all. ``fixed_inputs(cell)``: the inputs of a model that does not batch
    (sent as they are), None for a batching one (random data at ``-b batch_size``). A cell whose predicted run time
    does not fit in what is left is skipped, with the prediction in its entry; a run is killed when time is up."""
    deadline = time.monotonic() + budget_s
    results = []
    for cell in sorted(cells, key=lambda c: (c["batch_size"] * c["concurrency"], c["batch_size"])):
        path, batch, concurrency = cell["path"], cell["batch_size"], cell["concurrency"]
        entry = {"path": path, "model": cell["model"], "batch_size": batch, "concurrency": concurrency}
        left = deadline - time.monotonic()
        predicted = predicted_seconds(cell["requests_per_s"], concurrency, limits)
        if predicted > left:
            results.append(
                {
                    **entry,
                    "skipped": f"predicted {predicted:.0f} s > {max(left, 0):.0f} s left of "
                    f"the {budget_s:.0f} s perf_analyzer budget",
                }
            )
            continue
        fixed = fixed_inputs(cell)
        result = run_cell(binary, url, cell["model"], batch, concurrency, fixed is None, limits, fixed, timeout_s=left)
        results.append({"path": path, **result})
        log(
            f"perf_analyzer {path} batch {batch} concurrency {concurrency}: "
            + (result["error"] if "error" in result else f"p50 {result['p50_ms']:.2f} ms")
        )
    return results
