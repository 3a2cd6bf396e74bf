"""Bisection of an ordered range of builds, as rules and records: given the builds
(by index: 0 the good end, the last the bad end) and the verdicts measured so far,
what to measure next, or what is concluded. Pure: no I/O, no clock; the run layer
(`harness.run.bisect`) measures what `next_move` asks for, with adaptive paired
rounds, and feeds the verdicts back.

Rules:
* A step measures one build (the candidate, B) against one end (the baseline, A):
  the good end or the bad end. Its verdict (`StepLabel`) is that of adaptive
  rounds over every metric (`step_label`): regressed if a metric regressed, else
  unknown if one is unknown, else improved if one improved, else same; failed
  when the build could not be measured (its tests failed).
* A build's standing (`standing`) comes from its verdicts: against the good end,
  same or improved is GOOD, regressed BAD. Unknown against the good end asks the
  bad end: same or regressed there is BAD, improved GOOD, unknown UNKNOWN (a flaky
  middle). BAD against the good end but improved against the bad end is MIDDLE:
  slower than good and faster than bad, a second step in the range.
* The range is narrowed as ``git bisect`` does: the last GOOD build before the
  first BAD one (the bad end until a build says otherwise), and the build nearest
  the middle of what lies between is measured next. A build that failed to build
  or measure (SKIPPED) or stayed UNKNOWN is passed over, as ``git bisect skip``.
* When nothing is left between them: the first BAD build, if it is not the bad
  end, is measured once against the bad end (the same: one step holds the whole
  regression; improved: MIDDLE, ambiguous); if it is the bad end, the bad end is
  measured against the good end (regressed: it is the culprit; same or improved:
  no regression in range; unknown: ambiguous).
* Ambiguous, never a guess: a MIDDLE build (two steps), a build that is the same
  as both ends, a BAD build before a GOOD one (not monotonic), or skipped and
  unknown builds just before the first BAD one (the first bad is one of them).
* A culprit whose badness rests on the bad end (unknown against the good end, the
  same as the bad end) is named only once the bad end is measured regressed
  against the good end.
* Steps needed for one step at any place among n builds: at most
  ceil(log2(n - 1)) + 1.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from harness.codec import from_json
from harness.errors import EXIT_FAILED, EXIT_INFRA, EXIT_OK
from harness.results.rounds import MetricRounds, RoundsReport

BISECT_ARTIFACT = "bisect.json"
"""The artifact of a bisect's record (a run of lab ``bisect:LAB``): its `BisectReport` as JSON."""
PLAN_ARTIFACT = "bisect-plan.json"
"""The artifact holding a bisect's `BisectPlan`, stored when it begins."""
STEP_PREFIX = "bisect-step-"
STEP_ARTIFACT = STEP_PREFIX + "{:03d}.json"
"""A measured `Step`, stored with the bisect's record as soon as it is measured."""
LAB_PREFIX = "bisect:"
"""A bisect's record is stored as a run of lab ``bisect:`` + the lab's name."""


class Reference(StrEnum):
    """The end a build is measured against."""

    GOOD = "good"
    BAD = "bad"


class StepLabel(StrEnum):
    """A step's verdict on its candidate against its reference (the values of
    `harness.results.rounds.MetricRounds.label`, and failed)."""

    SAME = "same"
    IMPROVED = "improved"
    REGRESSED = "regressed"
    UNKNOWN = "unknown"
    FAILED = "failed"
    """The build could not be measured (a test failed): it is passed over."""


class Standing(StrEnum):
    """What a build is, from the verdicts measured on it."""

    UNMEASURED = "unmeasured"
    GOOD = "good"
    BAD = "bad"
    PENDING = "pending"
    """Measured against one end; the other must say."""
    UNKNOWN = "unknown"
    """Told from neither end: passed over."""
    SKIPPED = "skipped"
    """Failed to build, or to be measured: passed over."""
    MIDDLE = "middle"
    """Slower than the good end and faster than the bad end."""
    CONFLICT = "conflict"
    """The same as both ends: the ends cannot be told apart through it."""


