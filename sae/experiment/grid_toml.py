"""Grid files: a :class:`GridSpec` from TOML, with the same keys as its dataclasses; unknown keys and values of the
wrong type are refused by name."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from sae.core.typed_fields import check_types
from sae.experiment.grid_spec import ArmSpec, CostModel, DatasetSpec, EvalSpec, GridError, GridSpec


def _build(cls, data: Any, where: str):
    """A dataclass from a TOML table: unknown keys are refused by name; lists become tuples."""
    if not isinstance(data, dict):
        raise GridError(f"{where}: expected a table, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise GridError(f"{where}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(fields))})")
    nested = {"dataset": DatasetSpec, "eval": EvalSpec, "cost": CostModel}
    check_types(
        cls, {k: v for k, v in data.items() if not (cls is GridSpec and k in (*nested, "arms"))}, where, GridError
    )
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if cls is GridSpec and key in nested:
            kwargs[key] = _build(nested[key], value, f"{where}: [{key}]")
        elif cls is GridSpec and key == "arms":
            if not isinstance(value, list):
                raise GridError(f"{where}: arms must be an array of tables ([[arms]])")
            kwargs[key] = tuple(_build(ArmSpec, arm, f"{where}: [[arms]] #{i + 1}") for i, arm in enumerate(value))
        elif cls is ArmSpec and key == "exclude":
            if not isinstance(value, dict):
                raise GridError(f"{where}: exclude must be a table such as {{shape = [2]}}")
            kwargs[key] = {str(k): tuple(int(i) for i in v) for k, v in value.items()}
        elif cls is DatasetSpec and key == "path":
            kwargs[key] = Path(value)
        else:
            kwargs[key] = tuple(value) if isinstance(value, list) else value
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise GridError(f"{where}: missing key {missing[0]!r}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise GridError(f"{where}: {e}") from None


def load_toml(path: Path) -> GridSpec:
    import tomllib

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise GridError(f"grid file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise GridError(f"grid file {path}: not valid TOML ({e})") from None
    data.setdefault("name", path.stem)
    data.setdefault("description", f"grid file {path.name}")
    return _build(GridSpec, data, f"grid file {path}").validate()
