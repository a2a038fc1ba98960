"""Frozen config dataclasses back from their JSON form (``dataclasses.asdict`` then ``json.dumps``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from sae.core.typed_fields import check_types
from sae.training.config_error import TrainingConfigError


def from_json_dict(cls, d: dict[str, Any]):
    """Rebuild dataclass ``cls`` from JSON, turning lists back into tuples; unknown fields and values of
    the wrong type are an error."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise TrainingConfigError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    check_types(cls, d, cls.__name__, TrainingConfigError)
    return cls(**{k: json_tuples(v) for k, v in d.items()})


def json_tuples(v):
    """JSON lists, nested ones too, back into tuples."""
    return tuple(json_tuples(x) for x in v) if isinstance(v, list) else v
