"""Lab hosts: the `Target` interface, and `make`, which builds any kind of host
(or its dry-run form) from a `TargetSpec`. Each kind's module is imported only
when a host of that kind is made."""

from __future__ import annotations

from harness.parsers.facts import HostFacts
from harness.targets.base import CommandResult, Process, Target
from harness.targets.dry import DryRunLog
from harness.targets.factory import TARGET_KINDS, HostKind, TargetSpec, make

__all__ = [
    "TARGET_KINDS",
    "CommandResult",
    "DryRunLog",
    "HostFacts",
    "HostKind",
    "Process",
    "Target",
    "TargetSpec",
    "make",
]
