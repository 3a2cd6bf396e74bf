"""The records of a run, as the store returns them and suites, reports and the
command line use them: frozen dataclasses with no database behind them (the
store in `harness.results.store` turns them into rows and back).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

STATUSES = ("running", "passed", "failed", "error", "interrupted")


@dataclass(frozen=True)
class HostRecord:
    host: str
    impl: str | None
    impl_version: str | None
    build: str | None
    facts: dict[str, Any]


@dataclass(frozen=True)
class RunRecord:
    id: str
    started_at: datetime
    lab_name: str
    lab_path: str
    lab_sha256: str
    lab_text: str = field(repr=False)
    build: str | None
    harness_version: str
    command: str
    pid: int
    hostname: str


@dataclass(frozen=True)
class Measurement:
    suite: str
    case: str
    repetition: int
    metric: str
    value: float
    unit: str
    direction: str
    """'higher' (higher is better), 'lower' or 'none'."""
    test_id: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    series: list[tuple[float, float]] | None = None
    """Per-interval (end time in s, value) pairs."""
    flow_direction: str = ""
    """'forward' or 'reverse' for bidirectional flows, '' otherwise."""
    build: str | None = None
    """The build measured, when a run interleaves variants; None: the run's build."""


@dataclass(frozen=True)
class RunSummary:
    id: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    lab_name: str
    build: str | None
    impls: str
    measurements: int
    error: str | None


@dataclass(frozen=True)
class RunDetails:
    run: RunRecord
    summary: RunSummary
    hosts: list[HostRecord]
    measurements: list[Measurement]
    artifacts: list[str]


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]