class Finding(StrEnum):
    FIRST_BAD = "first bad"
    AMBIGUOUS = "ambiguous"
    NO_REGRESSION = "no regression in range"


@dataclass(frozen=True)
class Observation:
    """A verdict measured: ``build`` against ``reference``."""

    build: int
    reference: Reference
    label: StepLabel


@dataclass(frozen=True)
class Measure:
    """What to measure next: ``build`` against ``reference``."""

    build: int
    reference: Reference


@dataclass(frozen=True)
class Conclusion:
    finding: Finding
    reason: str
    first_bad: int | None = None
    last_good: int | None = None
    candidates: tuple[int, ...] = ()
    """Ambiguous: the builds the first bad one may be (empty: no single range)."""


def step_label(report: RoundsReport | None, measured: bool) -> StepLabel:
    """A step's verdict from its rounds (see the top); ``measured`` False: the
    rounds ended without a verdict on the build (a test failed)."""
    if report is None or not measured or not report.metrics:
        return StepLabel.FAILED
    labels = {m.label for m in report.metrics}
    for label in (StepLabel.REGRESSED, StepLabel.UNKNOWN, StepLabel.IMPROVED):
        if label in labels:
            return label
    return StepLabel.SAME


_BY_GOOD = {
    StepLabel.SAME: Standing.GOOD,
    StepLabel.IMPROVED: Standing.GOOD,
    StepLabel.REGRESSED: Standing.BAD,
    StepLabel.UNKNOWN: Standing.PENDING,
}
"""A build's standing from its verdict against the good end alone."""
_BOTH = {
    (StepLabel.SAME, StepLabel.SAME): Standing.CONFLICT,
    (StepLabel.IMPROVED, StepLabel.SAME): Standing.CONFLICT,
    (StepLabel.REGRESSED, StepLabel.IMPROVED): Standing.MIDDLE,
    (StepLabel.UNKNOWN, StepLabel.SAME): Standing.BAD,
    (StepLabel.UNKNOWN, StepLabel.REGRESSED): Standing.BAD,
    (StepLabel.UNKNOWN, StepLabel.IMPROVED): Standing.GOOD,
    (StepLabel.UNKNOWN, StepLabel.UNKNOWN): Standing.UNKNOWN,
}
"""Against both ends: what differs from the good end's verdict alone."""


def standing(vs_good: StepLabel | None, vs_bad: StepLabel | None) -> Standing:
    """A build's standing from its latest verdict against each end (None: not measured)."""
    if StepLabel.FAILED in (vs_good, vs_bad):
        return Standing.SKIPPED
    if vs_good is None:
        return Standing.UNMEASURED if vs_bad is None else Standing.PENDING
    if vs_bad is None:
        return _BY_GOOD[vs_good]
    return _BOTH.get((vs_good, vs_bad), _BY_GOOD[vs_good])


def verdicts(observations: Iterable[Observation]) -> dict[tuple[int, Reference], StepLabel]:
    """The latest verdict per build and reference."""
    return {(o.build, o.reference): o.label for o in observations}


