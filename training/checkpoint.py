"""Checkpoints: plain dicts of tensors, numbers and a config JSON string, so ``torch.load(weights_only=True)`` reads
them.

A run's weights may also be read from ``model.safetensors`` beside its ``config.json`` (``sae.training.weights_file``):
``Checkpoint.load`` takes either form, so do ``load_model`` and ``sae export``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sae.core.atomic import write_bytes_atomic
from sae.training.config import ExperimentConfig
from sae.training.models.zoo import build_model
from sae.training.weights_file import SAFETENSORS_FILE, SAFETENSORS_SUFFIX, CheckpointError, load_safetensors

LAST = "last.pt"  # the newest state: what a resumed run starts from
BEST = "best.pt"  # the state with the lowest validation loss so far


@dataclass
class Checkpoint:
    config: ExperimentConfig
    model_state: dict[str, torch.Tensor]
    step: int
    optimizer_state: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None
    # per auxiliary module (e.g. FactorVAE's discriminator): {"module": state_dict, "optimizer": state_dict}
    auxiliary: dict[str, dict[str, Any]] | None = None

    def save(self, path: Path) -> None:
        """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
        # Serialised in memory first: torch.save's own writer turns a full disk into an opaque "iostream error",
        # while a plain write says "File too large" / "No space left on device".
        buffer = io.BytesIO()
        torch.save(
            {
                "config": self.config.to_json(),
                "model": self.model_state,
                "step": self.step,
                "optimizer": self.optimizer_state,
                "extra": self.extra or {},
                "auxiliary": self.auxiliary or {},
            },
            buffer,
        )
        write_bytes_atomic(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Path, map_location: str | torch.device = "cpu", which: str = LAST) -> Checkpoint:
        """``path`` is a checkpoint file, a ``model.safetensors`` file, or a run folder (then
        ``RUN/checkpoints/{which}``, last.pt by default, or else ``RUN/model.safetensors``)."""
        path = resolve_checkpoint(path, which)
        if path.suffix == SAFETENSORS_SUFFIX:
            config, state, step, extra = load_safetensors(path, map_location)
            return cls(config, state, step, None, extra, None)
        if not path.is_file():
            raise CheckpointError(f"no checkpoint at {path}; train one with `sae train CONFIG --out RUN`")
        try:
            raw = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as e:  # torch raises several types for truncated or foreign files
            raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: {e})") from e
        if not isinstance(raw, dict) or not {"config", "model", "step"} <= set(raw):
            raise CheckpointError(f"{path} is not an SAE checkpoint (missing config/model/step)")
        import json

        config = ExperimentConfig.from_dict(json.loads(raw["config"]))
        return cls(config, raw["model"], int(raw["step"]), raw.get("optimizer"), raw.get("extra"), raw.get("auxiliary"))

    def eval_model(self, device: str | torch.device = "cpu"):
        """The eager model these weights belong to, on ``device`` in eval mode."""
        model = build_model(self.config.model)
        model.load_state_dict(self.model_state)
        return model.to(device).eval()


def resolve_checkpoint(path: Path, which: str = LAST) -> Path:
    """The file ``Checkpoint.load(path, which=which)`` reads: a file as given; for a run folder its
    ``checkpoints/{which}``, or its ``model.safetensors`` when the folder holds no ``.pt`` checkpoints (a shared
    run)."""
    path = Path(path)
    if not path.is_dir():
        return path
    checkpoint = run_checkpoint(path, which)
    shared = path / SAFETENSORS_FILE
    return shared if not checkpoint.is_file() and which == LAST and shared.is_file() else checkpoint


def run_checkpoint(run_dir: Path, which: str = LAST) -> Path:
    """Where a run keeps its ``last.pt`` / ``best.pt``."""
    if which not in (LAST, BEST):
        raise CheckpointError(f"unknown checkpoint {which!r}; a run keeps {LAST} and {BEST}")
    return Path(run_dir) / "checkpoints" / which
