"""The printed form of a bench report: one row per measured cell, gRPC rows after their in-process baseline."""

from __future__ import annotations

HEADER = (
    "path",
    "batch",
    "conc",
    "transport",
    "n",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "items/s",
    "srv queue ms",
    "srv compute ms",
    "exec/req",
    "gRPC/in-proc p50",
)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _server_columns(cell: dict) -> tuple[str, str]:
    """Queue and compute summed over the ensemble's steps (or the model itself), per request of the path."""
    server = cell.get("server") or {}
    if not server:
        return "-", "-"
    steps = [m for m in server if m not in (cell["model"], cell.get("decodes_through"))] or [cell["model"]]
    queue = [server[m]["queue_ms"] for m in steps if server[m]["queue_ms"] is not None]
    compute = [server[m]["compute_infer_ms"] for m in steps if server[m]["compute_infer_ms"] is not None]
    return (_ms(sum(queue)) if queue else "-"), (_ms(sum(compute)) if compute else "-")


def _executions_column(cell: dict) -> str:
    """Triton executions per request of the path's model (below 1: its batcher merged requests), and of the model
    it decodes through (BLS) after a semicolon."""
    server = cell.get("server") or {}

    def of(model: str) -> str:
        value = (server.get(model) or {}).get("executions_per_request")
        return "-" if value is None else f"{value:.2f}"

    if not server:
        return "-"
    target = cell.get("decodes_through")
    return of(cell["model"]) + (f"; {target} {of(target)}" if target and target in server else "")


def rows(report: dict) -> list[tuple[str, ...]]:
    ratio_of = {
        (path, r["batch_size"], r["grpc_concurrency"]): r["grpc_over_in_process_p50"]
        for path, entries in report.get("ratios", {}).items()
        for r in entries
    }
    in_process = {(c["path"], c["batch_size"]): c for c in report.get("in_process", {}).get("cells", [])}
    out: list[tuple[str, ...]] = []
    seen_baseline = set()
    for cell in report["grpc"]["cells"]:
        key = (cell["path"], cell["batch_size"])
        if key in in_process and key not in seen_baseline:
            seen_baseline.add(key)
            base = in_process[key]
            out.append(
                (
                    base["path"],
                    str(base["batch_size"]),
                    "1",
                    "in-process",
                    str(base["requests"]),
                    _ms(base["p50_ms"]),
                    _ms(base["p90_ms"]),
                    _ms(base["p99_ms"]),
                    f"{base['items_per_s']:.0f}",
                    "",
                    "",
                    "",
                    "",
                )
            )
        ratio = ratio_of.get((cell["path"], cell["batch_size"], cell["concurrency"]))
        queue, compute = _server_columns(cell)
        n = str(cell["requests"]) + (f" ({cell['errors']} err)" if cell["errors"] else "")
        out.append(
            (
                cell["path"],
                str(cell["batch_size"]),
                str(cell["concurrency"]),
                "gRPC",
                n,
                _ms(cell["p50_ms"]),
                _ms(cell["p90_ms"]),
                _ms(cell["p99_ms"]),
                f"{cell['items_per_s']:.0f}",
                queue,
                compute,
                _executions_column(cell),
                "-" if ratio is None else f"{ratio:.2f}x",
            )
        )
    return out


def format_table(report: dict) -> str:
    body = [HEADER, *rows(report)]
    widths = [max(len(r[i]) for r in body) for i in range(len(HEADER))]
    lines = [
        "  ".join(v.rjust(w) if i not in (0, 3) else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths)))
        for r in body
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = []
    for skip in report.get("skipped", []):
        where = f" concurrency {skip['concurrency']}" if "concurrency" in skip else ""
        notes.append(f"skipped {skip['path']} batch {skip['batch_size']}{where}: {skip['reason']}")
    if report.get("in_process", {}).get("skipped"):
        notes.append(f"in-process baseline skipped: {report['in_process']['skipped']}")
    pa = report.get("perf_analyzer", {})
    if pa and not pa.get("available"):
        notes.append(f"perf_analyzer skipped: {pa.get('reason')}")
    elif pa:
        cells = pa.get("cells", [])
        ok = [c for c in cells if "p50_ms" in c]
        skipped = [c for c in cells if "skipped" in c]
        notes.append(
            f"perf_analyzer ({pa.get('version')}): {len(ok)} of {len(cells)} cells measured, "
            f"{len(skipped)} left out by its {pa.get('budget_s', 0):.0f} s budget, "
            f"{len(cells) - len(ok) - len(skipped)} failed (see the JSON)"
        )
    return "\n".join(lines + notes)
