"""What a benchmark ran on: the device asked for, and on CUDA the GPU model and driver, with the torch and ONNX
Runtime versions installed. Torch-free: the versions come from package metadata, the GPU from ``nvidia-smi``."""

from __future__ import annotations

import subprocess
from importlib.metadata import PackageNotFoundError, version

from sae.core.errors import UsageError

DEVICES = ("cpu", "cuda")
ORT_PACKAGES = ("onnxruntime-gpu", "onnxruntime")  # whichever is installed; the GPU build first


def check_device(device: str) -> str:
    if device not in DEVICES:
        raise UsageError(f"--device {device!r}: choose one of {', '.join(DEVICES)}")
    return device


def package_version(*names: str) -> str | None:
    """The installed version of the first of ``names`` that is installed, else None."""
    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def query_gpus() -> list[dict]:
    """One entry per GPU ``nvidia-smi`` lists (name, driver, memory); [] where there is none or no nvidia-smi."""
    try:
        listing = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if listing.returncode != 0:
        return []
    gpus = []
    for line in listing.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            memory = int(parts[2]) if parts[2].isdigit() else None
            gpus.append({"name": parts[0], "driver": parts[1], "memory_mib": memory})
    return gpus


def device_info(device: str) -> dict:
    """The record every benchmark JSON carries. On ``cpu`` the GPU fields are null; on ``cuda`` they describe the
    first GPU (``gpu_count`` says how many were seen), null only if nvidia-smi lists none."""
    check_device(device)
    gpus = query_gpus() if device == "cuda" else []
    first = gpus[0] if gpus else {}
    return {
        "device": device,
        "gpu": first.get("name"),
        "gpu_driver": first.get("driver"),
        "gpu_memory_mib": first.get("memory_mib"),
        "gpu_count": len(gpus) if device == "cuda" else None,
        "torch": package_version("torch") if device == "cuda" else None,
        "onnxruntime": package_version(*ORT_PACKAGES) if device == "cuda" else None,
    }
