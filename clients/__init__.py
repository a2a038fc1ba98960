"""Client side of sae-serving: numpy, h5py, tritonclient and prometheus-client only (never torch).

``SAEClient`` / ``AsyncSAEClient`` are imported on first use, so that ``clients.datasets`` (which the trainer uses)
does not pull in gRPC.
"""
from __future__ import annotations

__all__ = ["AsyncSAEClient", "SAEClient"]


def __getattr__(name: str):
    if name == "SAEClient":
        from sae.clients.triton_client import SAEClient

        return SAEClient
    if name == "AsyncSAEClient":
        from sae.clients.aio import AsyncSAEClient

        return AsyncSAEClient
    raise AttributeError(f"module 'clients' has no attribute {name!r}")
