"""One ``tritonserver`` process and its python-backend stubs: start, wait until ready, stop (:class:`TritonServer`)."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

from sae.core.errors import SAEError
from sae.serving.triton.config import ServerConfig, gpu_count, memory_pool_flags
from sae.serving.triton.install import TritonInstall, _link_python_backend, _server_env, find_tritonserver
from sae.serving.triton.process_group import (
    _dying_with_parent,
    _free_ports,
    _group_members,
    _listening_ports,
    _signal_group,
)

LOG_TAIL_LINES = 40
START_TRIES = 3  # launches, each with fresh ports, when another process takes a picked port before the server binds it
_PORT_IN_USE = re.compile(r"Socket '[^']*:(\d+)' already in use")  # main.cc: failed to start <service> service
SERVICES = ("gRPC", "HTTP", "metrics")  # in the order of TritonServer's ports
_ERROR_LINE = re.compile(r"^E\d{4} ")  # Triton's glog format: E<MMDD> <time> <tid> <file:line>] "message"
_CPU_ONLY_NOISE = re.compile(r"CudaDriverHelper|NVML|DCGM|libcuda")


class ServerStartError(SAEError, RuntimeError):
    """The server exited or did not become ready in time.

    The message carries the error lines of the server log (a model that failed to load names itself there) and
    the log's last lines.
    """

    def __init__(self, reason: str, errors: str = "", log_tail: str = "", log_where: str = ""):
        self.reason = reason
        self.errors = errors
        self.log_tail = log_tail
        message = reason
        if errors:
            message += f"\nerrors in the server log:\n{errors}"
        if log_tail:
            message += f"\n--- last lines of the server log ({log_where}) ---\n{log_tail}"
        super().__init__(message)


class PortInUse(ServerStartError):
    """Another process holds a port the server was to listen on (``ports``: the ones Triton found taken)."""

    def __init__(self, reason: str, ports: tuple[int, ...], errors: str = "", log_tail: str = "", log_where: str = ""):
        self.ports = ports
        super().__init__(reason, errors, log_tail, log_where)


_running: set[TritonServer] = set()
_running_lock = threading.Lock()


@atexit.register
def _stop_all_servers() -> None:
    """Leave no server behind when the interpreter exits (a crashed test run, a forgotten stop())."""
    with _running_lock:
        servers = list(_running)
    for server in servers:
        server.stop(timeout_s=10.0)


class TritonServer:
    """One ``tritonserver`` process (plus its python-backend stubs) in its own process session."""

    def __init__(self, config: ServerConfig, log_path: Path | None = None):
        self.config = config
        self._requested_log_path = Path(log_path) if log_path is not None else None
        self.log_path: Path | None = self._requested_log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._ports: tuple[int, int, int] | None = None  # grpc, http, metrics
        self._returncode: int | None = None
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> TritonServer:
        """Launch the server and wait until /v2/health/ready; raise ServerStartError on early exit or timeout."""
        with self._lock:
            if self._process is not None:
                raise RuntimeError("server already started")
            repository = self.config.repository.resolve()
            if not repository.is_dir():
                raise ServerStartError(f"model repository {repository} is not a directory")
            install = find_tritonserver()
            self._workdir = Path(tempfile.mkdtemp(prefix="sae-triton-"))
            self._returncode = None
            self.log_path = self._requested_log_path or self._workdir / "tritonserver.log"
            try:
                _link_python_backend(install, self._workdir / "backends" / "python")
                for launch in range(1, START_TRIES + 1):
                    self._launch(install, repository)
                    try:
                        self._wait_until_ready()
                        break
                    except PortInUse as err:
                        # A port picked free can be taken by another process before the server binds it: pick
                        # fresh ones and launch again; a port the config names is the caller's to change.
                        self._terminate(timeout_s=10.0)
                        if launch == START_TRIES or not all(self._picked(port) for port in err.ports):
                            raise
            except BaseException:
                self.stop()
                raise
            return self

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM the server's process group, SIGKILL it after ``timeout_s``; idempotent. Returns the exit code
        (negative: killed by that signal; 0 if the server was never started)."""
        with self._lock:
            if self._process is not None:
                self._terminate(timeout_s)
            with _running_lock:
                _running.discard(self)
            if self._workdir is not None:
                self._remove_shm_leftovers()
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None
            return 0 if self._returncode is None else self._returncode

    def wait(self) -> int:
        """Block until the server process exits; returns its exit code (the stubs may still be exiting: call stop())."""
        process = self._process
        if process is None:
            return 0 if self._returncode is None else self._returncode
        return process.wait()

    def __enter__(self) -> TritonServer:
        if self._process is None:
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ---------------------------------------------------------------- endpoints

    @property
    def grpc_url(self) -> str:
        """``host:port`` as tritonclient.grpc expects it."""
        return f"{self.config.bind_address}:{self._port(0)}"

    @property
    def http_url(self) -> str:
        """``host:port`` as tritonclient.http expects it (no scheme)."""
        return f"{self.config.bind_address}:{self._port(1)}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.config.bind_address}:{self._port(2)}/metrics"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stub_pids(self) -> set[int]:
        """The live python-backend stubs (the server's process group, less the server)."""
        pid = self.pid
        return set() if pid is None else set(_group_members(pid)) - {pid}

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return "".join(deque(f, maxlen=lines)).rstrip("\n")

    def __repr__(self) -> str:
        state = f"pid={self.pid}, grpc={self.grpc_url}" if self.is_running else "stopped"
        return f"TritonServer({self.config.repository}, {state})"

    # ---------------------------------------------------------------- internals

    def _picked(self, port: int) -> bool:
        """Whether ``port`` is one this start picked (its config field is 0), not one the config names."""
        configured = (self.config.grpc_port, self.config.http_port, self.config.metrics_port)
        return any(want == 0 and have == port for want, have in zip(configured, self._started_ports))

    def _served_ports(self) -> list[int]:
        """The ports the server listens on once started: all three, less a service the extra args turn off."""
        flags = ("grpc", "http", "metrics")
        return [
            port
            for port, flag in zip(self._started_ports, flags)
            if f"--allow-{flag}=false" not in self.config.extra_args
        ]

    def _port(self, index: int) -> int:
        return self._started_ports[index]

    @property
    def _started_ports(self) -> tuple[int, int, int]:
        if self._ports is None:
            raise RuntimeError("server not started: ports are known after start()")
        return self._ports

    @property
    def _started_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("server not started: no tritonserver process")
        return self._process

    @property
    def _started_workdir(self) -> Path:
        if self._workdir is None:
            raise RuntimeError("server not started: no working folder")
        return self._workdir

    @property
    def _started_log_path(self) -> Path:
        if self.log_path is None:
            raise RuntimeError("server not started: no log file")
        return self.log_path

    def _command(self, install: TritonInstall, repository: Path) -> list[str]:
        cfg = self.config
        grpc_port, http_port, metrics_port = self._started_ports
        host = cfg.bind_address
        command = [
            str(install.binary),
            f"--model-repository={repository}",
            f"--backend-directory={self._started_workdir / 'backends'}",
            "--model-control-mode=none",
            "--disable-auto-complete-config",  # configs are explicit
            f"--exit-on-error={str(cfg.exit_on_error).lower()}",
            f"--grpc-address={host}",
            f"--grpc-port={grpc_port}",
            f"--http-address={host}",
            f"--http-port={http_port}",
            f"--metrics-address={host}",
            f"--metrics-port={metrics_port}",
            *memory_pool_flags(gpu_count(cfg.gpu)),
            # our own shared-memory names, so that leftovers of a killed server can be removed
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            f"--log-verbose={cfg.log_verbose}",
        ]
        if not cfg.exit_on_error:
            command.append("--strict-readiness=false")  # ready even though some model failed to load
        return command + list(cfg.extra_args)

    @property
    def _shm_prefix(self) -> str:
        return f"{self._started_workdir.name}_"

    def _launch(self, install: TritonInstall, repository: Path) -> None:
        cfg = self.config
        free = iter(_free_ports(cfg.bind_address, 3))
        grpc_port, http_port, metrics_port = (
            port or next(free) for port in (cfg.grpc_port, cfg.http_port, cfg.metrics_port)
        )
        self._ports = (grpc_port, http_port, metrics_port)
        log_path = self._started_log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = self._command(install, repository)
        if sys.platform == "linux":
            command = _dying_with_parent(command, os.getpid())
        with open(log_path, "wb") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_server_env(install),
                cwd=self._workdir,
                start_new_session=True,  # own process group: stop() reaches the python stubs too
            )
        with _running_lock:
            _running.add(self)

    def _wait_until_ready(self) -> None:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        timeout = self.config.startup_timeout_s
        deadline = time.monotonic() + timeout
        while True:
            code = self._started_process.poll()
            if code is not None:
                raise self._start_error(f"tritonserver exited with code {code} before it was ready")
            try:
                # A fresh client per try: a channel that failed to connect would back off for seconds.
                client = grpcclient.InferenceServerClient(self.grpc_url)
                try:
                    if client.is_server_ready(client_timeout=1.0):
                        return self._wait_for_ports(deadline)
                finally:
                    client.close()
            except InferenceServerException:
                pass
            if time.monotonic() > deadline:
                raise self._start_error(f"tritonserver was not ready after {timeout:g} s")
            time.sleep(0.1)

    def _wait_for_ports(self, deadline: float) -> None:
        """Ready over gRPC is not enough: Triton logs an HTTP or metrics port it could not bind and serves on without
        it. Wait until the server process listens on each of its ports (Linux /proc; elsewhere not checked)."""
        timeout = self.config.startup_timeout_s
        while True:
            listening = _listening_ports(self._started_process.pid)
            missing = [port for port in self._served_ports() if listening is not None and port not in listening]
            if not missing:
                return
            error = self._start_error(f"tritonserver was not listening on port {missing[0]} after {timeout:g} s")
            if isinstance(error, PortInUse) or self._started_process.poll() is not None or time.monotonic() > deadline:
                raise error
            time.sleep(0.1)

    def _start_error(self, reason: str) -> ServerStartError:
        errors = []
        if self.log_path is not None and self.log_path.exists():
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                lines = [line.rstrip()[:500] for line in f]
            errors = [line for line in lines if _ERROR_LINE.match(line) and not _CPU_ONLY_NOISE.search(line)]
        if self._requested_log_path is None:
            where = "a temporary file, removed on stop; pass log_path to keep it"
        else:
            where = str(self.log_path)
        taken = sorted({int(port) for line in errors for port in _PORT_IN_USE.findall(line)} & set(self._started_ports))
        if taken:
            named = ", ".join(f"{port} ({SERVICES[self._started_ports.index(port)]})" for port in taken)
            reason = f"port {named} on {self.config.bind_address} is already in use by another process" + (
                f" (ports picked afresh for each of {START_TRIES} launches)"
                if all(map(self._picked, taken))
                else "; choose another port"
            )
            return PortInUse(
                f"{reason} (repository {self.config.repository})",
                tuple(taken),
                "\n".join(errors[-20:]),
                self.log_tail(),
                where,
            )
        return ServerStartError(
            f"{reason} (repository {self.config.repository})", "\n".join(errors[-20:]), self.log_tail(), where
        )

    def _terminate(self, timeout_s: float) -> None:
        """Stop the server and every process of its group (the python stubs), then reap it."""
        process = self._started_process
        pgid = process.pid  # session leader: its pid is the process group id
        _signal_group(pgid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            process.wait()
        # Stubs notice the server is gone and exit on their own; do not wait for long.
        deadline = time.monotonic() + 5.0
        while _group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        _signal_group(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while _group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._returncode = process.returncode
        self._process = None

    def _remove_shm_leftovers(self) -> None:
        shm = Path("/dev/shm")
        if shm.is_dir():
            for leftover in shm.glob(f"{self._shm_prefix}*"):
                leftover.unlink(missing_ok=True)
