"""Dataclasses as JSON and back: the one codec of the harness, driven by type hints.

`encode` turns a dataclass into JSON-shaped values (field name → value, in field
order; tuples and lists as lists, nested dataclasses as dicts, enums as their
values): ``json.dumps`` of it is byte for byte ``json.dumps`` of
``dataclasses.asdict``, so what is stored stays as it was. `decode` reads such
values back into the type given: each field is decoded by its annotation — a
dataclass, ``list[X]``, ``tuple[X, ...]`` or ``tuple[X, Y]``, ``dict[str, X]``,
``X | None``, an enum (by value), ``int``, ``float`` (a JSON integer becomes a
float), ``bool``, ``str`` or ``Any`` (taken as it is). A value of another shape
is a `ValueError` naming the field. Fields with defaults may be missing; unknown
fields are refused. `to_json` and `from_json` do both with the text.

Pure, and standard library only: the prober runs this on lab hosts with their
own Python (3.11 or later).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from typing import Any, TypeVar, Union

T = TypeVar("T")


def encode(value: Any) -> Any:
    """``value`` (a dataclass instance, or a list, tuple or dict holding them) as
    JSON-shaped values; anything else is left as it is."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    return value


def to_json(obj: object, indent: int | None = None) -> str:
    """``obj`` (a dataclass instance) as JSON: one line, or indented by ``indent``."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"to_json: expected a dataclass instance, got {type(obj).__name__}")
    return json.dumps(encode(obj), indent=indent)


def from_json(text: str | bytes, cls: type[T]) -> T:
    """The ``cls`` instance that `to_json` wrote as ``text``; ValueError if it is not one."""
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
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            known = ", ".join(repr(m.value) for m in hint)
            raise ValueError(f"{where}: expected one of {known}, got {value!r}") from None
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
    if origin is dict:
        if args[:1] != (str,):
            raise TypeError(f"{where}: cannot decode into {hint!r} (JSON keys are strings)")
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object, got {value!r}")
        return {k: _decode(v, args[1], f"{where}[{k!r}]") for k, v in value.items()}
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
