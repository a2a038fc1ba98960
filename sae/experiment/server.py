"""The one tritonserver of an experiment invocation, in explicit model-control mode.

A repository with dozens of exported sets would start dozens of python-backend stubs if every model loaded at once;
here each cell's sets are loaded before its evaluation, checked to be complete, and unloaded after it.

The server's pid is recorded in ``WORKDIR/tritonserver.json``. A runner killed with SIGKILL runs no atexit handler;
on Linux the kernel kills the server with it (``PR_SET_PDEATHSIG``), elsewhere the server outlives it in its own
session. So the next invocation stops a server that the record names if it is still running on the same repository,
and drops a record whose server is gone.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

from sae.core.errors import SAEError
from sae.experiment.markers import read_json, write_json
from sae.repository.configs import RepositoryOptions
from sae.serving.triton import ServerConfig, TritonServer

_log = logging.getLogger(__name__)

PID_RECORD = "tritonserver.json"


class ModelSetError(SAEError, RuntimeError):
    """A cell's model set did not load completely."""


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def stop_stale_server(work: Path, repository: Path, log=_log.info) -> int | None:
    """Stop the server a killed earlier invocation left on ``repository``; returns its pid, or None."""
    record = read_json(work / PID_RECORD)
    if not record or not isinstance(record.get("pid"), int):
        return None
    pid = record["pid"]
    cmd = _cmdline(pid)
    if not cmd or not cmd[0].endswith("tritonserver") or f"--model-repository={repository.resolve()}" not in cmd:
        (work / PID_RECORD).unlink(missing_ok=True)
        return None
    log(f"stopping tritonserver pid {pid} left running by an interrupted earlier run")
    for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)  # the server leads its own process group (its python stubs are in it)
        except (ProcessLookupError, PermissionError):
            break
        deadline = time.monotonic() + wait_s
        while _cmdline(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not _cmdline(pid):
            break
    (work / PID_RECORD).unlink(missing_ok=True)
    return pid


class ExperimentServer:
    def __init__(self, repository: Path, work: Path, log=_log.info):
        self.repository = Path(repository)
        self.work = Path(work)
        self.log = log
        self.server: TritonServer | None = None
        self._loaded: list[str] = []

    @property
    def url(self) -> str:
        return self.ensure_started().grpc_url

    def ensure_started(self) -> TritonServer:
        if self.server is None:
            self.repository.mkdir(parents=True, exist_ok=True)
            stop_stale_server(self.work, self.repository, self.log)
            config = ServerConfig(repository=self.repository, extra_args=("--model-control-mode=explicit",))
            server = TritonServer(config, log_path=self.work / "tritonserver.log")
            server.start()
            self.server = server
            write_json(self.work / PID_RECORD, {"pid": server.pid, "repository": str(self.repository.resolve())})
            self.log(f"tritonserver ready (pid {server.pid}, gRPC {server.grpc_url}, explicit model control)")
        return self.server

    def load_set(self, export_name: str) -> None:
        """Load every model of one exported set (leaves before ensembles) and check that all are ready."""
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        # Every role the contract names, in load order, that this set's export wrote (prior roles only with a prior).
        names = [
            name
            for name in RepositoryOptions(name=export_name).model_names().values()
            if (self.repository / name / "config.pbtxt").is_file()
        ]
        if not names:
            raise ModelSetError(f"set {export_name}: no model folders in {self.repository}")
        server = self.ensure_started()
        client = grpcclient.InferenceServerClient(server.grpc_url)
        try:
            for name in names:
                try:
                    client.load_model(name)
                except InferenceServerException as e:
                    raise ModelSetError(
                        f"model {name} of set {export_name} failed to load: {e.message()}\n{server.log_tail()}"
                    ) from None
                self._loaded.append(name)
            not_ready = [name for name in names if not client.is_model_ready(name)]
            if not_ready:
                raise ModelSetError(f"set {export_name} loaded incompletely: {', '.join(not_ready)} not ready")
        finally:
            client.close()

    def unload_all(self) -> None:
        if self.server is None or not self._loaded:
            return
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        client = grpcclient.InferenceServerClient(self.url)
        try:
            for name in reversed(self._loaded):  # ensembles before their steps
                try:
                    client.unload_model(name)
                except InferenceServerException as e:
                    self.log(f"warning: unloading {name}: {e.message()}")
        finally:
            client.close()
            self._loaded = []

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
            (self.work / PID_RECORD).unlink(missing_ok=True)
