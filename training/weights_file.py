"""``RUN/model.safetensors``: a run's weights in the safetensors format that model hubs use, beside ``config.json``.

The file holds the model's state dict (no optimiser state) and, in its string metadata, what a checkpoint records
besides the weights: the step, the ``extra`` dict (data path, excluded factor values), the config's name and kind.
The config itself is read from ``config.json`` in the same folder. ``read_metadata`` parses the header alone
(the format's 8-byte length and JSON), and the module imports torch only in the calls that need it, so the model
card reads the metadata without torch.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from sae.core.atomic import write_bytes_atomic
from sae.core.errors import SAEError

SAFETENSORS_FILE = "model.safetensors"  # RUN/model.safetensors: the last state's weights, for sharing
SAFETENSORS_SUFFIX = ".safetensors"
CONFIG_FILE = "config.json"
FORMAT = "sae-serving/1"  # metadata["format"]: what wrote the file
MAX_HEADER = 100 * 1024 * 1024  # the safetensors format's own limit on the header


class CheckpointError(SAEError, ValueError):
    """A checkpoint (``.pt``) or weights file (``.safetensors``) is missing, truncated or not one of ours."""


def save_safetensors(ckpt, path: Path, metadata: dict[str, str] | None = None) -> Path:
    """Write the model weights of ``ckpt`` (a ``sae.training.checkpoint.Checkpoint``) to ``path`` atomically;
    ``metadata`` adds string entries to the header."""
    from safetensors.torch import save

    tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in ckpt.model_state.items()}
    meta = {
        "format": FORMAT,
        "step": str(ckpt.step),
        "config_name": ckpt.config.name,
        "kind": ckpt.config.model.kind,
        "extra": json.dumps(ckpt.extra or {}),
        **(metadata or {}),
    }
    write_bytes_atomic(path, save(tensors, metadata=meta))
    return Path(path)


def read_metadata(path: Path) -> dict[str, str]:
    """The header's ``__metadata__`` of a safetensors file, torch-free; CheckpointError if it is not one."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) != 8:
                raise ValueError("shorter than the 8-byte header length")
            (size,) = struct.unpack("<Q", head)
            if not 0 < size <= MAX_HEADER:
                raise ValueError(f"header length {size}")
            header = json.loads(f.read(size))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e})") from e
    meta = header.get("__metadata__") or {}
    return {str(k): str(v) for k, v in meta.items()}


def load_safetensors(path: Path, map_location: Any = "cpu") -> tuple[Any, dict, int, dict]:
    """``model.safetensors`` and the ``config.json`` beside it -> (ExperimentConfig, state dict, step, extra):
    what ``Checkpoint.load`` makes a Checkpoint of (weights only: no optimiser state)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from sae.training.config import ExperimentConfig

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no weights at {path}; train a run with `sae train CONFIG --out RUN`")
    config_path = path.parent / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(f"{path} needs the run's {CONFIG_FILE} beside it ({config_path} is missing)")
    meta = read_metadata(path)
    try:
        device = str(map_location) if map_location is not None else "cpu"
        state = load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({type(e).__name__}: {e})") from e
    try:
        config = ExperimentConfig.from_dict(json.loads(config_path.read_text()))
    except KeyError as e:  # a config JSON without its name, model, train or backbone part
        raise CheckpointError(f"{config_path}: no {e} field") from e
    except (OSError, ValueError, TypeError) as e:
        raise CheckpointError(f"{config_path}: {e}") from e
    try:
        step = int(meta.get("step", 0))
        extra = json.loads(meta.get("extra", "{}"))
    except (OSError, ValueError, TypeError) as e:
        raise CheckpointError(f"the metadata of {path} is not readable ({e})") from e
    return config, state, step, extra


def run_weights(run_dir: Path) -> Path:
    return Path(run_dir) / SAFETENSORS_FILE
