"""A run's metrics: ``metrics.csv`` (one row per logged step and split), TensorBoard event files, a loss-curve PNG.

Resuming from a checkpoint at step S drops the CSV rows after S and tells TensorBoard to purge its events after S,
because those steps are trained again: every step appears once, whether or not the run was interrupted.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from sae.core.atomic import atomic_write

METRICS_CSV = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"
LOSS_CURVE_PNG = "loss_curve.png"
FIXED_COLUMNS = ("step", "split")


def read_metrics(path: Path) -> list[dict[str, float | int | str]]:
    """Rows of a ``metrics.csv`` (or of ``RUN/metrics.csv`` given a run folder); numbers parsed, blanks dropped."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_CSV
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as f:
        for raw in csv.DictReader(f):
            row: dict[str, float | int | str] = {"step": int(raw["step"]), "split": raw["split"]}
            row.update({k: float(v) for k, v in raw.items() if k not in FIXED_COLUMNS and v not in ("", None)})
            rows.append(row)
    return rows


class MetricsLog:
    """Appends metrics to the CSV and to TensorBoard (as ``split/name``). Only rank 0 of a run should open one."""

    def __init__(self, run_dir: Path, start_step: int = 0, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.run_dir / METRICS_CSV
        self.rows = [r for r in read_metrics(self.csv_path) if int(r["step"]) <= start_step]
        self.columns = _columns(self.rows)
        self._rewrite()
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(
                str(self.run_dir / TENSORBOARD_DIR), purge_step=start_step + 1 if start_step else None
            )

    def log(self, step: int, split: str, values: dict[str, float]) -> None:
        row: dict[str, float | int | str] = {"step": step, "split": split, **values}
        self.rows.append(row)
        new_columns = _columns([row])
        if set(new_columns) - set(self.columns):
            self.columns = _columns(self.rows)
            self._rewrite()
        else:
            with self.csv_path.open("a", newline="") as f:
                csv.DictWriter(f, self.columns).writerow(row)
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(f"{split}/{name}", value, step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _rewrite(self) -> None:
        with atomic_write(self.csv_path) as tmp, tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, self.columns)
            w.writeheader()
            w.writerows(self.rows)


def _columns(rows: list[dict]) -> list[str]:
    """step, split, loss first, then the other metrics in alphabetical order."""
    names = sorted({k for r in rows for k in r} - set(FIXED_COLUMNS) - {"loss"})
    return [*FIXED_COLUMNS, "loss", *names]


def write_loss_curve(run_dir: Path, title: str = "") -> Path:
    """Plot training and validation loss against step from ``metrics.csv`` into ``RUN/loss_curve.png``.

    Uses matplotlib's object API with the Agg canvas, so it never touches pyplot's global backend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for split in ("train", "val"):
        points = [
            (r["step"], r["loss"])
            for r in rows
            if r["split"] == split and math.isfinite(float(r.get("loss", math.nan)))
        ]
        if points:
            steps, losses = zip(*points)
            marker = "o" if split == "val" or len(points) < 50 else None
            ax.plot(steps, losses, marker=marker, markersize=3, label=f"{split} loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title or run_dir.name)
    if rows:
        ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = run_dir / LOSS_CURVE_PNG
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
