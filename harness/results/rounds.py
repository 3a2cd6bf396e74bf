"""Adaptive paired rounds as records: what the rounds loop (`harness.run.rounds`)
measured and decided, per metric. Stored with the run as the artifact
``rounds.json`` (`ROUNDS_ARTIFACT`) and rendered by `harness.results.render.rounds`
alone. Pure: no I/O, no clock.

Rules:
* A round is two runs of each build (`harness.results.sequential.ORDERS`); the
  run it belongs to numbers them as repetitions 2k-1 and 2k of round k
  (`round_repetitions`), each measurement carrying its build label.
* A metric's decision is the first one that is not UNKNOWN: once decided, later
  rounds (run for the metrics still undecided) add samples to it but never
  change it. `Decision.rounds` is how many rounds it needed.
* The exit status (`exit_status`): 130 interrupted, 3 the run broke on
  infrastructure, 1 a metric regressed or a test failed, 2 nothing to decide
  (no measured metric is named by the settings), else 0 — a metric still
  unknown at the cap is reported loudly, and is not a failure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from harness.errors import EXIT_FAILED, EXIT_INFRA, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from harness.results.records import Direction, Measurement, RunStatus, Verdict, metric_key
from harness.results.sequential import (
    DEFAULT_ALPHA,
    DEFAULT_MAX_ROUNDS,
    DEFAULT_MIN_EFFECT,
    DEFAULT_SAME_ERROR,
    Decision,
    Outcome,
    Round,
)

ROUNDS_ARTIFACT = "rounds.json"
"""The artifact of a run of adaptive rounds: its `RoundsReport` as JSON."""


@dataclass(frozen=True)
class MetricId:
    """One metric of the rounds: what `harness.results.records.metric_key` names,
    with its unit and better direction."""

    suite: str
    case: str
    flow_direction: str
    metric: str
    unit: str
    direction: Direction

    @property
    def key(self) -> str:
        return metric_key(self.suite, self.case, self.flow_direction, self.metric)

    @property
    def short(self) -> str:
        """``case[/flow_direction] metric``, as progress lines name it."""
        tag = f"/{self.flow_direction}" if self.flow_direction else ""
        return f"{self.case}{tag} {self.metric}"


@dataclass(frozen=True)
class MetricRounds:
    metric: MetricId
    rounds: tuple[Round, ...]
    """Every round measured, also those after the decision."""
    decision: Decision
    """The first decision that was not UNKNOWN; else the latest look."""

    @property
    def label(self) -> str:
        """regressed, improved, same or unknown."""
        d = self.decision
        return str(d.verdict) if d.outcome is Outcome.DIFFERENT else str(d.outcome)


class Stop(StrEnum):
    """Why the rounds ended."""

    DECIDED = "decided"
    """Every metric decided."""
    CAP = "cap"
    """``max_rounds`` run; some metric is still unknown."""
    FAILED = "failed"
    """A test failed or errored in the last round (the lab broke, zero throughput...)."""
    INTERRUPTED = "interrupted"
    """Ctrl-C or SIGTERM: what was measured so far."""
    NOTHING = "nothing"
    """The first round measured no metric the settings name."""


@dataclass(frozen=True)
class Side:
    """One build of the comparison: its label and what runs it."""

    build: str
    program: str | None = None
    """The tunnel ends' program; None: the lab's own (or the driver's default)."""
    impl: str | None = None
    """The implementation, when the build swaps it; None: the lab's."""

    def __str__(self) -> str:
        what = " ".join(x for x in (self.impl, self.program) if x) or "the lab's implementation"
        return f"{self.build} ({what})"


@dataclass(frozen=True)
class RoundsSettings:
    max_rounds: int = DEFAULT_MAX_ROUNDS
    alpha: float = DEFAULT_ALPHA
    """Two-sided, over all looks (see `harness.results.sequential`)."""
    min_effect: float = DEFAULT_MIN_EFFECT
    min_effects: dict[str, float] = field(default_factory=dict)
    """Per metric name, instead of ``min_effect`` (a thresholds file)."""
    same_error: float = DEFAULT_SAME_ERROR
    metrics: tuple[str, ...] = ("receiver_bps",)
    """The metric names decided (every case and flow direction measuring one)."""

    def effect_for(self, metric: str) -> float:
        return self.min_effects.get(metric, self.min_effect)


@dataclass(frozen=True)
class RoundsReport:
    baseline: Side
    """A, the build compared against."""
    candidate: Side
    """B, the build judged."""
    settings: RoundsSettings
    rounds: int = 0
    """Rounds run."""
    metrics: tuple[MetricRounds, ...] = ()
    stop: Stop | None = None
    """None while rounds go on."""
    note: str = ""
    """Why the rounds stopped, when not because of the decisions."""

    @property
    def decided(self) -> list[MetricRounds]:
        return [m for m in self.metrics if m.decision.outcome.decided]

    @property
    def undecided(self) -> list[MetricRounds]:
        return [m for m in self.metrics if not m.decision.outcome.decided]

    @property
    def regressions(self) -> list[MetricRounds]:
        return [m for m in self.metrics if m.decision.verdict is Verdict.REGRESSED]

    def verdicts(self) -> dict[Verdict, int]:
        """How many metrics ended with each verdict."""
        counts: dict[Verdict, int] = defaultdict(int)
        for m in self.metrics:
            counts[m.decision.verdict] += 1
        return dict(counts)


def round_repetitions(round_number: int) -> tuple[int, int]:
    """The repetitions of round ``round_number`` (from 1) in its run."""
    return 2 * round_number - 1, 2 * round_number


def round_samples(
    measurements: Iterable[Measurement],
    round_number: int,
    baseline: str,
    candidate: str,
    metrics: Sequence[str],
) -> dict[MetricId, Round]:
    """The samples of round ``round_number``: per metric named in ``metrics`` (and
    with a better direction), the values of the build labelled ``baseline`` (A)
    and of ``candidate`` (B). A metric missing either side is left out."""
    reps = round_repetitions(round_number)
    values: dict[MetricId, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for m in measurements:
        if m.repetition not in reps or m.metric not in metrics or m.direction is Direction.NONE:
            continue
        if m.build in (baseline, candidate):
            mid = MetricId(m.suite, m.case, m.flow_direction, m.metric, m.unit, m.direction)
            values[mid][m.build].append(m.value)
    return {
        mid: Round(tuple(sides[baseline]), tuple(sides[candidate]))
        for mid, sides in values.items()
        if sides[baseline] and sides[candidate]
    }


def exit_status(report: RoundsReport | None, run_status: RunStatus) -> int:
    """The exit status of a run of rounds that ended with ``run_status`` (see the top)."""
    if run_status == RunStatus.INTERRUPTED:
        return EXIT_INTERRUPTED
    if run_status.infrastructure or report is None:
        return EXIT_INFRA
    if report.regressions or run_status == RunStatus.FAILED:
        return EXIT_FAILED
    if report.stop is Stop.NOTHING:
        return EXIT_USAGE
    return EXIT_OK
