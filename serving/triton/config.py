"""What a server is started with: :class:`ServerConfig` (addresses, ports, timeouts) and the memory-pool flags for
the GPUs found."""

from __future__ import annotations

import ipaddress
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sae.core.errors import SAEError
from sae.core.wire import is_loopback


class ServerConfigError(SAEError, ValueError):
    """A :class:`ServerConfig` the server cannot be started with: an address it must not or cannot bind, a port
    out of range, a timeout or GPU count that is not positive."""


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
        if not is_loopback(self.host):
            if not self.allow_external:
                raise ServerConfigError(
                    f"host {self.host!r} is not a loopback address; binding it makes the "
                    "server reachable from other machines and needs allow_external=True "
                    "(sae serve --host)"
                )
            try:
                ipaddress.IPv4Address(self.host)
            except ValueError:
                raise ServerConfigError(f"host {self.host!r} is not an IPv4 address") from None
        if ":" in self.host:
            raise ServerConfigError(f"host {self.host!r}: only IPv4 addresses (127.x.x.x, localhost) are supported")
        for name in ("grpc_port", "http_port", "metrics_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ServerConfigError(f"{name}={port} is not a port number")
        if self.startup_timeout_s <= 0:
            raise ServerConfigError("startup_timeout_s must be positive")

    @property
    def bind_address(self) -> str:
        return "127.0.0.1" if self.host == "localhost" else self.host

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.host)


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
        raise ServerConfigError(f"gpus must be >= 0, got {gpus}")
    if gpus == 0:
        return ["--allow-gpu-metrics=false", "--pinned-memory-pool-byte-size=0", "--cuda-memory-pool-byte-size=0:0"]
    return [
        f"--pinned-memory-pool-byte-size={PINNED_POOL_BYTES}",
        *(f"--cuda-memory-pool-byte-size={device}:{CUDA_POOL_BYTES}" for device in range(gpus)),
    ]
