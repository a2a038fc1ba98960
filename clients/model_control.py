"""Loading and unloading whole model sets on a server in explicit model-control mode (``sae serve --model-control
explicit``), through Triton's repository API.

A set is every served model of ``wire.ROLES`` under one export name. Loading goes leaves first (``wire.ROLES``'
order), so an ensemble never loads before the models it calls; unloading goes ensembles first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sae.core import wire
from sae.core.errors import ClientError, ModelNotServedError, ServerNotFoundError

if TYPE_CHECKING:
    import tritonclient.grpc as grpcclient

IndexEntry = dict[str, str]  # one model of the repository index: name, version, state, reason


UNLOAD_WAIT_S = 60.0  # Triton's unload returns before the instances finish: how long to wait for them to go


class ModelControlError(ClientError):
    """The server refused to load or unload a model (not in explicit mode, a broken model); the message says which."""


@dataclass(frozen=True)
class SetChange:
    name: str  # the export name ('' for the unprefixed set)
    models: tuple[str, ...]  # served model names, in the order they were loaded or unloaded


def set_members(index: list[IndexEntry], name: str) -> tuple[str, ...]:
    """The served models of set ``name`` in a repository index, leaves first (``wire.ROLES``' order)."""
    present = {m.get("name", "") for m in index}
    return tuple(wire.served_name(name, role) for role in wire.ROLES if wire.served_name(name, role) in present)


def repository_sets(index: list[IndexEntry]) -> list[str]:
    """Every set a repository index lists, loaded or not."""
    return sorted({s for s in (wire.set_of(m.get("name", "")) for m in index) if s is not None})


def _index(client: grpcclient.InferenceServerClient) -> list[IndexEntry]:
    models: list[IndexEntry] = client.get_model_repository_index(as_json=True).get("models", [])
    return models


def _wait_unloaded(
    client: grpcclient.InferenceServerClient, url: str, models: tuple[str, ...], timeout_s: float = UNLOAD_WAIT_S
) -> None:
    """Until none of ``models`` is READY or UNLOADING in the server's index (an unload request only starts it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        busy = sorted(
            m.get("name", "")
            for m in _index(client)
            if m.get("name") in models and m.get("state") in ("READY", "UNLOADING")
        )
        if not busy:
            return
        if time.monotonic() > deadline:
            raise ModelControlError(f"{', '.join(busy)} at {url} still not unloaded after {timeout_s:g} s")
        time.sleep(0.1)


def change_sets(url: str, names: list[str] | None, load: bool) -> list[SetChange]:
    """Load (``load``) or unload the sets ``names`` (None: every set in the repository) at ``url``."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(url)
    try:
        try:
            index = _index(client)
        except InferenceServerException as e:
            raise ServerNotFoundError(
                f"no server at {url} ({e.message()}): start one with `sae serve --model-control explicit`"
            ) from None
        targets = repository_sets(index) if names is None else names
        changes = []
        for name in targets:
            members = set_members(index, name)
            if not members:
                listed = ", ".join(repr(s) for s in repository_sets(index)) or "none"
                raise ModelNotServedError(
                    f"no model set {name!r} in the repository of {url} (sets there: {listed})",
                    wire.served_name(name, wire.HYBRID_SAMPLE),
                )
            order = members if load else tuple(reversed(members))
            for served in order:
                try:
                    client.load_model(served) if load else client.unload_model(served)
                except InferenceServerException as e:
                    verb = "load" if load else "unload"
                    hint = (
                        " (the server must run with explicit model control: sae serve --model-control explicit)"
                        if "explicit" in str(e.message()) or "polling" in str(e.message())
                        else ""
                    )
                    raise ModelControlError(f"could not {verb} {served} at {url}: {e.message()}{hint}") from None
            if not load:
                _wait_unloaded(client, url, order)
            changes.append(SetChange(name, order))
        return changes
    finally:
        client.close()
