"""Values as JSON or YAML give them, checked against the type annotations of the config
dataclasses (and of Lightning's Trainer, for the engine's experiment config): a mistake
becomes one ``ConfigError`` that names the field, the type it must have and the value."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, Iterable, Mapping


class ConfigError(ValueError):
    """A configuration that cannot describe a valid model."""


def check_types(expected: Mapping[str, Any], values: Mapping[str, Any], where: str = "") -> None:
    """Each of ``values`` named in ``expected`` (name -> type, as annotated: ``int``,
    ``float | None``, ``tuple[int, ...]``, a config class) must be of its type, as JSON
    gives it (a list for a tuple, a mapping for a config class); else a ``ConfigError``
    naming ``where``, the field and the value (a ``"32"``, a ``3.0`` for an integer)."""
    for name, value in values.items():
        if name in expected and not fits(value, expected[name]):
            prefix = f"{where}: " if where else ""
            raise ConfigError(f"{prefix}{name} must be {describe(expected[name])}, got {value!r}")


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """A config dataclass's fields -> their annotated types."""
    return typing.get_type_hints(cls)


def fits(value: Any, kind: Any) -> bool:
    """Whether a value as JSON or YAML gives it fits a type annotation: a list for a tuple or
    list (each item fitting), a mapping for a dict or a config class, an int for a float,
    never a bool for a number; a class no such value can be (a Lightning ``Profiler``): no."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if kind is type(None):
        return value is None
    if isinstance(value, bool) and kind is not bool:
        return False
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            return all(fits(v, args[0]) for v in value) if args else True
        return len(value) == len(args) and all(fits(v, a) for v, a in zip(value, args))
    if kind is float:
        return isinstance(value, (int, float))
    if dataclasses.is_dataclass(kind):
        return isinstance(value, (kind, dict))
    kind = origin or kind  # dict[str, str] -> dict
    return isinstance(kind, type) and isinstance(value, kind)


def describe(kind: Any) -> str:
    """``kind`` (a type annotation) in words, as a user writing JSON or YAML reads it."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(arg) for arg in args)
    if origin is typing.Literal:
        return " or ".join(repr(arg) for arg in args)
    if origin in (tuple, list):
        fixed = origin is tuple and args and args[-1] is not Ellipsis
        return f"a list{f' of {len(args)}' if fixed else ''}{f' (each {describe(args[0])})' if args else ''}"
    words = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null",
             dict: "a mapping"}
    if (origin or kind) in words:
        return words[origin or kind]
    if dataclasses.is_dataclass(kind):
        return f"a mapping of {kind.__name__} fields"
    return getattr(origin or kind, "__name__", str(kind))


def check_choice(where: str, name: str, value: str, choices: Iterable[str]) -> None:
    """``value`` must be one of ``choices`` (a tuple, or a table's keys)."""
    if value not in choices:
        raise ConfigError(f"{where}: {name} {value!r} is unknown; choose one of {tuple(choices)}")


def section(cls: type, value: Any, where: str) -> Any:
    """``value`` as a ``cls`` (a config dataclass): built from its dict (as read from JSON),
    an unknown field or a value of the wrong type a ``ConfigError`` naming ``where`` and the field."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping of {cls.__name__} fields, got {value!r}")
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - valid)
    if unknown:
        raise ConfigError(f"unknown {where} field(s) {unknown}; valid fields: {sorted(valid)}")
    check_types(field_types(cls), value, where)
    return cls(**value)