def next_move(
    count: int, observations: Sequence[Observation], skipped: Collection[int] = (), names: Sequence[str] = ()
) -> Measure | Conclusion:
    """The next build to measure (and against which end), or the conclusion, for
    ``count`` builds (0 the good end, ``count - 1`` the bad end) given the verdicts
    measured so far and the builds ``skipped`` (failed to build); a conclusion's
    reason names build i ``names[i]`` (default: its index). ValueError on what
    cannot be: fewer than two builds, an end skipped, a build out of range."""

    def name(i: int) -> str:
        return f"build {names[i] if i < len(names) else i}"

    if count < 2:
        raise ValueError(f"a bisect needs a good and a bad build, got {count} build(s)")
    bad_end = count - 1
    if 0 in skipped or bad_end in skipped:
        raise ValueError("an end of the range cannot be skipped")
    for o in observations:
        if not 0 < o.build < count or (o.build == bad_end and o.reference is Reference.BAD):
            raise ValueError(f"build {o.build} cannot be measured against the {o.reference} end")
    seen = verdicts(observations)
    ranks = {
        i: Standing.SKIPPED
        if i in skipped
        else standing(seen.get((i, Reference.GOOD)), seen.get((i, Reference.BAD)))
        for i in range(1, bad_end)
    }
    for i, s in ranks.items():
        if s is Standing.MIDDLE:
            return Conclusion(
                Finding.AMBIGUOUS,
                f"{name(i)} is slower than the good end and faster than the bad end: more than one step in range",
            )
        if s is Standing.CONFLICT:
            return Conclusion(
                Finding.AMBIGUOUS,
                f"{name(i)} is the same as both ends: the ends cannot be told apart through it",
            )
        if s is Standing.PENDING:
            missing = Reference.BAD if (i, Reference.GOOD) in seen else Reference.GOOD
            return Measure(i, missing)
    goods = [0, *(i for i, s in ranks.items() if s is Standing.GOOD)]
    bads = [i for i, s in ranks.items() if s is Standing.BAD]
    if bads and bads[0] < goods[-1]:
        return Conclusion(
            Finding.AMBIGUOUS, f"{name(bads[0])} is bad and the later {name(goods[-1])} good: not monotonic"
        )
    lo, hi = goods[-1], bads[0] if bads else bad_end
    between = [i for i in range(lo + 1, hi) if ranks[i] is Standing.UNMEASURED]
    if between:
        middle = (lo + hi) / 2
        return Measure(min(between, key=lambda i: (abs(i - middle), i)), Reference.GOOD)
    passed_over = tuple(range(lo + 1, hi))  # skipped or unknown
    note = ""
    if hi < bad_end:
        vs_bad = seen.get((hi, Reference.BAD))
        if vs_bad is None:
            return Measure(hi, Reference.BAD)
        if vs_bad is StepLabel.UNKNOWN:
            note = " (whether it holds all of the regression is unknown)"
    if hi == bad_end or seen.get((hi, Reference.GOOD)) is not StepLabel.REGRESSED:
        # The culprit's badness rests on the bad end's: is the bad end slower than the good?
        end = seen.get((bad_end, Reference.GOOD))
        if end is None:
            return Measure(bad_end, Reference.GOOD)
        if end in (StepLabel.SAME, StepLabel.IMPROVED) and hi == bad_end:
            return Conclusion(
                Finding.NO_REGRESSION, f"the bad end is {end} against the good end", last_good=lo
            )
        if end is not StepLabel.REGRESSED:
            return Conclusion(
                Finding.AMBIGUOUS, f"the bad end against the good end: {end}", candidates=(*passed_over, hi)
            )
    if passed_over:
        told = ", ".join(name(i) for i in passed_over)
        return Conclusion(
            Finding.AMBIGUOUS,
            f"the first bad build is one of {told} or {name(hi)}: {told} could not be told (skipped or unknown)",
            last_good=lo,
            candidates=(*passed_over, hi),
        )
    return Conclusion(
        Finding.FIRST_BAD, f"{name(lo)} is good and {name(hi)} bad{note}", first_bad=hi, last_good=lo
    )


def steps_bound(count: int) -> int:
    """The most steps `next_move` asks for with one step among ``count`` builds and
    every verdict decided."""
    return math.ceil(math.log2(count - 1)) + 1 if count > 2 else 1


# -- records -----------------------------------------------------------------------


@dataclass(frozen=True)
class Build:
    """One build of the range."""

    label: str
    program: str | None = None
    """What the bisected tunnel ends run; None while not built (a commit not built yet)."""
    commit: str | None = None
    """The commit it was built from (a git range)."""
    problem: str | None = None
    """Why it could not be built (the build command failed): it is skipped."""


