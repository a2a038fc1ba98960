"""Type checks of the values a config file gives a dataclass, by the dataclass's own annotations.

TOML and JSON carry their own types (``steps = "100"`` is a string), and a frozen dataclass takes whatever it is
given, so a wrong type would only fail later, deep inside training or the grid, as a raw ``TypeError``. Checking each
value against its field's annotation refuses it at the file, with the key and the expected type named.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from pathlib import Path
from typing import Any, Union


@functools.cache
def field_hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of dataclass ``cls``'s fields (string annotations evaluated in its module)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


def type_name(hint: Any) -> str:
    """How an annotation reads in an error message: ``int``, ``tuple[int, ...]``, ``float | None``."""
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("pathlib.", "").replace("NoneType", "None")


def matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` (as TOML or JSON gives it, lists for tuples) fits annotation ``hint``."""
    if hint is Any or isinstance(hint, typing.TypeVar):
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return any(matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is Path:
        return isinstance(value, (str, Path))
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(matches(v, args[0]) for v in value)
        return len(args) == len(value) and all(matches(v, a) for v, a in zip(value, args))
    if origin is dict:
        key_hint, value_hint = args or (Any, Any)
        return isinstance(value, dict) and all(
            matches(k, key_hint) and matches(v, value_hint) for k, v in value.items()
        )
    if dataclasses.is_dataclass(hint):
        return isinstance(value, (dict, typing.cast(type, hint)))  # an annotation that is a dataclass is its class
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # an annotation this checker does not model (a Protocol, a Literal): left to the dataclass


def check_types(cls: type, values: dict[str, Any], where: str, error: type[Exception] = ValueError) -> None:
    """Raise ``error`` naming the first key of ``values`` whose value does not fit ``cls``'s annotation."""
    hints = field_hints(cls)
    for key, value in values.items():
        hint = hints.get(key, Any)
        if not matches(value, hint):
            raise error(f"{where}: {key} must be {type_name(hint)}, got {type(value).__name__} {value!r}")
