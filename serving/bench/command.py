"""The body of `sae bench` once a server is up (sae/cli/ starts one for --repo; clients cannot import it)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from sae.serving.bench.config import BenchConfig, parse_int_list, quick

DEFAULT_METRICS_PORT = 8002


def default_metrics_url(grpc_url: str) -> str:
    """Triton's default metrics endpoint on the gRPC server's host."""
    host = urlsplit(f"//{grpc_url}").hostname or "127.0.0.1"
    return f"http://{host}:{DEFAULT_METRICS_PORT}/metrics"


def config_from_args(args: argparse.Namespace, url: str, metrics_url: str | None) -> BenchConfig:
    """The grid of the command line: the full default grid, or --quick's, with any explicit option on top."""
    config = BenchConfig(
        url=url,
        metrics_url=metrics_url,
        repo=args.repo,
        model=args.model or "",
        perf_analyzer=args.perf_analyzer,
        use_perf_analyzer=not args.no_perf_analyzer,
        seed=args.seed,
        device=args.device,
    )
    if args.quick:
        config = quick(config)
    changes = {}
    if args.perf_analyzer_seconds is not None:
        changes["perf_analyzer_budget_s"] = args.perf_analyzer_seconds
    if args.batch_sizes is not None:
        changes["batch_sizes"] = parse_int_list(args.batch_sizes, "--batch-sizes")
    if args.concurrency is not None:
        changes["concurrency"] = parse_int_list(args.concurrency, "--concurrency")
    if args.paths is not None:
        changes["paths"] = tuple(p.strip() for p in args.paths.split(",") if p.strip())
    given = {
        "max_seconds": args.max_seconds,
        "max_requests": args.max_requests,
        "warmup_requests": args.warmup,
        "max_in_flight_items": args.max_in_flight_items,
    }
    limits = replace(config.limits, **{k: v for k, v in given.items() if v is not None})
    return replace(config, limits=limits, **changes)


def run_and_write(config: BenchConfig, out: Path) -> tuple[dict, Path, list[dict]]:
    """Measure and write the JSON; returns the report, its path and the cells where some request failed (the
    command prints the table and exits 1 when there are any)."""
    from sae.serving.bench.harness import run_bench, write_report

    report = run_bench(config)
    path = write_report(report, out)
    failed = [c for c in report["grpc"]["cells"] + report["in_process"]["cells"] if c["errors"]]
    return report, path, failed
