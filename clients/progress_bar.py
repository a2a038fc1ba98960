"""tqdm progress bars for long client jobs, on stderr, only when wanted and possible.

tqdm is not a client dependency (it comes with the ``train`` extra), so it is imported lazily; without it, or when
stderr is not a terminal, or with ``enabled=False``, the bar is a silent stand-in with the same methods.
"""
from __future__ import annotations

import sys
from typing import TextIO


class _NoBar:
    def update(self, count: int = 1) -> None:
        pass

    def set_description(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def progress_bar(total: int, desc: str, unit: str = "it", enabled: bool = True, stream: TextIO | None = None):
    """A tqdm bar of ``total`` steps on ``stream`` (stderr), or a silent stand-in (see the module docstring)."""
    stream = stream or sys.stderr
    if not enabled or not getattr(stream, "isatty", lambda: False)():
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, unit=unit, file=stream, dynamic_ncols=True, leave=False)
