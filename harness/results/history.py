"""Each metric's history across builds, read from the store: the series that
`wgharness changes` finds change points in, and the steps `wgharness report` shows.

The rules:

* The runs: those of one lab with measurements to trust (passed or failed), the
  newest ``limit`` of them.
* A series is one metric key (suite/case[/flow direction]/metric) on one
  fingerprint (`harness.results.fingerprint`: runs on another runner, kernel,
  congestion control... are another series, named ``runner@hash``).
* Its points are builds: a measurement belongs to its own build label when a run
  interleaves variants, else to its run's; a run without a build label is a
  point of its own (``run ID``). Points are in the order they first appear, by
  the runs' start times; a build label measured again later adds its samples to
  its first point. Values that are not finite are left out.
* Change points are `harness.results.changes`' (`change_points` of each series).
  Beside them, `history` judges each build against the one before it in its
  series with the same `judge` as `wgharness compare`: a column of the report, a
  single comparison, not a change point.
* A step names the runs of its build that measured while another run measured
  on the same machine.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from harness.results.changes import ChangePoint, Point, Series, change_points
from harness.results.compare import Settings, judge
from harness.results.fingerprint import fingerprint
from harness.results.records import Direction, RunDetails, RunSummary, Verdict
from harness.results.stats import summarize
from harness.results.store import Store


@dataclass(frozen=True)
class Step:
    key: str
    build: str
    n: int
    median: float
    unit: str
    verdict: Verdict | Literal[""]
    """'' for the first build, else the verdict against the build before."""
    change: float
    series: str = ""
    """The fingerprint's label, ``runner@hash``: steps are judged within their series."""
    contended: tuple[str, ...] = ()
    """Runs of this build that measured while another run measured on the same machine."""


def series_from(runs: Sequence[RunSummary], details: Sequence[RunDetails], lab: str,
                metrics: Sequence[str]) -> list[Series]:  # fmt: skip
    """The series of the metrics named ``metrics`` in ``runs`` (with their ``details``,
    in the same order) of lab ``lab``, by the module's rules; sorted by fingerprint and key."""
    by_id = {d.run.id: d for d in details}
    samples: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    run_ids: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    about: dict[tuple[str, str], tuple[str, str, Direction]] = {}
    for run in sorted(runs, key=lambda r: r.started_at):
        d = by_id[run.id]
        label = fingerprint(d).label
        for m in d.measurements:
            if m.metric not in metrics or not math.isfinite(m.value):
                continue
            name = (label, m.key)
            build = m.build or run.build or f"run {run.id}"
            samples[name][build].append(m.value)
            if run.id not in run_ids[name][build]:
                run_ids[name][build].append(run.id)
            about[name] = (m.metric, m.unit, m.direction)
    out = []
    for (label, key), points in sorted(samples.items()):
        metric, unit, direction = about[label, key]
        out.append(
            Series(lab, key, metric, unit, direction, label, tuple(
                Point(build, tuple(run_ids[label, key][build]), tuple(values))
                for build, values in points.items()
            ))
        )  # fmt: skip
    return out


def _read(store: Store, lab: str, limit: int) -> tuple[list[RunSummary], list[RunDetails]]:
    """``lab``'s newest ``limit`` runs to trust, oldest first, and their details."""
    runs = sorted(store.runs_of_lab(lab, limit=limit), key=lambda r: r.started_at)
    return runs, [store.get_run(r.id) for r in runs]


def series_of_lab(store: Store, lab: str, metrics: Sequence[str], limit: int = 500) -> list[Series]:
    """The series of the metrics named ``metrics`` over ``lab``'s newest ``limit`` runs."""
    return series_from(*_read(store, lab, limit), lab, metrics)


def changes_of(series: Sequence[Series]) -> list[ChangePoint]:
    """Every series' change points, series by series, oldest first within each."""
    return [cp for s in series for cp in change_points(s)]


def steps_of(series: Sequence[Series], runs: Sequence[RunSummary], settings: Settings) -> list[Step]:
    """Each point of each series as a step, judged against the point before it."""
    contended = {r.id for r in runs if r.overlap is not None and not r.overlap.alone}
    steps = []
    for s in series:
        previous: list[float] | None = None
        for point in s.points:
            verdict: Verdict | Literal[""] = ""
            change = math.nan
            if previous is not None:
                verdict, _, change, _, _ = judge(previous, list(point.samples), s.direction, s.unit,
                                                 settings.effect_for(s.metric), settings.alpha)  # fmt: skip
            summary = summarize(point.samples)
            beside = tuple(r for r in point.run_ids if r in contended)
            steps.append(Step(s.key, point.label, summary.n, summary.median, s.unit, verdict, change,
                              series=s.fingerprint, contended=beside))  # fmt: skip
            previous = list(point.samples)
    return steps


@dataclass(frozen=True)
class LabHistory:
    """A lab's history: its runs, their series, steps and change points."""

    lab: str
    runs: list[RunSummary]
    """Oldest first."""
    details: list[RunDetails]
    """Of ``runs``, in their order."""
    series: list[Series]
    steps: list[Step]
    changes: list[ChangePoint]
    """Every series' change points (`changes_of`)."""


def lab_history(
    store: Store, lab: str, metrics: Sequence[str], settings: Settings | None = None, limit: int = 500
) -> LabHistory:
    """The history of ``lab``'s newest ``limit`` runs to trust, for the metrics named
    ``metrics``: steps judged with ``settings``' significance level and minimum effects
    (`compare`'s defaults when None)."""
    runs, details = _read(store, lab, limit)
    series = series_from(runs, details, lab, metrics)
    steps = steps_of(series, runs, settings or Settings())
    return LabHistory(lab, runs, details, series, steps, changes_of(series))


def history(
    store: Store, lab: str, metrics: tuple[str, ...], settings: Settings | None = None, limit: int = 500
) -> tuple[list[Step], list[RunSummary], list[RunDetails]]:
    """`lab_history`'s steps, runs and details."""
    h = lab_history(store, lab, metrics, settings, limit)
    return h.steps, h.runs, h.details
