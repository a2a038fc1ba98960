"""What a client needs from a served model's configuration, read from the server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sae.core.errors import InvalidInputError


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # Triton's name: UINT8, FP32, INT64, BOOL, BYTES
    dims: tuple[int, ...]  # without the batch axis when the model batches; -1 = variable
    optional: bool = False


@dataclass(frozen=True)
class ModelInfo:
    """What the client needs from a served model's configuration."""

    name: str  # the served name, prefix included
    max_batch_size: int  # 0: the model does not batch
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    parameters: dict[str, str] = field(default_factory=dict)
    steps: tuple[str, ...] = ()  # an ensemble's component models, in order

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelInfo:
        """From ``get_model_config(..., as_json=True)["config"]`` (protobuf JSON: int64 dims come as strings)."""

        def specs(entries: list[dict[str, Any]]) -> dict[str, TensorSpec]:
            return {
                e["name"]: TensorSpec(
                    e["name"],
                    e.get("data_type", "TYPE_INVALID").removeprefix("TYPE_"),
                    tuple(int(d) for d in e.get("dims", ())),
                    bool(e.get("optional", False)),
                )
                for e in entries
            }

        steps = config.get("ensemble_scheduling", {}).get("step", [])
        return cls(
            name=config["name"],
            max_batch_size=int(config.get("max_batch_size", 0)),
            inputs=specs(config.get("input", [])),
            outputs=specs(config.get("output", [])),
            parameters={k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()},
            steps=tuple(s["model_name"] for s in steps),
        )

    def input(self, name: str) -> TensorSpec:
        if name not in self.inputs:
            raise InvalidInputError(
                f"{self.name}: the served model has no input {name} (it takes {', '.join(self.inputs) or 'nothing'})",
                self.name,
                name,
            )
        return self.inputs[name]
