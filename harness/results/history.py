"""`wgharness report`: each metric's history across builds, with change points.

Runs of one lab are split into series by fingerprint (`harness.results.fingerprint`:
runs on another runner, kernel, congestion control... are another series, named
``runner@hash``), and within a series grouped by build label (runs without one
stand alone), in the order the builds first appear. Between consecutive builds
of a series the samples are compared with the same `judge` as `wgharness
compare`; where it says improved or regressed, that step is a change point.
A step names the runs of its build that measured while another run measured on
the same machine.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

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


def _group(runs: list[RunSummary], series: dict[str, str]) -> list[tuple[str, str, list[RunSummary]]]:
    """(series, build, runs), in the order they first appear; ``series``: run id -> label."""
    groups: dict[tuple[str, str], list[RunSummary]] = defaultdict(list)
    for run in sorted(runs, key=lambda r: r.started_at):
        groups[series[run.id], run.build or f"run {run.id}"].append(run)
    return [(label, build, group) for (label, build), group in groups.items()]


def history(
    store: Store, lab: str, metrics: tuple[str, ...], settings: Settings | None = None, limit: int = 500
) -> tuple[list[Step], list[RunSummary], list[RunDetails]]:
    """Each metric's steps across the builds of ``lab``'s runs, oldest first, each
    judged against the build before in its series with ``settings``' significance
    level and minimum effects (`compare`'s defaults when None); and the runs with
    their details."""
    settings = settings or Settings()
    runs = store.runs_of_lab(lab, limit=limit)
    details = {r.id: store.get_run(r.id) for r in runs}
    series = {run_id: fingerprint(d).label for run_id, d in details.items()}
    steps: list[Step] = []
    previous: dict[tuple[str, str], list[float]] = {}
    for label, build, group in _group(runs, series):
        contended = tuple(r.id for r in group if r.overlap is not None and not r.overlap.alone)
        samples: dict[str, list[float]] = defaultdict(list)
        meta: dict[str, tuple[str, Direction, str]] = {}
        for run in group:
            for m in details[run.id].measurements:
                if m.metric in metrics:
                    key = m.key
                    samples[key].append(m.value)
                    meta[key] = (m.unit, m.direction, m.metric)
        for key in sorted(samples):
            unit, direction, metric = meta[key]
            verdict: Verdict | Literal[""] = ""
            change = float("nan")
            if (label, key) in previous:
                verdict, _, change, _, _ = judge(
                    previous[label, key],
                    samples[key],
                    direction,
                    unit,
                    settings.effect_for(metric),
                    settings.alpha,
                )
            s = summarize(samples[key])
            steps.append(
                Step(key, build, s.n, s.median, unit, verdict, change, series=label, contended=contended)
            )
            previous[label, key] = samples[key]
    ordered = sorted(runs, key=lambda r: r.started_at)
    return steps, ordered, [details[r.id] for r in ordered]
