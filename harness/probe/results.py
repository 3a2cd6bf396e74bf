"""Probe results as JSON and back: a small serialiser for frozen dataclasses,
driven by their type hints.

`to_json` writes a dataclass as a JSON object (field name → value; tuples and
lists as arrays, nested dataclasses as objects). `from_json` reads it back into
the type given: each field is decoded by its annotation — a dataclass, ``list[X]``,
``tuple[X, ...]`` or ``tuple[X, Y]``, ``X | None``, ``int``, ``float`` (a JSON
integer becomes a float), ``bool``, ``str`` or ``Any`` (taken as it is). A value
of another shape is a `ValueError` naming the field. Fields with defaults may be
missing; unknown fields are refused. Standard library only: this runs on lab
hosts with their own Python (3.11 or later).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, TypeVar, Union

T = TypeVar("T")


def to_json(obj: object) -> str:
    """``obj`` (a dataclass instance) as one line of JSON."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"to_json: expected a dataclass instance, got {type(obj).__name__}")
    return json.dumps(dataclasses.asdict(obj))


def from_json(text: str, cls: type[T]) -> T:
    """The ``cls`` instance that `to_json` wrote as ``text``."""
    return decode(json.loads(text), cls)


def decode(value: Any, cls: type[T]) -> T:
    """``value`` (JSON-shaped: dicts, lists, numbers...) as an instance of ``cls``."""
    result: T = _decode(value, cls, cls.__name__)
    return result


def _decode(value: Any, hint: Any, where: str) -> Any:
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _dataclass(value, hint, where)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        choices = [a for a in args if a is not type(None)]
        errors = []
        for choice in choices:
            try:
                return _decode(value, choice, where)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors) or f"{where}: expected null, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected an array, got {value!r}")
        if origin is list:
            return [_decode(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ValueError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_decode(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if hint is type(None):
        if value is not None:
            raise ValueError(f"{where}: expected null, got {value!r}")
        return None
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{where}: cannot decode into {hint!r}")


def _dataclass(value: Any, cls: type, where: str) -> Any:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected an object, got {value!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = value.keys() - fields.keys()
    if unknown:
        raise ValueError(f"{where}: unknown fields {sorted(unknown)}")
    kwargs = {}
    for name, field in fields.items():
        if name in value:
            kwargs[name] = _decode(value[name], hints[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ValueError(f"{where}: missing field {name!r}")
    return cls(**kwargs)
