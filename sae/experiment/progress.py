"""One progress line per event on stderr: the cell, its stage, cells done of all, and an ETA.

The ETA uses the mean time of the cells computed in this invocation once there is one, else the grid's estimates.
On a terminal a tqdm bar over the cells is drawn (core/progress_bar.py), with the lines written above it.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

from sae.core.progress_bar import progress_bar


def format_minutes(minutes: float) -> str:
    minutes = max(0.0, minutes)
    if minutes < 60:
        return f"{minutes:.0f} min"
    return f"{int(minutes // 60)} h {minutes % 60:02.0f} min"


class Progress:
    def __init__(self, estimates: dict[str, float], stream: TextIO | None = None):
        self.estimates = dict(estimates)  # cell id -> estimated minutes
        self.done: set[str] = set()
        self.measured: list[float] = []  # minutes of cells computed here
        self.stream = stream or sys.stderr
        self._started: dict[str, float] = {}
        # a bar on a terminal (core/progress_bar.py), else None and one plain line per event
        bar = progress_bar(len(estimates), "cells", unit="cell", stream=self.stream)
        self._bar = bar if isinstance(bar, tqdm) else None

    def eta_minutes(self) -> float:
        remaining = [cell for cell in self.estimates if cell not in self.done]
        if self.measured:
            return len(remaining) * sum(self.measured) / len(self.measured)
        return sum(self.estimates[cell] for cell in remaining)

    def line(self, cell: str, stage: str) -> str:
        basis = "measured" if self.measured else "estimated"
        return (
            f"[{len(self.done)}/{len(self.estimates)} cells done] {cell}: {stage} "
            f"(ETA {format_minutes(self.eta_minutes())}, {basis})"
        )

    def event(self, cell: str, stage: str) -> None:
        self._started.setdefault(cell, time.monotonic())
        text = self.line(cell, stage)
        if self._bar is not None:
            self._bar.set_description_str(f"{cell}: {stage}")
            self._bar.write(text)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def finished(self, cell: str, computed: bool) -> None:
        """``computed``: the cell ran here (its time feeds the ETA); False when its result file already existed."""
        started = self._started.pop(cell, None)
        if computed and started is not None:
            self.measured.append((time.monotonic() - started) / 60)
        self.done.add(cell)
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
