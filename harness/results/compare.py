"""Did the candidate get slower than the baseline? Direction-aware verdicts
with significance, effect size and honesty about what cannot be told.

Verdicts per metric (suite, case, flow direction, metric):
  improved / regressed  significant (Mann–Whitney U, p < alpha) AND the median
                        moved by at least the metric's minimum effect
  unchanged             not significant and the confidence interval of the
                        change lies inside ± the minimum effect, or significant
                        but smaller than the minimum effect
  inconclusive          too few samples to ever reach significance, or the
                        interval is too wide to rule out a change
  failed                the candidate measured zero throughput (a metric of kind
                        `MetricKind.THROUGHPUT`)
  missing               the baseline has it, the candidate does not
A failed candidate run is a failure; a run that broke on infrastructure
(status error, aborted, interrupted) is kept apart and never called a regression.
Runs whose fingerprints differ (`harness.results.fingerprint`) are refused unless
``allow_mismatch``.
A run that measured while another run measured on the same machine is compared
as it is, and flagged: its figures may be low.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from harness.errors import EXIT_FAILED, EXIT_INFRA, EXIT_OK, LabError, UsageError
from harness.results.fingerprint import differences, fingerprint
from harness.results.records import (
    Direction,
    Measurement,
    MetricKind,
    RunStatus,
    RunSummary,
    Verdict,
    metric_key,
)
from harness.results.stats import (
    Summary,
    bootstrap_change_ci,
    mann_whitney_p,
    min_samples_for,
    relative_change,
    summarize,
)
from harness.results.store import Store
from harness.validate import parse_toml, read_text

DEFAULT_METRICS = ("receiver_bps",)


@dataclass(frozen=True)
class Selector:
    text: str
    kind: str
    """'latest', 'build', 'range' or 'ids'."""
    values: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None


def _when(text: str, what: str) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"selector {what}: {text!r} is not an ISO date or time (2026-11-24T12:00)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_selector(text: str) -> Selector:
    """``latest``, ``latest~N`` (N runs before it), ``build:LABEL``, ``range:START..END`` (ISO times, either may be
    empty) or run ids / unique prefixes separated by commas."""
    if text == "latest":
        return Selector(text, "latest", ("0",))
    if text.startswith("latest~"):
        back = text[len("latest~") :]
        if not back.isdigit():
            raise UsageError(f"selector {text!r}: expected latest~N (N runs before the latest)")
        return Selector(text, "latest", (back,))
    if text.startswith("build:"):
        label = text[len("build:") :]
        if not label:
            raise UsageError("selector build: needs a label (build:LABEL)")
        return Selector(text, "build", (label,))
    if text.startswith("range:"):
        start, sep, end = text[len("range:") :].partition("..")
        if not sep:
            raise UsageError(f"selector {text!r}: expected range:START..END")
        return Selector(text, "range", start=_when(start, text), end=_when(end, text))
    ids = tuple(p.strip() for p in text.split(",") if p.strip())
    if not ids or any(not all(c in "0123456789abcdef" for c in p.lower()) for p in ids):
        raise UsageError(
            f"selector {text!r}: expected latest, build:LABEL, range:START..END or run ids (hex, comma-separated)"
        )
    return Selector(text, "ids", ids)


@dataclass(frozen=True)
class Settings:
    alpha: float = 0.05
    default_min_effect: float = 0.05
    min_effect: dict[str, float] = field(default_factory=dict)
    metrics: tuple[str, ...] = DEFAULT_METRICS
    suite: str | None = None
    impl: str | None = None
    host: str | None = None
    allow_mismatch: bool = False

    def effect_for(self, metric: str) -> float:
        return self.min_effect.get(metric, self.default_min_effect)


def load_thresholds(path: str) -> tuple[float, dict[str, float]]:
    """A TOML file: ``default = 0.05`` and ``[metrics]`` with ``NAME = fraction``."""
    data = parse_toml(read_text(path), path)
    for key in data:
        if key not in ("default", "metrics"):
            raise LabError(path, key, "unknown field (expected one of: default, metrics)")
    default = data.get("default", 0.05)
    per = data.get("metrics", {})
    if not isinstance(per, dict):
        raise LabError(path, "metrics", "must be a table of metric = fraction")
    for key, value in [("default", default), *((f"metrics.{k}", v) for k, v in per.items())]:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 10:
            raise LabError(path, key, f"must be a fraction such as 0.05 (5%), got {value!r}")
    return float(default), {k: float(v) for k, v in per.items()}


@dataclass(frozen=True)
class MetricComparison:
    suite: str
    case: str
    flow_direction: str
    metric: str
    unit: str
    direction: Direction
    base: Summary
    cand: Summary
    change: float
    ci: tuple[float, float]
    p: float
    min_effect: float
    verdict: Verdict
    reason: str

    @property
    def key(self) -> str:
        return metric_key(self.suite, self.case, self.flow_direction, self.metric)


@dataclass(frozen=True)
class Comparison:
    baseline: Selector
    candidate: Selector
    base_runs: list[RunSummary]
    cand_runs: list[RunSummary]
    rows: list[MetricComparison]
    infra: list[str]
    """Runs left out because infrastructure failed, one line each."""
    failed_runs: list[str]
    """Candidate runs whose tests failed, one line each."""
    mismatches: list[str]
    """Fingerprint fields that differ between the sides (`harness.results.fingerprint.differences`)."""
    contended: list[str] = field(default_factory=list)
    """Compared runs that measured while another run measured on the same machine, one line each."""

    @property
    def regressions(self) -> list[MetricComparison]:
        return [r for r in self.rows if r.verdict.failing]

    def exit_status(self) -> int:
        if not self.base_runs or not self.cand_runs:
            return EXIT_INFRA
        if self.regressions or self.failed_runs:
            return EXIT_FAILED
        return EXIT_OK


def judge(
    base: Sequence[float],
    cand: Sequence[float],
    direction: Direction,
    unit: str,
    min_effect: float,
    alpha: float,
) -> tuple[Verdict, str, float, tuple[float, float], float]:
    """(verdict, reason, change, ci, p) for two samples of one metric stored with ``unit``
    and ``direction`` (which give its `MetricKind`)."""
    b, c = summarize(base), summarize(cand)
    if not cand:
        return Verdict.MISSING, "the candidate has no value", math.nan, (math.nan, math.nan), 1.0
    if MetricKind.of(unit, direction) == MetricKind.THROUGHPUT and min(cand) <= 0:
        return Verdict.FAILED, "zero throughput in the candidate", -1.0, (math.nan, math.nan), 1.0
    change = relative_change(b.median, c.median)
    ci = bootstrap_change_ci(base, cand)
    p = mann_whitney_p(base, cand)
    need = min_samples_for(alpha)
    better = change if direction == Direction.HIGHER else -change
    if len(base) < need or len(cand) < need:
        return (
            Verdict.INCONCLUSIVE,
            f"{len(base)} vs {len(cand)} samples: p < {alpha:g} needs at least {need} a side",
            change,
            ci,
            p,
        )
    if p < alpha and abs(change) >= min_effect:
        verdict = Verdict.IMPROVED if better > 0 else Verdict.REGRESSED
        return verdict, f"p={p:.3g}, moved {abs(change):.1%} >= {min_effect:.0%}", change, ci, p
    if p < alpha:
        return Verdict.UNCHANGED, f"significant but {abs(change):.1%} < {min_effect:.0%}", change, ci, p
    if -min_effect < ci[0] and ci[1] < min_effect:
        return Verdict.UNCHANGED, f"p={p:.3g}; the interval lies within ±{min_effect:.0%}", change, ci, p
    return (
        Verdict.INCONCLUSIVE,
        f"p={p:.3g}, but the interval reaches past ±{min_effect:.0%}: repeat more",
        change,
        ci,
        p,
    )


def select_runs(store: Store, selector: Selector, settings: Settings) -> list[RunSummary]:
    runs = store.list_runs(limit=100_000)
    if selector.kind == "latest":
        back = int(selector.values[0])
        chosen = runs[back : back + 1]
    elif selector.kind == "build":
        label = selector.values[0]
        chosen = [r for r in runs if r.build == label or label in store.measured_builds(r.id)]
    elif selector.kind == "range":
        chosen = [
            r
            for r in runs
            if (selector.start is None or r.started_at >= selector.start)
            and (selector.end is None or r.started_at <= selector.end)
        ]
    else:
        wanted = {store.resolve(v) for v in selector.values}
        chosen = [r for r in runs if r.id in wanted]
    if settings.impl:
        chosen = [r for r in chosen if _runs_impl(r, settings)]
    return chosen


def _runs_impl(run: RunSummary, settings: Settings) -> bool:
    """Whether a host of ``run`` (``settings.host``'s, when given) ran ``settings.impl``."""
    return any(
        i.impl == settings.impl and (settings.host is None or i.host == settings.host) for i in run.impls
    )


def _values(
    store: Store, runs: Sequence[RunSummary], settings: Settings, selector: Selector
) -> dict[tuple[str, ...], list[Measurement]]:
    groups: dict[tuple[str, ...], list[Measurement]] = defaultdict(list)
    # A build selector takes, from a run that interleaved variants, only that build's values.
    label = selector.values[0] if selector.kind == "build" else None
    for run in runs:
        for m in store.get_run(run.id).measurements:
            if m.metric not in settings.metrics or (settings.suite and m.suite != settings.suite):
                continue
            if label is not None and (m.build or run.build) != label:
                continue
            groups[m.suite, m.case, m.flow_direction, m.metric].append(m)
    return groups


def compare(store: Store, baseline: Selector, candidate: Selector, settings: Settings) -> Comparison:
    base_all = select_runs(store, baseline, settings)
    cand_all = select_runs(store, candidate, settings)
    infra = [
        f"{side} run {r.id} ({r.status}): {r.error or 'no error recorded'}"
        for side, runs in (("baseline", base_all), ("candidate", cand_all))
        for r in runs
        if r.status.infrastructure
    ]
    base_runs = [r for r in base_all if not r.status.infrastructure]
    cand_runs = [r for r in cand_all if not r.status.infrastructure]
    failed_runs = [
        f"candidate run {r.id}: {r.error or 'a test failed'}"
        for r in cand_runs
        if r.status == RunStatus.FAILED
    ]
    mismatches = []
    if base_runs and cand_runs:
        mismatches = differences(
            (fingerprint(store.get_run(r.id)) for r in base_runs),
            (fingerprint(store.get_run(r.id)) for r in cand_runs),
        )
        if mismatches and not settings.allow_mismatch:
            raise UsageError(
                "runs differ in their fingerprints (baseline vs candidate: "
                + "; ".join(mismatches)
                + "): pass --allow-mismatch to compare anyway"
            )
    base_values = _values(store, base_runs, settings, baseline)
    cand_values = _values(store, cand_runs, settings, candidate)
    rows = []
    for key in sorted(set(base_values) | set(cand_values)):
        ms = base_values.get(key) or cand_values[key]
        suite, case, tag, metric = key
        b = [m.value for m in base_values.get(key, [])]
        c = [m.value for m in cand_values.get(key, [])]
        if not b:
            continue  # new in the candidate: nothing to compare against
        effect = settings.effect_for(metric)
        verdict, reason, change, ci, p = judge(b, c, ms[0].direction, ms[0].unit, effect, settings.alpha)
        rows.append(
            MetricComparison(
                suite,
                case,
                tag,
                metric,
                ms[0].unit,
                ms[0].direction,
                summarize(b),
                summarize(c),
                change,
                ci,
                p,
                effect,
                verdict,
                reason,
            )  # fmt: skip
        )
    contended = [
        f"{side} run {r.id}: {warning}"
        for side, runs in (("baseline", base_runs), ("candidate", cand_runs))
        for r in runs
        if r.overlap is not None and (warning := r.overlap.warning())
    ]
    return Comparison(
        baseline, candidate, base_runs, cand_runs, rows, infra, failed_runs, mismatches, contended
    )
