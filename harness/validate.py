"""Reading validated values out of a parsed TOML table.

`Fields` wraps one table with its dotted path; every accessor either returns a
value of the right type or raises `LabError(file, field, reason)`. Unknown keys
are refused by `done()`, so a typo never passes silently; a number is finite and
within its bounds. `read_file` and `parse_toml` read what the user names as data:
a regular file of bounded size (never a FIFO or a device, which could block or
never end), TOML nested no deeper than the parser can follow.
"""

from __future__ import annotations

import math
import os
import re
import stat
import tomllib
from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

from harness.errors import LabError

T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)
_MISSING = object()


MAX_FILE = 4 * 1024 * 1024
"""The largest lab, scenario or thresholds file read: more is no hand-written file."""


def read_file(path: str, limit: int = MAX_FILE) -> bytes:
    """The bytes of the regular file ``path``; `LabError` naming it if it cannot be read,
    is no regular file or holds more than ``limit`` bytes (nothing of it is read then)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens without waiting for a writer
    except OSError as exc:
        raise LabError(path, "", f"cannot read: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise LabError(path, "", "not a regular file")
        if info.st_size > limit:
            raise LabError(path, "", f"larger than {limit} bytes: not a file for this")
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        raise LabError(path, "", f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > limit:  # it grew meanwhile
        raise LabError(path, "", f"larger than {limit} bytes: not a file for this")
    return data


def read_text(path: str, limit: int = MAX_FILE) -> str:
    """The UTF-8 text of the file ``path`` (`read_file`); `LabError` if it is none."""
    try:
        return read_file(path, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise LabError(path, "", "not UTF-8 text") from None


def parse_toml(text: str, path: str) -> dict[str, Any]:
    """``text`` (of file ``path``) parsed; `LabError` if it is no TOML, or nested deeper
    than the parser can follow."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LabError(path, "", f"invalid TOML: {exc}") from None
    except RecursionError:
        raise LabError(path, "", "invalid TOML: nested too deeply") from None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Fields:
    def __init__(self, file: str, path: str, table: Any) -> None:
        self.file = file
        self.path = path
        if not isinstance(table, dict):
            raise LabError(file, path, f"must be a table, got {type(table).__name__}")
        self.table: dict[str, Any] = table
        self._seen: set[str] = set()

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, reason: str) -> LabError:
        return LabError(self.file, self.where(key), reason)

    def _lookup(self, key: str, default: Any) -> tuple[bool, Any]:
        """(present, value): the value if the field is there, else its default
        (a missing field without a default is an error)."""
        self._seen.add(key)
        if key in self.table:
            return True, self.table[key]
        if default is _MISSING:
            raise self.error(key, "required field is missing")
        return False, default

    def has(self, key: str) -> bool:
        return key in self.table

    def text(self, key: str, default: Any = _MISSING, pattern: str | None = None, hint: str = "") -> Any:
        present, value = self._lookup(key, default)
        if not present:
            return value
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {_show(value)}")
        if pattern and not re.fullmatch(pattern, value):
            raise self.error(key, f"{hint or 'must match ' + pattern}, got {_show(value)}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: Any = _MISSING) -> Any:
        value = self.text(key, default)
        if key in self.table and value not in choices:
            raise self.error(key, f"must be one of: {', '.join(choices)}; got {_show(value)}")
        return value

    def member(self, key: str, enum: type[E], default: Any = _MISSING) -> Any:
        """A string that is the value of one of ``enum``'s members: that member (the
        refusal lists the values, as `choice`'s does)."""
        value = self.choice(key, tuple(enum), default)
        return enum(value) if key in self.table else value

    def integer(self, key: str, default: Any = _MISSING, lo: int | None = None, hi: int | None = None) -> Any:
        present, value = self._lookup(key, default)
        if not present:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {_show(value)}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.error(key, f"must be an integer between {lo} and {hi}, got {value}")
        return value

    def number(
        self, key: str, default: Any = _MISSING, lo_exclusive: float | None = None, hi: float = 1e6
    ) -> Any:
        """A finite number above ``lo_exclusive`` and at most ``hi`` (every number has a
        bound: a duration of 1e300 seconds passes no check and ends no run)."""
        present, value = self._lookup(key, default)
        if not present:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, got {_show(value)}")
        if not math.isfinite(value):
            raise self.error(key, f"must be a finite number, got {value}")
        if lo_exclusive is not None and not value > lo_exclusive:
            raise self.error(key, f"must be greater than {lo_exclusive:g}, got {value}")
        if value > hi:
            raise self.error(key, f"must be at most {hi:g}, got {value:g}")
        return float(value)

    def flag(self, key: str, default: Any = _MISSING) -> Any:
        present, value = self._lookup(key, default)
        if not present:
            return value
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {_show(value)}")
        return value

    def parsed(self, key: str, parse: Callable[[Any], T], reason: str, default: Any = _MISSING) -> Any:
        """A string turned into a value by ``parse``; ValueError from it becomes ``reason``."""
        value = self.text(key, default)
        if key not in self.table:
            return value
        try:
            return parse(value)
        except ValueError as exc:
            detail = f" ({exc})" if str(exc) else ""
            raise self.error(key, f"{reason}{detail}") from None

    def table_of(self, key: str, default: Any = _MISSING) -> Any:
        present, value = self._lookup(key, default)
        if not present:
            return value
        if not isinstance(value, dict):
            raise self.error(key, f"must be a table, got {_show(value)}")
        return value

    def value_list(self, key: str, default: Any = _MISSING) -> Any:
        """An array of strings."""
        present, value = self._lookup(key, default)
        if not present:
            return value
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self.error(key, "must be a non-empty array of strings")
        return value

    def integer_list(self, key: str, default: Any = _MISSING, lo: int = 1, hi: int = 2**31) -> Any:
        """A non-empty array of whole numbers from ``lo`` to ``hi``, growing strictly."""
        present, value = self._lookup(key, default)
        if not present:
            return value
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi for v in value)
        ):
            raise self.error(key, f"must be a non-empty array of whole numbers from {lo} to {hi}")
        if value != sorted(set(value)):
            raise self.error(key, "must grow step by step")
        return value

    def list_of_tables(self, key: str, default: Any = _MISSING) -> Any:
        present, value = self._lookup(key, default)
        if not present:
            return value
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(key, "must be an array of tables")
        return value

    def done(self) -> None:
        unknown = [k for k in self.table if k not in self._seen]
        if unknown:
            raise self.error(unknown[0], f"unknown field (expected one of: {', '.join(sorted(self._seen))})")
