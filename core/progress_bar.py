"""The package's one progress display, tqdm, on stderr.

- On a terminal: a tqdm bar, redrawn in place.
- Off a terminal (a log file, a CI job) with ``log_every_s``: tqdm's own meter text as a plain line every
  ``log_every_s`` seconds and once at the end, so logs stay short and free of carriage returns.
- Otherwise, or with ``enabled=False``: a silent stand-in with the same methods.

``initial`` counts work done before this run (a resumed job): the bar starts there and the rate counts only what
this run does. tqdm has no dependencies of its own and is a core dependency of the package.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, NoReturn, Protocol, TextIO

from tqdm import tqdm

if TYPE_CHECKING:
    from typing import Self  # Python 3.11; annotations only

JOB_LOG_EVERY_S = 5.0  # a long job's progress line in a log, off a terminal


class ProgressDisplay(Protocol):
    """What ``progress_bar`` returns, whichever display it picked: a tqdm bar, a line meter or the silent one."""

    @property
    def n(self) -> float: ...

    def update(self, count: int = 1, /) -> object: ...

    def update_to(self, done: int, /) -> None: ...

    def set_description(self, text: str, /) -> None: ...

    def write(self, text: str, /) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None, /
    ) -> None: ...


class _NoBar:
    n = 0

    def update(self, count: int = 1) -> None:
        self.n += count

    def update_to(self, done: int) -> None:
        self.n = done

    def set_description(self, text: str) -> None:
        pass

    def write(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _LineMeter(_NoBar):
    """tqdm's meter as a plain line every ``every_s`` seconds (and at close), for streams that are not terminals."""

    def __init__(self, total: int, desc: str, unit: str, stream: TextIO, every_s: float, initial: int):
        self.total, self.desc, self.unit, self.stream, self.every_s = total, desc, unit, stream, every_s
        self.n = self.initial = initial
        self.started = self._last = time.monotonic()
        self._closed = False

    def line(self, now: float | None = None) -> str:
        elapsed = (now if now is not None else time.monotonic()) - self.started
        return tqdm.format_meter(
            self.n, self.total, elapsed, prefix=self.desc, unit=f" {self.unit}", initial=self.initial, ncols=0
        )

    def update(self, count: int = 1) -> None:
        self.update_to(self.n + count)

    def update_to(self, done: int) -> None:
        self.n = done
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self.write(self.line(now))

    def write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.write(self.line())


if TYPE_CHECKING:
    _Tqdm = tqdm[NoReturn]  # a bar without an iterable (tqdm is generic only in its stubs)
else:
    _Tqdm = tqdm


class _Bar(_Tqdm):
    def update_to(self, done: int) -> None:
        """Move to an absolute count (jobs that commit in chunks know how much is done, not how much is new)."""
        self.update(done - self.n)

    def write(self, text: str) -> None:  # type: ignore[override]  # an instance method, like the stand-ins'
        tqdm.write(text, file=self.fp)


def progress_bar(
    total: int,
    desc: str,
    unit: str = "it",
    enabled: bool = True,
    stream: TextIO | None = None,
    initial: int = 0,
    log_every_s: float | None = None,
) -> ProgressDisplay:
    """A progress display of ``total`` steps on ``stream`` (stderr); see the module docstring for which one."""
    stream = stream or sys.stderr
    if not enabled:
        return _NoBar()
    if getattr(stream, "isatty", lambda: False)():
        return _Bar(total=total, desc=desc, unit=unit, file=stream, dynamic_ncols=True, leave=False, initial=initial)
    if log_every_s is not None:
        return _LineMeter(total, desc, unit, stream, log_every_s, initial)
    return _NoBar()


def encode_progress(total: int, enabled: bool, stream: TextIO | None, done: int) -> ProgressDisplay:
    """The display of an encode job (local or on Ray) over ``total`` images, ``done`` of them encoded before it
    started: a bar on a terminal, a line every ``JOB_LOG_EVERY_S`` in a log."""
    return progress_bar(
        total, "encode", unit="images", enabled=enabled, stream=stream, initial=done, log_every_s=JOB_LOG_EVERY_S
    )
