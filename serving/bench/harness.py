"""`sae bench`: latency and throughput of the served paths through gRPC, beside the same graphs in-process.

For each path (encode, decode, reconstruct, hybrid_sample) and batch size: first gRPC at concurrency 1 interleaved
call by call with the in-process baseline (so both sides of their ratio see the same load on a shared machine;
concurrency 1 is measured whenever there is a baseline), then one gRPC cell per other concurrency level. Every gRPC
cell is bracketed by two scrapes of Triton's Prometheus endpoint, so the server's queue and compute times of exactly
that cell are known.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from sae.core import wire
from sae.core.atomic import write_text_atomic
from sae.serving.bench import perf_analyzer as pa
from sae.serving.bench.config import BenchConfig
from sae.serving.bench.device import device_info
from sae.serving.bench.grpc_runner import GrpcRunner
from sae.serving.bench.inprocess import InProcessRunner, RepositoryError
from sae.serving.bench.prometheus import scrape_after, scrape_settled, server_times
from sae.serving.bench.served import describe_served
from sae.serving.bench.timing import run_cell, run_paired, summarize, warm_up
from sae.serving.bench.workloads import path_inputs

_log = logging.getLogger(__name__)

SCHEMA = "sae-bench/1"


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for package in ("tritonclient", "onnxruntime", "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def _host() -> dict:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "packages": _versions(),
    }


def compute_ratios(grpc_cells: list[dict], in_process_cells: list[dict]) -> dict[str, list[dict]]:
    """Per path and batch size: gRPC p50 / in-process p50 (from the interleaved pair when there is one, else the
    lowest gRPC concurrency), and the best gRPC throughput over all concurrency levels / in-process throughput."""
    ratios: dict[str, list[dict]] = {}
    for base in in_process_cells:
        same = [
            c
            for c in grpc_cells
            if c["path"] == base["path"] and c["batch_size"] == base["batch_size"] and c["p50_ms"] is not None
        ]
        if not same or base["p50_ms"] is None:
            continue
        paired = min(same, key=lambda c: (not c.get("interleaved_with_in_process"), c["concurrency"]))
        best = max(same, key=lambda c: c["items_per_s"])
        ratios.setdefault(base["path"], []).append(
            {
                "batch_size": base["batch_size"],
                "grpc_concurrency": paired["concurrency"],
                "interleaved": bool(paired.get("interleaved_with_in_process")),
                "grpc_p50_ms": paired["p50_ms"],
                "in_process_p50_ms": base["p50_ms"],
                "grpc_over_in_process_p50": paired["p50_ms"] / base["p50_ms"],
                "grpc_best_items_per_s": best["items_per_s"],
                "grpc_best_concurrency": best["concurrency"],
                "in_process_items_per_s": base["items_per_s"],
                "grpc_over_in_process_throughput": best["items_per_s"] / base["items_per_s"]
                if base["items_per_s"]
                else None,
            }
        )
    return ratios


class _ServerTimes:
    """Scrapes around each gRPC cell; after the first failed scrape it stops trying and says why."""

    def __init__(self, metrics_url: str | None):
        self.url = metrics_url
        self.error: str | None = None if metrics_url else "no metrics URL given"

    def before(self, models: list[str]):
        if self.url is None or self.error:  # no URL: ``error`` says so
            return None
        try:
            return scrape_settled(self.url, models)
        except OSError as e:
            self.error = f"{self.url}: {e}"
            return None

    def after(self, before, requests: int, models: list[str]) -> dict | None:
        if before is None or self.url is None or self.error:
            return None
        try:
            return server_times(before, scrape_after(self.url, before, models, requests), models)
        except OSError as e:
            self.error = f"{self.url}: {e}"
            return None


def _perf_analyzer_section(config: BenchConfig, grpc_cells: list[dict], log: Callable[[str], None]) -> dict:
    if not config.use_perf_analyzer:
        return {"available": False, "reason": "turned off (--no-perf-analyzer)"}
    binary, how = pa.find_perf_analyzer(config.perf_analyzer)
    if binary is None:
        return {"available": False, "reason": how}

    def fixed_inputs(cell: dict) -> dict | None:  # hybrid_sample does not batch: its size is NUM_SAMPLES
        if cell["path"] != "hybrid_sample":
            return None
        return {wire.NUM_SAMPLES: [cell["batch_size"]], wire.SEED: [config.seed]}

    started = time.monotonic()
    measured = [c for c in grpc_cells if c["requests"] and not c["errors"]]
    cells = pa.run_grid(binary, config.url, measured, config.limits, config.perf_analyzer_budget_s, fixed_inputs, log)
    return {
        "available": True,
        "binary": str(binary),
        "found": how,
        "version": pa.perf_analyzer_version(binary),
        "budget_s": config.perf_analyzer_budget_s,
        "wall_s": time.monotonic() - started,
        "cells": cells,
    }


def run_bench(config: BenchConfig, log: Callable[[str], None] | None = None) -> dict:
    """Measure the grid of ``config`` and return the report (a JSON-ready dict); progress lines go to ``log``
    (default: the module's logger at INFO)."""
    log = log or _log.info
    started = time.time()
    report: dict = {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "url": config.url,
        "metrics_url": config.metrics_url,
        "model_prefix": config.model,
        "grid": {
            "paths": list(config.paths),
            "batch_sizes": list(config.batch_sizes),
            "concurrency": list(config.concurrency),
            "max_seconds": config.limits.max_seconds,
            "max_requests": config.limits.max_requests,
            "max_in_flight_items": config.limits.max_in_flight_items,
            "warmup_requests": config.limits.warmup_requests,
            "seed": config.seed,
        },
        "host": _host(),
        "device_info": device_info(config.device),
    }
    with GrpcRunner(config.url) as grpc:
        served, shapes = describe_served(grpc.client(0), config)
        report["models"] = {path: sp.to_dict() for path, sp in served.items()}
        report["wire_shapes"] = {"height": shapes.height, "width": shapes.width, "latent_dim": shapes.latent_dim}

        in_process: InProcessRunner | None = None
        if config.repo is None:
            report["in_process"] = {
                "skipped": "no --repo given: the in-process baseline reads the exported "
                "model.onnx files from the repository",
                "cells": [],
            }
        else:
            try:
                in_process = InProcessRunner(config.repo, config)
                report["in_process"] = {"settings": in_process.settings(), "cells": []}
            except (RepositoryError, OSError) as e:
                report["in_process"] = {"skipped": str(e), "cells": []}
        bank = in_process.bank if in_process is not None else None

        times = _ServerTimes(config.metrics_url)
        grpc_cells: list[dict] = []
        skipped: list[dict] = []
        limits = config.limits
        for path in config.paths:
            sp = served[path]
            models = sp.measured_models()
            for batch in config.batch_sizes:
                if batch > sp.max_items:
                    skipped.append(
                        {
                            "path": path,
                            "batch_size": batch,
                            "reason": f"larger than {sp.model}'s limit of {sp.max_items} per request",
                        }
                    )
                    continue
                inputs = path_inputs(path, batch, shapes, config.seed, bank)
                grpc_call = grpc.calls(sp.model, inputs, 1)[0]
                local_call = in_process.call(path, inputs) if in_process is not None else None
                failure = _warm_up_failure(grpc_call, local_call, limits.warmup_requests)
                if failure is not None:  # reported as a failed cell; the rest of the grid goes on
                    grpc_cells.append(
                        {
                            "path": path,
                            "model": sp.model,
                            "interleaved_with_in_process": False,
                            **summarize([], 0.0, batch, 1, 1, failure).to_dict(),
                            "server": None,
                        }
                    )
                    log(f"{path} batch {batch}: {failure}")
                    continue
                levels = list(config.concurrency)
                if local_call is not None:
                    # concurrency 1 through gRPC, interleaved with the in-process baseline: the ratio's two sides
                    before = times.before(models)
                    local, remote = run_paired(local_call, grpc_call, batch, limits)
                    server = times.after(before, remote.requests + remote.errors, models)
                    report["in_process"]["cells"].append({"path": path, **local.to_dict()})
                    grpc_cells.append(
                        {
                            "path": path,
                            "model": sp.model,
                            "interleaved_with_in_process": True,
                            **remote.to_dict(),
                            "server": server,
                            "decodes_through": sp.decodes_through,
                        }
                    )
                    log(
                        f"{path} batch {batch}: in-process p50 {_fmt(local.p50_ms)} ms, gRPC p50 "
                        f"{_fmt(remote.p50_ms)} ms (interleaved, {remote.requests} each)" + _errors(local, remote)
                    )
                    levels = [c for c in levels if c != 1]
                for concurrency in levels:
                    if batch * concurrency > limits.max_in_flight_items:
                        skipped.append(
                            {
                                "path": path,
                                "batch_size": batch,
                                "concurrency": concurrency,
                                "reason": f"{batch} x {concurrency} items in flight > max_in_flight_items "
                                f"{limits.max_in_flight_items}",
                            }
                        )
                        continue
                    calls = grpc.calls(sp.model, inputs, concurrency)
                    before = times.before(models)
                    stats = run_cell(calls, batch, limits)
                    server = times.after(before, stats.requests + stats.errors, models)
                    grpc_cells.append(
                        {
                            "path": path,
                            "model": sp.model,
                            "interleaved_with_in_process": False,
                            **stats.to_dict(),
                            "server": server,
                            "decodes_through": sp.decodes_through,
                        }
                    )
                    log(
                        f"{path} batch {batch} gRPC concurrency {concurrency}: p50 {_fmt(stats.p50_ms)} ms, "
                        f"{stats.items_per_s:.0f} items/s over {stats.requests}" + _errors(stats)
                    )
        report["grpc"] = {"cells": grpc_cells, "server_times_error": times.error}
        report["skipped"] = skipped
        report["ratios"] = compute_ratios(grpc_cells, report["in_process"]["cells"])
        report["p50_ratio_by_path"] = {
            path: {str(r["batch_size"]): round(r["grpc_over_in_process_p50"], 3) for r in entries}
            for path, entries in report["ratios"].items()
        }
        report["perf_analyzer"] = _perf_analyzer_section(config, grpc_cells, log)
    report["host"]["load_average_end"] = list(os.getloadavg())
    report["wall_s"] = time.time() - started
    return report


def _warm_up_failure(grpc_call, local_call, requests: int) -> str | None:
    for where, call in (("gRPC", grpc_call), ("in-process", local_call)):
        if call is None:
            continue
        try:
            warm_up(call, max(requests, 1))  # one request at least: a cell that cannot run fails here, once
        except Exception as e:
            return f"{where} warm-up request failed: {type(e).__name__}: {e}"
    return None


def _errors(*cells) -> str:
    return "".join(f"; {c.errors} error(s): {c.first_error}" for c in cells if c.errors)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def write_report(report: dict, out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(report, indent=2) + "\n")
    return out
