"""What calls a server: numpy, h5py, tritonclient and prometheus-client only (never torch).

``SAEClient`` / ``AsyncSAEClient`` are imported on first use, so that importing a sibling (``sae.clients.retry``)
does not pull in gRPC; the batch jobs built on them are in ``sae.clients.jobs``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sae.clients.aio import AsyncSAEClient
    from sae.clients.triton_client import SAEClient

__all__ = ["AsyncSAEClient", "SAEClient"]


def __getattr__(name: str) -> Any:
    if name == "SAEClient":
        from sae.clients.triton_client import SAEClient

        return SAEClient
    if name == "AsyncSAEClient":
        from sae.clients.aio import AsyncSAEClient

        return AsyncSAEClient
    raise AttributeError(f"module 'sae.clients' has no attribute {name!r}")
