"""The progress line of ``sae encode``: images, share, rate and time left."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """A small progress line (images, %, images/s, ETA): redrawn in place on a terminal, else printed every
    ``interval_s`` seconds, so logs stay short."""

    def __init__(self, total: int, done: int, stream: TextIO | None = None, interval_s: float | None = None,
                 label: str = "encode"):
        self.total, self.start_done, self.done, self.label = total, done, done, label
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = interval_s if interval_s is not None else (0.2 if self.tty else 5.0)
        self.started = self._last = time.monotonic()

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        rate = (self.done - self.start_done) / elapsed
        left = self.total - self.done
        eta = _clock(left / rate) if rate > 0 else "?"
        share = 100.0 * self.done / self.total if self.total else 100.0
        return f"{self.label} {self.done:,}/{self.total:,} images {share:5.1f}% {rate:,.0f} images/s ETA {eta}"

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            self._write(self.line(now))

    def finish(self) -> None:
        self._write(self.line())
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def _write(self, text: str) -> None:
        self.stream.write(f"\r{text}\x1b[K" if self.tty else text + "\n")
        self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
