"""Two (or more) served repositories measured side by side in one run, with the serving targets judged for each.

The repositories are measured path by path in turn (all of encode, then all of decode, ...), each against its own
in-process baseline interleaved call by call, so a change of load on a shared machine shifts both sides of every
ratio together. The report is JSON-ready; :func:`markdown` renders the side-by-side table and the targets.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from sae.core.atomic import write_text_atomic
from sae.serving.bench.config import BenchConfig, BenchConfigError
from sae.serving.bench.harness import compute_ratios, run_bench
from sae.serving.bench.targets import judge

_log = logging.getLogger(__name__)

SCHEMA = "sae-bench-compare/1"


@dataclass(frozen=True)
class Side:
    label: str  # "before", "after", ...
    config: BenchConfig  # url, metrics_url and repo of this side; the grid is shared


def merge(reports: list[dict]) -> dict:
    """One report out of per-path reports of the same server (cells concatenated, ratios recomputed)."""
    first = reports[0]
    merged = {k: first[k] for k in ("schema", "created", "url", "metrics_url", "model_prefix", "host")}
    merged["grid"] = {**first["grid"], "paths": [p for r in reports for p in r["grid"]["paths"]]}
    merged["models"] = {k: v for r in reports for k, v in r["models"].items()}
    merged["in_process"] = {
        "settings": first["in_process"].get("settings"),
        "skipped": first["in_process"].get("skipped"),
        "cells": [c for r in reports for c in r["in_process"]["cells"]],
    }
    merged["grpc"] = {
        "cells": [c for r in reports for c in r["grpc"]["cells"]],
        "server_times_error": next(
            (r["grpc"]["server_times_error"] for r in reports if r["grpc"]["server_times_error"]), None
        ),
    }
    merged["skipped"] = [s for r in reports for s in r["skipped"]]
    merged["ratios"] = compute_ratios(merged["grpc"]["cells"], merged["in_process"]["cells"])
    merged["wall_s"] = sum(r["wall_s"] for r in reports)
    return merged


def _prefixed(log: Callable[[str], None], label: str) -> Callable[[str], None]:
    """``log`` with each line prefixed by ``[label]``."""
    return lambda line: log(f"[{label}] {line}")


def run_compare(sides: list[Side], log: Callable[[str], None] | None = None) -> dict:
    if len(sides) < 2:
        raise BenchConfigError(f"comparing needs at least two repositories, got {len(sides)}")
    log = log or _log.info
    labels = [s.label for s in sides]
    if len(set(labels)) != len(labels):
        raise BenchConfigError(f"the repositories' labels must differ, got {labels}")
    started = time.time()
    per_side: dict[str, list[dict]] = {s.label: [] for s in sides}
    for path in sides[0].config.paths:
        for side in sides:
            log(f"[{side.label}] {path}")
            config = replace(side.config, paths=(path,), use_perf_analyzer=False)
            per_side[side.label].append(run_bench(config, log=_prefixed(log, side.label)))
    reports = {label: merge(parts) for label, parts in per_side.items()}
    return {
        "schema": SCHEMA,
        "labels": labels,
        "repositories": {s.label: str(s.config.repo) for s in sides},
        "reports": reports,
        "targets": {label: judge(report) for label, report in reports.items()},
        "load_average_end": list(os.getloadavg()),
        "wall_s": time.time() - started,
    }


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.{digits}f}"


def _cells_by_key(report: dict) -> dict[tuple, dict]:
    return {(c["path"], c["batch_size"], c["concurrency"]): c for c in report["grpc"]["cells"]}


def _ratios_by_key(report: dict) -> dict[tuple, dict]:
    return {(path, r["batch_size"]): r for path, entries in report["ratios"].items() for r in entries}


def markdown(result: dict) -> str:
    labels = result["labels"]
    reports = result["reports"]
    lines = [
        "| path | batch | conc | "
        + " | ".join(f"{lab} p50 ms | {lab} ratio | {lab} added ms | {lab} items/s" for lab in labels)
        + " |",
        "| --- | --- | --- | " + " | ".join("--- | --- | --- | ---" for _ in labels) + " |",
    ]
    keys = sorted(
        {k for r in reports.values() for k in _cells_by_key(r)},
        key=lambda k: (
            result["reports"][labels[0]]["grid"]["paths"].index(k[0])
            if k[0] in result["reports"][labels[0]]["grid"]["paths"]
            else 99,
            k[1],
            k[2],
        ),
    )
    for key in keys:
        row = [key[0], str(key[1]), str(key[2])]
        for label in labels:
            cell = _cells_by_key(reports[label]).get(key)
            ratio = _ratios_by_key(reports[label]).get(key[:2])
            paired = ratio if ratio is not None and key[2] == ratio["grpc_concurrency"] else None
            row += [
                _fmt(None if cell is None else cell["p50_ms"]),
                f"{paired['grpc_over_in_process_p50']:.2f}x" if paired is not None else "",
                _fmt(paired["grpc_p50_ms"] - paired["in_process_p50_ms"]) if paired is not None else "",
                _fmt(None if cell is None else cell["items_per_s"]),
            ]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "| target | bound | " + " | ".join(labels) + " |",
        "| --- | --- | " + " | ".join("---" for _ in labels) + " |",
    ]
    for i, target in enumerate(result["targets"][labels[0]]):
        row = [target["what"], target["bound"]]
        for label in labels:
            t = result["targets"][label][i]
            verdict = "not measured" if t["met"] is None else ("met" if t["met"] else "not met")
            row.append(f"{_fmt(t['value'], 3)} ({verdict})")
        lines.append("| " + " | ".join(row) + " |")
    load = result["load_average_end"]
    lines.append(f"\nLoad average at the end: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}; {result['wall_s']:.0f} s.")
    return "\n".join(lines) + "\n"


def write_compare(result: dict, out: Path) -> tuple[Path, Path]:
    """The JSON at ``out`` and the markdown table beside it (``.md``), each written atomically."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for path, text in ((out, json.dumps(result, indent=2) + "\n"), (out.with_suffix(".md"), markdown(result))):
        write_text_atomic(path, text)
        written.append(path)
    return written[0], written[1]
