"""Start, check and stop a real Triton Inference Server.

The server is the ``tritonserver`` binary that ships inside the ``nvidia-pytriton`` wheel (Triton 2.51, with the
python backend). It runs on a CPU-only machine given a few environment tweaks (see
``/work/shared/notes/triton-on-cpu.md``)::

    config = ServerConfig(repository=Path("model_repository"))
    with TritonServer(config) as server:
        client = tritonclient.grpc.InferenceServerClient(server.grpc_url)
        ...

Every endpoint is bound to the loopback interface unless the config opts in to another address
(``allow_external=True``); ports default to free ones picked at start. The server dies with the process that
started it, even when that process is killed with SIGKILL (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import atexit
import ctypes
import dataclasses
import importlib.util
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from clients.errors import SAEError

__all__ = [
    "ServerConfig",
    "ServerStartError",
    "TritonInstall",
    "TritonServer",
    "find_tritonserver",
    "serve_forever",
]

LOG_TAIL_LINES = 40
_ADDRESS_IN_USE = re.compile(r"already in use", re.IGNORECASE)
_ERROR_LINE = re.compile(r"^E\d{4} ")  # Triton's glog format: E<MMDD> <time> <tid> <file:line>] "message"
_CPU_ONLY_NOISE = re.compile(r"CudaDriverHelper|NVML|DCGM|libcuda")
_STUB_NAME = "triton_python_backend_stub"


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


# --------------------------------------------------------------------------------------------------- installation


@dataclass(frozen=True)
class TritonInstall:
    binary: Path  # bin/tritonserver
    python_backend_dir: Path  # libtriton_python.so and triton_python_backend_utils.py
    stub: Path  # triton_python_backend_stub built for the running Python version
    libs_dir: Path  # the wheel's bundled shared libraries (nvidia_pytriton.libs)


def find_tritonserver() -> TritonInstall:
    """Locate the Triton binary, python backend and stub inside the installed nvidia-pytriton wheel."""
    spec = importlib.util.find_spec("pytriton")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "tritonserver not found: the package nvidia-pytriton is not installed in this environment "
            f"({sys.prefix}). Install the serving extra: pip install 'sae-serving[serve]'."
        )
    package = Path(next(iter(spec.submodule_search_locations)))
    root = package / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    libs_dir = package.parent / "nvidia_pytriton.libs"
    if not libs_dir.is_dir():  # editable/source installs keep them here
        libs_dir = root / "external_libs"
    install = TritonInstall(
        binary=root / "bin" / "tritonserver",
        python_backend_dir=root / "backends" / "python",
        stub=root / "python_backend_stubs" / version / _STUB_NAME,
        libs_dir=libs_dir,
    )
    required = [install.binary, install.python_backend_dir / "libtriton_python.so", install.stub]
    missing = [str(path) for path in required if not path.exists()]
    if missing:
        raise RuntimeError(
            f"incomplete nvidia-pytriton install under {package} (Python {version}); missing: {', '.join(missing)}"
        )
    return install


def _link_python_backend(install: TritonInstall, target: Path) -> None:
    """Make ``target`` a python backend directory: the backend library, its utils and the stub, side by side."""
    target.mkdir(parents=True)
    for source in sorted(install.python_backend_dir.iterdir()):
        if source.is_file():
            (target / source.name).symlink_to(source)
    (target / _STUB_NAME).symlink_to(install.stub)


def _server_env(install: TritonInstall) -> dict[str, str]:
    env = dict(os.environ)
    # The stub runs the models with the `python3` first on PATH (it reads that venv's pyvenv.cfg) ...
    env["PATH"] = os.pathsep.join(p for p in (str(Path(sys.prefix) / "bin"), env.get("PATH")) if p)
    # ... and needs this Python's shared libpython.
    libdirs = (sysconfig.get_config_var("LIBDIR"), str(install.libs_dir), env.get("LD_LIBRARY_PATH"))
    env["LD_LIBRARY_PATH"] = os.pathsep.join(d for d in libdirs if d)
    return env


# --------------------------------------------------------------------------------------------------- configuration


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerConfig:
    repository: Path
    host: str = "127.0.0.1"  # loopback unless allow_external
    allow_external: bool = False  # an explicit opt-in to bind a non-loopback host (reachable from other machines)
    grpc_port: int = 0  # 0 = pick a free port at start
    http_port: int = 0
    metrics_port: int = 0
    startup_timeout_s: float = 120.0
    log_verbose: int = 0
    exit_on_error: bool = True  # a model that fails to load stops the server (and start() raises)
    extra_args: tuple[str, ...] = ()
    gpu: bool | None = None  # None: use the GPUs found (visible_gpu_count); False: CPU-only flags; True: GPU flags

    def __post_init__(self) -> None:
        object.__setattr__(self, "repository", Path(self.repository))
        object.__setattr__(self, "extra_args", tuple(self.extra_args))
        if not _is_loopback(self.host):
            if not self.allow_external:
                raise ValueError(f"host {self.host!r} is not a loopback address; binding it makes the server "
                                 "reachable from other machines and needs allow_external=True (sae serve --host)")
            try:
                ipaddress.IPv4Address(self.host)
            except ValueError:
                raise ValueError(f"host {self.host!r} is not an IPv4 address") from None
        if ":" in self.host:
            raise ValueError(f"host {self.host!r}: only IPv4 addresses (127.x.x.x, localhost) are supported")
        for name in ("grpc_port", "http_port", "metrics_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ValueError(f"{name}={port} is not a port number")
        if self.startup_timeout_s <= 0:
            raise ValueError("startup_timeout_s must be positive")

    @property
    def bind_address(self) -> str:
        return "127.0.0.1" if self.host == "localhost" else self.host

    @property
    def is_loopback(self) -> bool:
        return _is_loopback(self.host)


PINNED_POOL_BYTES = 256 << 20  # host memory pinned for GPU transfers
CUDA_POOL_BYTES = 64 << 20  # per visible GPU, for tensors passed between models on the device


def visible_gpu_count() -> int:
    """GPUs this process may use, found without torch: ``nvidia-smi -L`` (one line per GPU), else ``/dev/nvidia*``;
    CUDA_VISIBLE_DEVICES narrows the count ("" or "-1": none)."""
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
        found = sum(line.startswith("GPU ") for line in listing.stdout.splitlines()) if listing.returncode == 0 else 0
    except (OSError, subprocess.TimeoutExpired):
        found = 0
    if not found:
        found = sum(1 for dev in Path("/dev").glob("nvidia[0-9]*"))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v for v in visible.split(",") if v.strip() and v.strip() != "-1"]
        found = min(found, len(ids))
    return found


def gpu_count(gpu: bool | None) -> int:
    """GPUs to configure memory pools for: ``gpu=False`` none, ``True`` at least one, ``None`` those found."""
    if gpu is False:
        return 0
    found = visible_gpu_count()
    return max(found, 1) if gpu else found


def memory_pool_flags(gpus: int) -> list[str]:
    """tritonserver memory flags: with no GPU, no pinned or CUDA pools and no GPU metrics (quiet on a CPU-only
    machine); with GPUs, a pinned host pool and one CUDA pool per GPU (Triton's ``--cuda-memory-pool-byte-size``
    takes ``DEVICE:BYTES`` once per device)."""
    if gpus < 0:
        raise ValueError(f"gpus must be >= 0, got {gpus}")
    if gpus == 0:
        return ["--allow-gpu-metrics=false", "--pinned-memory-pool-byte-size=0", "--cuda-memory-pool-byte-size=0:0"]
    return [f"--pinned-memory-pool-byte-size={PINNED_POOL_BYTES}",
            *(f"--cuda-memory-pool-byte-size={device}:{CUDA_POOL_BYTES}" for device in range(gpus))]


def _free_ports(host: str, count: int) -> list[int]:
    """Ports that were free a moment ago (all sockets are held open together, so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


# --------------------------------------------------------------------------------------------------- processes

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int):
    """A ``preexec_fn``: the child gets SIGKILL when the thread that started it ends (the whole process, for the
    main thread), so a ``sae serve`` killed with SIGKILL leaves no tritonserver behind (Linux ``prctl``)."""

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(126)

    return preexec


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, read from /proc."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != b"Z":
            members.append(int(entry))
    return members


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