@dataclass(frozen=True)
class MetricEvidence:
    """One metric of a step: what its rounds measured and decided."""

    key: str
    unit: str
    label: str
    median_a: float
    """The reference's median over the rounds the decision used."""
    median_b: float
    change: float
    interval: tuple[float, float]
    rounds: int

    @classmethod
    def of(cls, m: MetricRounds) -> MetricEvidence:
        used = m.rounds[: m.decision.rounds] or m.rounds
        a = [v for r in used for v in r.a]
        b = [v for r in used for v in r.b]
        return cls(
            m.metric.key,
            m.metric.unit,
            m.label,
            statistics.median(a) if a else math.nan,
            statistics.median(b) if b else math.nan,
            m.decision.change,
            m.decision.interval,
            m.decision.rounds,
        )


@dataclass(frozen=True)
class Step:
    """A step measured: build ``candidate`` against the ``reference`` end."""

    number: int
    candidate: int
    reference: Reference
    baseline: int
    """The index of the reference's build (0, or the last)."""
    label: StepLabel
    run_id: str | None
    rounds: int
    metrics: tuple[MetricEvidence, ...] = ()
    note: str = ""
    reused_from: str | None = None
    """The bisect whose step this was, when a resumed bisect took it over."""

    @property
    def observation(self) -> Observation:
        return Observation(self.candidate, self.reference, self.label)


@dataclass(frozen=True)
class BisectPlan:
    """What a bisect is asked: same plan, same bisect (a resume may take its steps over)."""

    lab: str
    lab_sha256: str
    ends: tuple[str, ...]
    """The tunnel ends (hosts) that run the bisected builds."""
    builds: tuple[Build, ...]
    source: str
    """Where the builds come from: ``builds FILE`` or ``git DIR GOOD..BAD``."""
    settings_key: str
    """The rounds' settings and run options that change a verdict, as text."""

    def key(self) -> tuple[object, ...]:
        """What must match for a bisect to take another's steps over (a commit's
        program is not in its plan: the commit names it)."""
        return (
            self.lab_sha256,
            self.ends,
            tuple((b.label, b.program, b.commit) for b in self.builds),
            self.settings_key,
        )


@dataclass(frozen=True)
class BisectReport:
    plan: BisectPlan
    steps: tuple[Step, ...] = ()
    conclusion: Conclusion | None = None
    """None: not concluded (interrupted, broken)."""
    builds: tuple[Build, ...] = field(default=())
    """The builds as they ended (programs built, build problems); empty: the plan's."""
    note: str = ""
    """Why it stopped without a conclusion."""

    @property
    def skipped(self) -> frozenset[int]:
        return frozenset(i for i, b in enumerate(self.builds or self.plan.builds) if b.problem)


def stored_report(artifacts: Collection[str], read: Callable[[str], bytes]) -> BisectReport:
    """A bisect as its record stores it: the report once concluded, else its plan and
    the steps measured so far; ``read`` gives an artifact's bytes by name."""
    if BISECT_ARTIFACT in artifacts:
        return from_json(read(BISECT_ARTIFACT), BisectReport)
    plan = from_json(read(PLAN_ARTIFACT), BisectPlan)
    steps = tuple(from_json(read(a), Step) for a in sorted(artifacts) if a.startswith(STEP_PREFIX))
    return BisectReport(plan, steps)


EXIT_AMBIGUOUS = 4
"""A bisect that ended ambiguous (`exit_status`)."""


def exit_status(report: BisectReport) -> int:
    """0 no regression in range, 1 a first bad build found, 4 ambiguous; 3 not
    concluded (a step's run broke: infrastructure). Interrupted: the caller's 130."""
    c = report.conclusion
    if c is None:
        return EXIT_INFRA
    return {Finding.NO_REGRESSION: EXIT_OK, Finding.FIRST_BAD: EXIT_FAILED}.get(c.finding, EXIT_AMBIGUOUS)
