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

The pieces live in this package: the install and its environment (``install``), the configuration and memory-pool
flags (``config``), process-group and port helpers (``process_group``), the server (``server``) and ``sae serve``'s
watchdog (``watchdog``). Every public name is importable from here.
"""

from sae.serving.triton.config import (  # noqa: F401 (public here too)
    CUDA_POOL_BYTES,
    PINNED_POOL_BYTES,
    ServerConfig,
    gpu_count,
    memory_pool_flags,
    visible_gpu_count,
)
from sae.serving.triton.install import TritonInstall, find_tritonserver
from sae.serving.triton.server import LOG_TAIL_LINES, PortInUse, ServerStartError, TritonServer  # noqa: F401
from sae.serving.triton.watchdog import serve_forever

__all__ = [
    "PortInUse",
    "ServerConfig",
    "ServerStartError",
    "TritonInstall",
    "TritonServer",
    "find_tritonserver",
    "serve_forever",
]
