"""The model sets the explorer offers: those the server serves (``describe_sets``, as ``sae models`` lists them),
optionally narrowed to ``--models``, each with what the page needs: version, draw modes, prior, sizes and the
variable each latent dimension belongs to."""

from __future__ import annotations

import threading

import numpy as np

from sae.clients.triton_client import SAEClient
from sae.core import wire
from sae.core.errors import ModelNotServedError
from sae.serving.served_sets import ServedSet, describe_sets

REQUEST_TIMEOUT_S = 10.0  # each model call's deadline, retries included: a page waits no longer for an answer
_PROBE = 1e6  # a BASE value no stored latent has: the dimensions a one-variable redraw replaces are that variable's


class ModelSets:
    """The sets at ``url`` (narrowed to ``allowed`` when given) and one :class:`SAEClient` per set, thread-safe."""

    def __init__(self, url: str, allowed: tuple[str, ...] | None = None):
        self.url = url
        self.allowed = allowed
        self._clients: dict[str, SAEClient] = {}
        self._partitions: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def client(self, name: str) -> SAEClient:
        """The client of set ``name``; refuses a name the page may not use."""
        if not isinstance(name, str) or (self.allowed is not None and name not in self.allowed):
            offered = ", ".join(repr(n) for n in self.allowed or ())
            raise ModelNotServedError(
                f"model set {name!r} is not offered here (offered: {offered})",
                wire.served_name(str(name), wire.HYBRID_SAMPLE),
            )
        with self._lock:
            if name not in self._clients:
                self._clients[name] = SAEClient(self.url, model=name, timeout_s=REQUEST_TIMEOUT_S)
            return self._clients[name]

    def forget(self, name: str) -> None:
        """Drop the cached configs of ``name`` (after an error: the set may come back reloaded, or changed)."""
        with self._lock:
            client = self._clients.pop(name, None)
            self._partitions.pop(name, None)
        if client is not None:
            client.close()

    def close(self) -> None:
        for name in list(self._clients):
            self.forget(name)

    def describe(self) -> list[dict]:
        """Every offered set as the page shows it (a set not ready is listed with ``ready: false``)."""
        described = []
        for served in describe_sets(self.url):
            if self.allowed is not None and served.name not in self.allowed:
                continue
            entry = _summary(served)
            if served.ready:
                entry.update(self._shapes(served.name))
            described.append(entry)
        return described

    def _shapes(self, name: str) -> dict:
        client = self.client(name)
        hybrid = client.model_info(wire.HYBRID_SAMPLE)
        latent_dim = int(hybrid.input(wire.BASE).dims[-1]) if wire.BASE in hybrid.inputs else 0
        variables = int(hybrid.input(wire.MASK).dims[-1]) if wire.MASK in hybrid.inputs else 0
        image_size = int(client.model_info(wire.ENCODE).input(wire.IMAGE).dims[0])
        return {
            "latent_dim": latent_dim,
            "num_variables": variables,
            "image_size": image_size,
            "variable_of_dim": self.variable_of_dim(name, latent_dim, variables),
            "locks": bool(latent_dim and variables),
        }

    def variable_of_dim(self, name: str, latent_dim: int, variables: int) -> list[int]:
        """Which variable each latent dimension belongs to. One dimension per variable needs no request; otherwise
        one redraw per variable of a BASE no stored latent matches shows the dimensions it replaces."""
        if name in self._partitions:
            return self._partitions[name]
        if not latent_dim or not variables:
            partition = []
        elif latent_dim == variables:
            partition = list(range(latent_dim))
        else:
            client = self.client(name)
            owner = np.full(latent_dim, -1, dtype=np.int64)
            base = np.full((1, latent_dim), _PROBE, dtype=np.float32)
            for k in range(variables):
                mask = np.arange(variables) == k
                drawn = client.sample(1, seed=0, base=base, mask=mask).latents[0]
                owner[drawn != _PROBE] = k
            partition = owner.tolist()
        with self._lock:
            self._partitions[name] = partition
        return partition


def _summary(served: ServedSet) -> dict:
    versions = sorted({m.version for m in served.models if m.version})
    return {
        "name": served.name,
        "label": served.name or "(unprefixed)",
        "ready": served.ready,
        "version": ", ".join(versions) or "-",
        "draw_modes": list(served.draw_modes),
        "max_samples": served.max_samples,
        "has_prior": any(m.name == wire.served_name(served.name, wire.PRIOR_SAMPLE) for m in served.models),
        "state": "ready"
        if served.ready
        else "; ".join(
            f"{m.name} {m.state}{' (' + m.reason + ')' if m.reason else ''}"
            for m in served.models
            if m.state != "READY"
        )
        or "not ready",
    }
