"""``sae serve``: a server run until SIGINT/SIGTERM, restarted on the same ports when a python-backend stub dies
(not when one ends with its model version's unload)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import threading
import time
import urllib.request
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


UNLOAD_GRACE_S = 10.0  # how long a gone stub's model version may still read READY (an unload under way)


def _stub_instance(pid: int) -> tuple[str, str, str] | None:
    """(model, version, instance) a python-backend stub serves, from its command line: argv[1] is
    MODEL/VERSION/model.py, argv[8] the instance name (MODEL_DEVICE_INDEX). None for another process of the
    server's group (one forked and not yet a stub, or gone)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    if len(args) < 9 or not args[0].endswith(b"triton_python_backend_stub"):
        return None
    model_file = Path(os.fsdecode(args[1]))
    return model_file.parent.parent.name, model_file.parent.name, os.fsdecode(args[8])


def _stubs(server: TritonServer, known: dict[int, tuple[str, str, str]]) -> dict[int, tuple[str, str, str]]:
    """The server's live python-backend stubs and the instance each serves (``known``: those read before)."""
    found = {pid: known.get(pid) or _stub_instance(pid) for pid in server.stub_pids()}
    return {pid: instance for pid, instance in found.items() if instance is not None}


def _ready_versions(server: TritonServer) -> set[tuple[str, str]] | None:
    """The (model, version) pairs the server has READY, from its repository index over HTTP; None where that
    cannot be read."""
    request = urllib.request.Request(f"http://{server.http_url}/v2/repository/index", data=b"{}", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5.0) as answer:
            index = json.loads(answer.read())
    except (OSError, ValueError):
        return None
    return {(m.get("name"), str(m.get("version"))) for m in index if m.get("state") == "READY"}


def _watch(server: TritonServer, poll_s: float = 0.5) -> tuple[int, int | None]:
    """Block until the server exits (its exit code, None) or one of its stubs dies (0, that stub's pid).

    A stub died when it is gone, no stub of the same instance replaced it, and its model version is still READY
    ``UNLOAD_GRACE_S`` later (Triton does not restart a dead stub). A stub that ends with its model version's
    unload or reload (a new version or a rollback picked up in poll mode, ``sae unload``) did not die."""
    stubs = _stubs(server, {})
    suspects: dict[int, tuple[tuple[str, str, str], float]] = {}
    while True:
        process = server._process
        code = process.poll() if process is not None else 0
        if code is not None:
            return code, None
        now = _stubs(server, stubs)
        for pid in set(stubs) - set(now):
            suspects.setdefault(pid, (stubs[pid], time.monotonic()))
        stubs = now
        if suspects:
            ready = _ready_versions(server)
            for pid, (instance, since) in list(suspects.items()):
                if ready is None:
                    return 0, pid  # nothing to tell an unload by: a death, as before
                if instance[:2] not in ready or instance in stubs.values():
                    del suspects[pid]  # unloaded, or reloaded as a new stub
                elif time.monotonic() - since > UNLOAD_GRACE_S:
                    return 0, pid
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
        same_ports = dataclasses.replace(
            config, grpc_port=server._port(0), http_port=server._port(1), metrics_port=server._port(2)
        )
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
                _log.error(
                    f"python-backend stub {dead} died; more than {restarts.limit} restarts within "
                    f"{restarts.window_s:g} s: giving up"
                )
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
