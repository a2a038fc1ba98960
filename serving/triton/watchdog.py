"""``sae serve``: a server run until SIGINT/SIGTERM, restarted on the same ports when a python-backend stub dies."""
from __future__ import annotations

import logging
import dataclasses
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sae.serving.triton.config import ServerConfig
from sae.serving.triton.server import ServerStartError, TritonServer

_log = logging.getLogger(__name__)


class _StopRequested(Exception):
    pass


@dataclass
class _RestartBudget:
    """At most ``limit`` restarts within ``window_s``: a stub that keeps dying is not hidden by endless restarts."""

    limit: int = 5
    window_s: float = 600.0
    times: list[float] = dataclasses.field(default_factory=list)

    def allow(self) -> bool:
        now = time.monotonic()
        self.times = [t for t in self.times if now - t < self.window_s] + [now]
        return len(self.times) <= self.limit


def _watch(server: TritonServer, poll_s: float = 0.5) -> tuple[int, int | None]:
    """Block until the server exits (its exit code, None) or one of its stubs dies (0, that stub's pid)."""
    stubs = server.stub_pids()
    while True:
        process = server._process
        code = process.poll() if process is not None else 0
        if code is not None:
            return code, None
        gone = stubs - server.stub_pids()
        if gone:
            return 0, min(gone)
        time.sleep(poll_s)


def serve_forever(config: ServerConfig, log_path: Path | None = None) -> int:
    """Run a server until SIGINT/SIGTERM or until it exits on its own; returns a process exit code.

    A python-backend stub that dies (killed, out of memory) makes it restart the server on the same ports (at most
    five times in ten minutes); clients see UNAVAILABLE for the few seconds of the restart and retry."""
    server = TritonServer(config, log_path)

    def request_stop(signum, frame):
        raise _StopRequested(signum)

    handled = (signal.SIGINT, signal.SIGTERM)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, request_stop) for sig in handled} if in_main_thread else {}
    stopped_on_request = False
    code: int | None = None
    restarts = _RestartBudget()
    try:
        server.start()
        same_ports = dataclasses.replace(config, grpc_port=server._port(0), http_port=server._port(1),
                                         metrics_port=server._port(2))
        _log.info(
            f"Triton is ready (pid {server.pid}, repository {config.repository})\n"
            f"  gRPC     {server.grpc_url}\n"
            f"  HTTP     http://{server.http_url}\n"
            f"  metrics  {server.metrics_url}\n"
            f"  log      {server.log_path}\n"
            "Press Ctrl-C to stop."
        )
        while True:
            code, dead = _watch(server)
            if dead is None:
                _log.error(f"tritonserver exited with code {code}")
                break
            if not restarts.allow():
                _log.error(f"python-backend stub {dead} died; more than {restarts.limit} restarts within "
                           f"{restarts.window_s:g} s: giving up")
                code = 1
                break
            # Triton does not restart a dead stub: every request routed to that instance fails ("Stub process
            # ... is not healthy") while the model still reports ready. A restart brings every instance back.
            _log.warning(f"python-backend stub {dead} died; restarting tritonserver on the same ports")
            started = time.monotonic()
            server.stop(timeout_s=5.0)
            server = TritonServer(same_ports, log_path)
            server.start()
            code = None
            _log.info(f"Triton is ready again (pid {server.pid}) after {time.monotonic() - started:.1f} s")
    except _StopRequested:
        stopped_on_request = True
    except ServerStartError as err:
        _log.error(f"error: {err}")
        return 1
    finally:
        if in_main_thread:  # a second Ctrl-C must not interrupt the shutdown
            for sig in handled:
                signal.signal(sig, signal.SIG_IGN)
        try:
            stopped = server.stop()
            code = stopped if code is None else code
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if stopped_on_request:
        _log.info("tritonserver stopped")
    return 128 - code if code < 0 else code
