"""What ``sae models`` prints: the model sets a server serves, grouped by their ``NAME_`` prefix, with each model's
state and versions (Triton's repository index) and each ready set's draw modes and limits (its model configs)."""

from __future__ import annotations

from dataclasses import dataclass

from sae.clients.triton_client import READY, SAEClient, no_server_error, served_sets
from sae.core import wire
from sae.core.draw import DRAW_MODES
from sae.core.errors import InferenceError


@dataclass(frozen=True)
class ServedModel:
    name: str  # the served name, prefix included
    version: str  # "" where the index names none (an unloaded model)
    state: str  # READY, LOADING, UNAVAILABLE, ...
    reason: str  # why it is not READY ("" when it is)


@dataclass(frozen=True)
class ServedSet:
    name: str  # the export name ('' for the unprefixed set)
    models: tuple[ServedModel, ...]
    draw_modes: tuple[str, ...]  # () when hybrid_sample is not ready
    max_samples: int  # per hybrid_sample request (0 when not ready)
    max_batch_size: int  # images per encode request (0 when not ready)

    @property
    def ready(self) -> bool:
        return all(m.state == READY for m in self.models)


def _belongs(model: str, set_name: str, sets: set[str]) -> bool:
    """Whether ``model`` is a member of ``set_name``: the longest matching prefix wins (sets ``a`` and ``a_b``)."""
    prefixes = [s for s in sets if s and model.startswith(s + "_")]
    owner = max(prefixes, key=len) if prefixes else ""
    return owner == set_name


def describe_sets(url: str) -> list[ServedSet]:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from sae.clients.triton_client import is_connection_refused

    client = grpcclient.InferenceServerClient(url)
    try:
        index = client.get_model_repository_index(as_json=True, client_timeout=5.0).get("models", [])
    except InferenceServerException as e:
        if is_connection_refused(e):
            raise no_server_error(url) from None
        raise InferenceError(f"server at {url} did not list its models: {e.message()}") from None
    finally:
        client.close()
    models = [
        ServedModel(m.get("name", ""), str(m.get("version", "")), m.get("state", ""), m.get("reason", ""))
        for m in index
    ]
    sets = served_sets([m.name for m in models])
    described = []
    for set_name in sorted(sets):
        members = tuple(sorted((m for m in models if _belongs(m.name, set_name, sets)), key=lambda m: m.name))
        draw_modes: tuple[str, ...] = ()
        max_samples, max_batch = 0, 0
        if all(m.state == READY for m in members):
            with SAEClient(url, model=set_name) as client:
                hybrid = client.model_info("hybrid_sample")
                listed = hybrid.parameters.get("draw_modes")
                draw_modes = (
                    tuple(listed.split(","))
                    if listed
                    else DRAW_MODES
                    if wire.DRAW in hybrid.inputs
                    else DRAW_MODES[::2]
                )
                max_samples = client.max_samples()
                max_batch = client.max_batch_size("encode")
        described.append(ServedSet(set_name, members, draw_modes, max_samples, max_batch))
    return described


def set_lines(sets: list[ServedSet]) -> list[str]:
    if not sets:
        return ["no model sets served (export one with `sae export RUN --repo REPO --name NAME`)"]
    lines = []
    for served in sets:
        label = served.name or "(unprefixed)"
        if served.ready:
            versions = sorted({m.version for m in served.models})
            lines.append(
                f"{label}: ready, version {', '.join(versions)}; draw {'/'.join(served.draw_modes)}; "
                f"up to {served.max_samples} samples and {served.max_batch_size} images per request"
            )
        else:
            lines.append(f"{label}: not ready")
        for m in served.models:
            why = f" ({m.reason})" if m.reason and m.state != READY else ""
            lines.append(f"  {m.name:<28} {m.state:<12} version {m.version or '-'}{why}")
    return lines
