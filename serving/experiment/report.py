"""Placeholder report builder: lists the cell result files in REPORT.md and results.json.

The full builder (tables, figures, claim verdicts; ``serving.experiment.claims``) replaces this module and keeps
the signature of :func:`build_report`.
"""
from __future__ import annotations

import json
from pathlib import Path


def build_report(out_dir: Path, *, command: str, wall_seconds: float | None = None) -> Path:
    """Read ``out_dir/cells/*.json``; write ``out_dir/REPORT.md`` and ``out_dir/results.json``; return REPORT.md."""
    out_dir = Path(out_dir)
    cells = [json.loads(p.read_text()) for p in sorted((out_dir / "cells").glob("*.json"))]
    (out_dir / "results.json").write_text(json.dumps({"command": command, "wall_seconds": wall_seconds,
                                                      "cells": cells}, indent=2) + "\n")
    lines = ["# Experiment report (placeholder)", "", f"Command: `{command}`", "", "| cell | kind | metrics |",
             "| --- | --- | --- |"]
    for cell in cells:
        values = cell.get("metrics") or (cell.get("extrapolation") or {}).get("heldout_mse_x1000") or {}
        shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items() if isinstance(v, (int, float)))
        lines.append(f"| {cell['cell']} | {cell['kind']} | {shown} |")
    path = out_dir / "REPORT.md"
    path.write_text("\n".join(lines) + "\n")
    return path
