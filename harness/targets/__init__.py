"""Lab hosts, by the `target` kind a lab file names (imported lazily)."""

from __future__ import annotations

import importlib

from harness.parsers.facts import HostFacts
from harness.targets.base import CommandResult, Process, Target

__all__ = ["CommandResult", "HostFacts", "Process", "Target", "TARGET_KINDS", "target_class"]

TARGET_KINDS: dict[str, str] = {
    "netns": "harness.targets.netns:NetnsTarget",
    "local": "harness.targets.local:LocalTarget",
}


def target_class(kind: str) -> type[Target]:
    module, _, cls = TARGET_KINDS[kind].partition(":")
    return getattr(importlib.import_module(module), cls)