_running: set[TritonServer] = set()
_running_lock = threading.Lock()


@atexit.register
def _stop_all_servers() -> None:
    """Leave no server behind when the interpreter exits (a crashed test run, a forgotten stop())."""
    with _running_lock:
        servers = list(_running)
    for server in servers:
        server.stop(timeout_s=10.0)


# --------------------------------------------------------------------------------------------------- the server


class TritonServer:
    """One ``tritonserver`` process (plus its python-backend stubs) in its own process session."""

    def __init__(self, config: ServerConfig, log_path: Path | None = None):
        self.config = config
        self._requested_log_path = Path(log_path) if log_path is not None else None
        self.log_path: Path | None = self._requested_log_path
        self._process: subprocess.Popen | None = None
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
                picks_ports = 0 in (self.config.grpc_port, self.config.http_port, self.config.metrics_port)
                self._launch(install, repository)
                try:
                    self._wait_until_ready()
                except ServerStartError as err:
                    self._terminate(timeout_s=10.0)
                    # Another process may have taken a picked port between picking and binding: retry once.
                    if not (picks_ports and _ADDRESS_IN_USE.search(err.errors + err.log_tail)):
                        raise
                    self._launch(install, repository)
                    self._wait_until_ready()
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

    def _port(self, index: int) -> int:
        if self._ports is None:
            raise RuntimeError("server not started: ports are known after start()")
        return self._ports[index]

    def _command(self, install: TritonInstall, repository: Path) -> list[str]:
        cfg = self.config
        grpc_port, http_port, metrics_port = self._ports
        host = cfg.bind_address
        command = [
            str(install.binary),
            f"--model-repository={repository}",
            f"--backend-directory={self._workdir / 'backends'}",
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
        return f"{self._workdir.name}_"

    def _launch(self, install: TritonInstall, repository: Path) -> None:
        cfg = self.config
        free = iter(_free_ports(cfg.bind_address, 3))
        self._ports = tuple(port or next(free) for port in (cfg.grpc_port, cfg.http_port, cfg.metrics_port))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                self._command(install, repository),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_server_env(install),
                cwd=self._workdir,
                start_new_session=True,  # own process group: stop() reaches the python stubs too
                preexec_fn=_die_with_parent(os.getpid()) if sys.platform == "linux" else None,
            )
        with _running_lock:
            _running.add(self)

    def _wait_until_ready(self) -> None:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        timeout = self.config.startup_timeout_s
        deadline = time.monotonic() + timeout
        while True:
            code = self._process.poll()
            if code is not None:
                raise self._start_error(f"tritonserver exited with code {code} before it was ready")
            try:
                # A fresh client per try: a channel that failed to connect would back off for seconds.
                client = grpcclient.InferenceServerClient(self.grpc_url)
                try:
                    if client.is_server_ready(client_timeout=1.0):
                        return
                finally:
                    client.close()
            except InferenceServerException:
                pass
            if time.monotonic() > deadline:
                raise self._start_error(f"tritonserver was not ready after {timeout:g} s")
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
        return ServerStartError(
            f"{reason} (repository {self.config.repository})", "\n".join(errors[-20:]), self.log_tail(), where
        )

    def _terminate(self, timeout_s: float) -> None:
        """Stop the server and every process of its group (the python stubs), then reap it."""
        process = self._process
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


