"""Where each file of a model set lives in a Triton repository: ``REPO/MODEL/config.pbtxt`` and
``REPO/MODEL/VERSION/{model.onnx, model.py, bank.h5, export.json, ...}``."""

from __future__ import annotations

import json
from pathlib import Path

from sae.core.bank_file import BANK_FILE  # noqa: F401 (bank.h5: its one home is the bank file's reader and writer)

CONFIG_FILE = "config.pbtxt"
CONFIG_COPY = "config.pbtxt.exported"  # in each version folder: the config.pbtxt it was exported with
ONNX_FILE = "model.onnx"
ONNX_FP16_FILE = "model_fp16.onnx"
HYBRID_ONNX_FILE = "model_hybrid.onnx"  # native NAME_hybrid_sample: draw + decoder in one graph
HYBRID_ONNX_FP16_FILE = "model_hybrid_fp16.onnx"  # the same with the fp16 decoder
TORCHSCRIPT_FILE = "model.pt"
MANIFEST_FILE = "export.json"
PYTHON_FILE = "model.py"
VERSION = "1"  # the first version folder; each re-export of a name writes the next (repository/install.py)


def versions(model_dir: Path) -> list[int]:
    """The numbered version folders of a model, oldest first ([] for a missing folder)."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def newest_version_dir(model_dir: Path) -> Path:
    """The folder of the version Triton serves (``version_policy: latest 1``); VERSION when none exists yet."""
    found = versions(model_dir)
    return model_dir / str(found[-1] if found else VERSION)


def read_manifest(model_dir: Path) -> dict | None:
    """The newest version's export.json; None when it is missing or unreadable."""
    try:
        return json.loads((newest_version_dir(model_dir) / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
