"""The package's one import namespace and its Python API.

``sae.core`` (the torch-free base: wire contract, bank file, draws, errors, dataset readers), ``sae.clients`` (what
calls a server, and the batch jobs on it), ``sae.evaluation``, ``sae.training``, ``sae.repository``, ``sae.export``
and ``sae.serving`` are the design's root folders, reached through committed symlinks (``sae/core -> ../core``), so
that a source tree, an editable install and a wheel all import the same files and every static tool follows them.
``sae.cli`` is the `sae` command (``python -m sae``, ``torchrun -m sae train``); ``sae.experiment`` the reproduction
runner.

    from sae import train, export, load_model, SAEClient

The four names are imported on first use (:mod:`sae.api`), so that ``import sae`` pulls in neither torch nor gRPC.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sae.api import export, load_model, train
    from sae.clients.triton_client import SAEClient

__all__ = ["SAEClient", "__version__", "export", "load_model", "train"]
_API = ("SAEClient", "export", "load_model", "train")


def __getattr__(name: str) -> Any:
    if name in _API:
        from sae import api

        return getattr(api, name)
    if name == "__version__":  # written once, in core/version.py
        from sae.core.version import __version__

        return __version__
    raise AttributeError(f"module 'sae' has no attribute {name!r}")