# --------------------------------------------------------------------------------------------------- sae serve


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
        print(
            f"Triton is ready (pid {server.pid}, repository {config.repository})\n"
            f"  gRPC     {server.grpc_url}\n"
            f"  HTTP     http://{server.http_url}\n"
            f"  metrics  {server.metrics_url}\n"
            f"  log      {server.log_path}\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        while True:
            code, dead = _watch(server)
            if dead is None:
                print(f"tritonserver exited with code {code}", file=sys.stderr, flush=True)
                break
            if not restarts.allow():
                print(f"python-backend stub {dead} died; more than {restarts.limit} restarts within "
                      f"{restarts.window_s:g} s: giving up", file=sys.stderr, flush=True)
                code = 1
                break
            # Triton does not restart a dead stub: every request routed to that instance fails ("Stub process
            # ... is not healthy") while the model still reports ready. A restart brings every instance back.
            print(f"python-backend stub {dead} died; restarting tritonserver on the same ports", file=sys.stderr,
                  flush=True)
            started = time.monotonic()
            server.stop(timeout_s=5.0)
            server = TritonServer(same_ports, log_path)
            server.start()
            code = None
            print(f"Triton is ready again (pid {server.pid}) after {time.monotonic() - started:.1f} s",
                  file=sys.stderr, flush=True)
    except _StopRequested:
        stopped_on_request = True
    except ServerStartError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
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
        print("tritonserver stopped", flush=True)
    return 128 - code if code < 0 else code
