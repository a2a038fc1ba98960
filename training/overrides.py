"""Field overrides of an :class:`~sae.training.config.ExperimentConfig`: ``train.lr=1e-3`` (``sae train --set``) and
TOML
files whose dotted tables mirror the dataclasses (``sae train --config FILE.toml``).

Written here rather than taken from OmegaConf (2.4 is on the package index; tyro is not): the configs are frozen
dataclasses whose ``ModelConfig.regulariser`` is one of several dataclasses (one per regularised kind), which
OmegaConf's structured configs
do not support (it takes unions of primitive types only), and its containers hand tuples back as lists, so every
config would need converting back and re-validating anyway. Walking the dataclass fields with
``typing.get_type_hints`` is short, keeps the configs as they are, and adds no dependency.

Values are type-checked against the field's annotation: ``int``, ``float`` (an int is accepted), ``bool``, ``str``,
``tuple[T, ...]``/``tuple[T, U]`` (``--set`` takes ``1,2,3``; TOML takes arrays) and ``X | None`` (``none``).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import tomllib

from sae.core.errors import SAEError
from sae.training.config import ExperimentConfig


class OverrideError(SAEError, ValueError):
    """A path that names no field, or a value of the wrong type; the message names the field."""


class Text(str):
    """A value as typed on the command line, parsed by the field's type; TOML values keep their own type."""


def parse_assignment(text: str) -> tuple[str, str]:
    """``model.latent_dim=16`` -> (``model.latent_dim``, ``16``)."""
    path, sep, value = text.partition("=")
    if not sep or not path.strip():
        raise OverrideError(f"expected FIELD=VALUE (e.g. train.lr=1e-3), got {text!r}")
    return path.strip(), Text(value.strip())


def toml_assignments(path: Path) -> dict[str, Any]:
    """The TOML file's values as ``{dotted path: value}`` (nested tables become dotted paths)."""
    with open(path, "rb") as file:
        try:
            data = tomllib.load(file)
        except tomllib.TOMLDecodeError as e:
            raise OverrideError(f"{path}: not valid TOML ({e})") from None
    flat: dict[str, Any] = {}

    def walk(table: Mapping[str, Any], prefix: str) -> None:
        for key, value in table.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value

    walk(data, "")
    return flat


def apply_overrides(
    config: ExperimentConfig, assignments: Mapping[str, Any] | Iterable[tuple[str, Any]]
) -> ExperimentConfig:
    """``config`` with each dotted field set (a :class:`Text` value is parsed, others are checked), then
    validated."""
    items = assignments.items() if isinstance(assignments, Mapping) else assignments
    for path, value in items:
        config = _set(config, path.split("."), value, path)
    return config.validate()


def _set(obj: Any, keys: Sequence[str], value: Any, path: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(obj)}
    key = keys[0]
    if key not in fields:
        close = difflib.get_close_matches(key, fields, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"fields: {', '.join(fields)}"
        raise OverrideError(f"{path}: {type(obj).__name__} has no field {key!r}; {hint}")
    current = getattr(obj, key)
    if len(keys) > 1:
        if not dataclasses.is_dataclass(current):
            raise OverrideError(f"{path}: {type(obj).__name__}.{key} is a value, not a table of fields")
        return dataclasses.replace(obj, **{key: _set(current, keys[1:], value, path)})
    hint = typing.get_type_hints(type(obj))[key]
    if dataclasses.is_dataclass(current) or _dataclass_types(hint):
        raise OverrideError(f"{path}: {type(obj).__name__}.{key} is a table; set its fields ({path}.FIELD=VALUE)")
    return dataclasses.replace(obj, **{key: _convert(value, hint, path)})


def _dataclass_types(hint: Any) -> list[type]:
    return [t for t in typing.get_args(hint) or (hint,) if isinstance(t, type) and dataclasses.is_dataclass(t)]


def _convert(value: Any, hint: Any, path: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (value is None or (isinstance(value, Text) and value.lower() in ("none", "null"))):
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(value, inner[0], path)
    if origin is tuple:
        return _convert_tuple(value, args, path)
    if hint in (int, float, bool, str):
        return _convert_scalar(value, hint, path)
    raise OverrideError(f"{path}: fields of type {hint} cannot be overridden")


def _convert_tuple(value: Any, args: tuple, path: str) -> tuple:
    if isinstance(value, Text):
        text = value.strip().strip("()[]")
        items: list[Any] = [Text(part.strip()) for part in text.split(",") if part.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise OverrideError(f"{path}: expected a list of values, got {value!r}")
    if len(args) == 2 and args[1] is Ellipsis:
        element_types = [args[0]] * len(items)
    else:
        if len(items) != len(args):
            raise OverrideError(f"{path}: expected {len(args)} values, got {len(items)} ({value!r})")
        element_types = list(args)
    return tuple(_convert(item, t, path) for item, t in zip(items, element_types))


def _convert_scalar(value: Any, kind: type, path: str) -> Any:
    if isinstance(value, Text) and kind is not str:
        text = value.strip()
        try:
            if kind is bool:
                if text.lower() not in ("true", "false"):
                    raise ValueError
                return text.lower() == "true"
            return kind(text)
        except ValueError:
            raise OverrideError(f"{path}: expected {kind.__name__}, got {value!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not kind and not (kind is str and isinstance(value, str)):
        raise OverrideError(f"{path}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return str(value) if kind is str else value
