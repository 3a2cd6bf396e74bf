"""The prober: speaks WireGuard directly over UDP to an implementation under
test, built on pyref's sans-IO core. It runs on a lab host as
``python -m harness.probe`` with a JSON job on stdin and prints one JSON result
(the job format: `harness/probe/__main__.py`). Each mode returns a frozen
dataclass (its return annotation), printed and read back with
`harness.codec`."""

from __future__ import annotations

import importlib
import typing
from collections.abc import Callable
from typing import Any

Job = dict[str, Any]
"""A probe job: JSON-shaped."""

Mode = Callable[[Job], Any]
"""A probe mode: a job in, its result (a frozen dataclass) out."""

MODULES = (
    "harness.probe.handshakes",
    "harness.probe.conformance",
    "harness.probe.timers",
    "harness.probe.underflood",
)


class JobError(Exception):
    """The job cannot be run (a bad or missing field): one line for the caller."""


def modes() -> dict[str, Mode]:
    """Every mode of the families built in this checkout, by name."""
    table: dict[str, Mode] = {}
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # a family of probes not built in this checkout
        table.update(module.MODES)
    return table


def result_type(mode: str) -> type:
    """The dataclass a mode returns (its return annotation); KeyError for an unknown mode."""
    hint = typing.get_type_hints(modes()[mode])["return"]
    if not isinstance(hint, type):
        raise TypeError(f"mode {mode}: its return annotation {hint!r} is not a class")
    return hint
