"""What the server says about the benchmarked models: names, ensemble steps, the largest request and the shapes."""

from __future__ import annotations

from dataclasses import dataclass

import tritonclient.grpc as grpcclient

from sae.core import wire
from sae.core.errors import ModelNotServedError
from sae.serving.bench.config import BenchConfig


@dataclass(frozen=True)
class ServedPath:
    path: str  # encode, decode, reconstruct or hybrid_sample
    model: str  # the served model's name (with the export prefix)
    components: tuple[str, ...]  # the ensemble's steps, in order; () for a plain model
    max_items: int  # the largest batch (NUM_SAMPLES for hybrid_sample) one request may carry
    decodes_through: str = ""  # the model a python sampler decodes through (its decode_model parameter, BLS)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "components": list(self.components),
            "max_items": self.max_items,
            "decodes_through": self.decodes_through,
        }

    def measured_models(self) -> list[str]:
        """The models whose server-side counters a cell of this path reads: the model, its steps, its BLS target."""
        return [self.model, *self.components, *([self.decodes_through] if self.decodes_through else [])]


@dataclass(frozen=True)
class WireShapes:
    height: int
    width: int
    latent_dim: int


def _string_params(config: dict) -> dict[str, str]:
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}


def _dims(config: dict, kind: str, name: str) -> list[int]:
    for tensor in config.get(kind, []):
        if tensor["name"] == name:
            return [int(d) for d in tensor["dims"]]
    raise ModelNotServedError(f"model {config.get('name')!r} has no {kind} tensor {name}", model=config.get("name", ""))


def _max_items(config: dict) -> int:
    """A batching model's max_batch_size; for a non-batching one (the sampler) its max_samples parameter."""
    limit = int(config.get("max_batch_size", 0))
    if limit > 0:
        return limit
    return int(_string_params(config).get("max_samples", wire.DEFAULT_MAX_SAMPLES))


def describe_served(
    client: grpcclient.InferenceServerClient, config: BenchConfig
) -> tuple[dict[str, ServedPath], WireShapes]:
    """Read every benchmarked model's config from the server (an error names a model that is not served)."""
    from tritonclient.utils import InferenceServerException

    cache: dict[str, dict] = {}

    def model_config(name: str) -> dict:
        if name not in cache:
            try:
                cache[name] = client.get_model_config(name, as_json=True)["config"]
            except InferenceServerException as e:
                raise ModelNotServedError(
                    f"model {name!r}: no config from the server at {config.url}: {e.message()}", model=name
                ) from e
        return cache[name]

    paths: dict[str, ServedPath] = {}
    for path in config.paths:
        name = config.model_name(path)
        cfg = model_config(name)
        steps = tuple(s["model_name"] for s in cfg.get("ensemble_scheduling", {}).get("step", []))
        limits = [_max_items(model_config(step)) for step in steps] or [_max_items(cfg)]
        if int(cfg.get("max_batch_size", 0)) > 0:
            limits.append(int(cfg["max_batch_size"]))
        paths[path] = ServedPath(path, name, steps, min(limits), _string_params(cfg).get("decode_model", ""))
    height, width, _ = _dims(model_config(config.model_name(wire.ENCODE)), "input", wire.IMAGE)
    (latent_dim,) = _dims(model_config(config.model_name(wire.DECODE)), "input", wire.LATENT)
    return paths, WireShapes(height, width, latent_dim)
