"""The records of a run, as the store returns them and suites, reports and the
command line use them: frozen dataclasses with no database behind them (the
store in `harness.results.store` turns them into rows and back).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    """What became of a run; the store keeps the value, as text."""

    RUNNING = "running"
    """Begun and not finished (or still going)."""
    PASSED = "passed"
    FAILED = "failed"
    """A test failed; the measurements are still worth trusting."""
    ERROR = "error"
    """The infrastructure failed (the lab did not come up, pytest broke)."""
    INTERRUPTED = "interrupted"
    """Stopped by Ctrl-C."""
    ABORTED = "aborted"
    """Never stored: read back for a run left 'running' whose process (on this host) is gone."""

    @property
    def finished(self) -> bool:
        """A status a run can be finished with (`Store.finish_run`)."""
        return self in FINAL_STATUSES

    @property
    def infrastructure(self) -> bool:
        """The run broke (or has not ended): its measurements are no evidence either way."""
        return self in INFRA_STATUSES


FINAL_STATUSES = frozenset({RunStatus.PASSED, RunStatus.FAILED, RunStatus.ERROR, RunStatus.INTERRUPTED})
"""The statuses a run finishes with."""
INFRA_STATUSES = frozenset({RunStatus.ERROR, RunStatus.ABORTED, RunStatus.INTERRUPTED, RunStatus.RUNNING})
"""Runs left out of comparisons: their measurements are not a verdict on the build."""
TRUSTED_STATUSES = (RunStatus.PASSED, RunStatus.FAILED)
"""Runs with measurements to trust (history, trends)."""


class Verdict(StrEnum):
    """The verdict on one metric of a candidate against a baseline (`harness.results.compare`)."""

    IMPROVED = "improved"
    REGRESSED = "regressed"
    UNCHANGED = "unchanged"
    INCONCLUSIVE = "inconclusive"
    FAILED = "failed"
    """The candidate measured zero throughput."""
    MISSING = "missing"
    """The baseline has the metric, the candidate does not."""

    @property
    def failing(self) -> bool:
        """A verdict that fails a comparison (exit status 1)."""
        return self in (Verdict.REGRESSED, Verdict.FAILED, Verdict.MISSING)


class Direction(StrEnum):
    """Which way a metric gets better; the store keeps the value, as text."""

    HIGHER = "higher"
    """Higher is better (a rate, a yes/no outcome)."""
    LOWER = "lower"
    """Lower is better (a time, a loss)."""
    NONE = "none"
    """Neither: a figure kept for the record (a counter, an observed value)."""


THROUGHPUT_UNIT = "bit/s"
"""The unit of a throughput (iperf3's receiver and sender rates)."""
OUTCOME_UNIT = "bool"
"""The unit of a yes/no outcome: 1.0 yes (passed), 0.0 no."""


class MetricKind(StrEnum):
    """What a metric's values are, as far as judging them goes. The store keeps no kind
    of its own: it is read from the stored unit and direction (`MetricKind.of`)."""

    THROUGHPUT = "throughput"
    """A rate in bit/s, higher is better: zero is a failure, not a slow result."""
    OUTCOME = "outcome"
    """A yes/no outcome (a conformance probe's verdict): 1.0 yes, 0.0 no."""
    MEASURE = "measure"
    """Any other figure: judged by its change alone."""

    @classmethod
    def of(cls, unit: str, direction: Direction) -> MetricKind:
        """The kind of a metric stored with ``unit`` and ``direction``."""
        if unit == THROUGHPUT_UNIT and direction == Direction.HIGHER:
            return cls.THROUGHPUT
        if unit == OUTCOME_UNIT:
            return cls.OUTCOME
        return cls.MEASURE


@dataclass(frozen=True)
class HostRecord:
    host: str
    impl: str | None
    impl_version: str | None
    build: str | None
    facts: dict[str, Any]


@dataclass(frozen=True)
class ImplRecord:
    """What one host of a run ran: the part of its `HostRecord` a run's summary carries."""

    host: str
    impl: str
    version: str | None = None
    build: str | None = None

    def __str__(self) -> str:
        """``host=impl version`` (the version left out when unknown), as run lists print it."""
        return f"{self.host}={self.impl} {self.version or ''}".strip()


def impls_text(impls: Iterable[ImplRecord]) -> str:
    """A run's implementations as one line: ``a=wireguard-go 0.0.1, b=kernel``; '' for none."""
    return ", ".join(str(i) for i in impls)


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
    runner: str | None = None
    """The runner that made the run (``--runner``, by default the host name), part of
    its fingerprint (`harness.results.fingerprint`); None for runs stored before it was."""
    job: str | None = None
    """The fleet job that made the run (`harness.fleet`); None for a run started by hand."""


@dataclass(frozen=True)
class Measurement:
    suite: str
    case: str
    repetition: int
    metric: str
    value: float
    unit: str
    direction: Direction
    test_id: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    series: list[tuple[float, float]] | None = None
    """Per-interval (end time in s, value) pairs."""
    flow_direction: str = ""
    """For bidirectional flows the flow's direction (`harness.parsers.iperf.FlowDirection`:
    'forward' or 'reverse'), '' otherwise."""
    build: str | None = None
    """The build measured, when a run interleaves variants; None: the run's build."""

    @property
    def kind(self) -> MetricKind:
        """What the values are (a throughput, an outcome, a measure): see `MetricKind`."""
        return MetricKind.of(self.unit, self.direction)

    @property
    def key(self) -> str:
        """The metric's key, ``suite/case[/flow_direction]/metric`` (see `metric_key`)."""
        return metric_key(self.suite, self.case, self.flow_direction, self.metric)


def metric_key(suite: str, case: str, flow_direction: str, metric: str) -> str:
    """The one name of a metric across runs: ``suite/case[/flow_direction]/metric``
    (the flow direction only for bidirectional flows)."""
    tag = f"/{flow_direction}" if flow_direction else ""
    return f"{suite}/{case}{tag}/{metric}"


@dataclass(frozen=True)
class OtherRun:
    """Another run seen measuring on the same machine (`Overlap.others`)."""

    run_id: str
    lab: str
    pid: int

    def __str__(self) -> str:
        return f"run {self.run_id} (lab {self.lab})"


@dataclass(frozen=True)
class Overlap:
    """Whether a run measured alone on the machine that drove it: what
    `harness.run.hostlock` saw while the run's suites ran, stored with the run."""

    locked: bool
    """The run held the machine's benchmark lock while it measured (False: ``--no-lock``)."""
    waited_seconds: float = 0.0
    """How long it waited for that lock."""
    others: tuple[OtherRun, ...] = ()
    """Other runs measuring on the same machine at some time while this one measured."""

    @property
    def alone(self) -> bool:
        """No other run was seen measuring beside this one."""
        return not self.others

    def warning(self) -> str | None:
        """One line for a run that measured beside another, else None."""
        if self.alone:
            return None
        names = ", ".join(str(o) for o in self.others)
        verb = "was" if len(self.others) == 1 else "were"
        return f"measured while {names} {verb} active on the same machine: figures may be low"

    def __str__(self) -> str:
        """How the run measured, as run summaries print it."""
        lock = "holding its machine's lock" if self.locked else "without its machine's lock (--no-lock)"
        if self.waited_seconds >= 1:
            lock += f" (waited {self.waited_seconds:.0f} s for it)"
        return f"{self.warning()}; {lock}" if self.others else f"measured alone, {lock}"


@dataclass(frozen=True)
class RunSummary:
    id: str
    started_at: datetime
    finished_at: datetime | None
    status: RunStatus
    lab_name: str
    build: str | None
    impls: tuple[ImplRecord, ...]
    """The hosts that ran an implementation, by host name."""
    measurements: int
    error: str | None
    overlap: Overlap | None = None
    """Whether it measured alone; None: not recorded (a run stored before this was, or
    one that never got to measure)."""


@dataclass(frozen=True)
class RunDetails:
    run: RunRecord
    summary: RunSummary
    hosts: list[HostRecord]
    measurements: list[Measurement]
    artifacts: list[str]


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]
