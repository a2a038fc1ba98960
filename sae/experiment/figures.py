"""The report's charts (PNG, matplotlib's Agg canvas): grouped bars of mean ± std over seeds, and SAE-12's
variable-by-factor importance (the paper's figure 4).

matplotlib comes with the ``train`` extra; without it ``charts_available`` is False and the report says so instead.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path

from sae.experiment.aggregate import Spread, VariableImportance

__all__ = ["charts_available", "grouped_bars", "importance_heatmap"]


def charts_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def grouped_bars(
    path: Path, title: str, ylabel: str, groups: Sequence[str], series: Mapping[str, Mapping[str, Spread]]
) -> Path:
    """One group of bars per entry of ``groups`` (e.g. models), one bar per series (e.g. metrics), error bar = std.

    A series without a value for a group leaves that bar out.
    """
    fig = _figure(max(6.0, 0.9 * len(groups) + 2), 4)
    ax = fig.add_subplot()
    width = 0.8 / max(len(series), 1)
    for k, (name, values) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i, g in enumerate(groups) if g in values]
        spreads = [values[g] for g in groups if g in values]
        ax.bar(xs, [s.mean for s in spreads], width, yerr=[s.std for s in spreads], capsize=3, label=name)
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def importance_heatmap(path: Path, title: str, importance: VariableImportance) -> Path:
    """Variables (rows, in order) by factors (columns): each cell's share of all DCI importance."""
    fig = _figure(1.2 * len(importance.factor_names) + 2, 0.35 * len(importance.shares) + 1.8)
    ax = fig.add_subplot()
    image = ax.imshow(importance.shares, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(importance.factor_names)), importance.factor_names, rotation=30, ha="right")
    ax.set_yticks(range(len(importance.shares)), [f"variable {v + 1}" for v in range(len(importance.shares))])
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="share of all importance")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
