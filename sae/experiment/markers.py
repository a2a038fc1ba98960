"""Durable completion markers: small JSON files written atomically (temp file in the same folder, fsync, rename).

A marker exists only once its stage has finished; a stage interrupted at any moment leaves either no marker or the
previous one, never a partial file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sae.core.atomic import write_bytes_atomic


def write_atomic(path: Path, data: bytes) -> Path:
    write_bytes_atomic(path, data)  # 0644: results are meant to be shared and committed
    return Path(path)


def write_json(path: Path, value: Any) -> Path:
    return write_atomic(path, (json.dumps(value, indent=2, allow_nan=False) + "\n").encode())


def read_json(path: Path) -> dict[str, Any] | None:
    """The marker's content, or None when it is missing or unreadable (then its stage is redone)."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
