"""TorchScript (traced) copies of the served graphs, for the stock container's ``pytorch_libtorch`` backend.

TorchScript is deprecated upstream in favour of ``torch.export``; tracing still works and libtorch still serves it.
Each file records the torch version that made it (an extra file inside the archive, ``torch_version``), and the
parity test checks it against the torch pinned in pyproject.toml. Load it with the same (or a compatible) libtorch.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from sae.export.graphs import GraphSpec

TORCH_VERSION_FILE = "torch_version"


def trace_graph(spec: GraphSpec) -> torch.jit.ScriptModule:
    """Trace on the spec's example (batch 2); the batch axis stays symbolic (``h.expand(z.shape[0], ...)`` is traced
    as a size read, not a constant), which the parity test checks at batch sizes 1, 7 and 256."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript deprecation notice
        return torch.jit.trace(spec.module, (spec.example,), check_trace=False)


def export_torchscript(spec: GraphSpec, path: Path) -> None:
    traced = trace_graph(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(traced, str(path), _extra_files={TORCH_VERSION_FILE: torch.__version__})


def load_torchscript(path: Path) -> tuple[torch.jit.ScriptModule, str]:
    """The module and the torch version it was made with."""
    extra = {TORCH_VERSION_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    version = extra[TORCH_VERSION_FILE]
    return module.eval(), version.decode() if isinstance(version, bytes) else version
