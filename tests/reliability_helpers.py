"""Helpers of the reliability tests: raw gRPC requests, the server's processes and their resident memory."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from serving.triton import TritonServer, _group_members


def raw_infer(client: grpcclient.InferenceServerClient, model: str, inputs: dict[str, np.ndarray],
              timeout_s: float = 30.0):
    """One request through plain tritonclient (nothing checked client-side); returns the result or raises."""
    tensors = []
    for name, array in inputs.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(np.ascontiguousarray(array))
        tensors.append(tensor)
    return client.infer(model, tensors, client_timeout=timeout_s)


def refusal(client, model: str, inputs: dict[str, np.ndarray]) -> InferenceServerException:
    """The server's error for a request that must fail (AssertionError when it is answered)."""
    try:
        raw_infer(client, model, inputs)
    except InferenceServerException as e:
        return e
    raise AssertionError(f"{model} answered a bad request: {({k: (v.dtype, v.shape) for k, v in inputs.items()})}")


def server_processes(server: TritonServer) -> list[int]:
    """tritonserver and its python-backend stubs (its process group)."""
    return sorted(_group_members(server.pid))


def stub_pids(server: TritonServer) -> list[int]:
    return [pid for pid in server_processes(server) if pid != server.pid]


def resident_bytes(pids: list[int]) -> int:
    """Sum of VmRSS over ``pids`` (from /proc; a process that is gone counts 0)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total
