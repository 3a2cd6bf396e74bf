"""`wgharness report`: each metric's history across builds, with change points.

Runs of one lab are grouped by build label (runs without one stand alone), in
the order the builds first appear. Between consecutive builds the samples are
compared with the same `judge` as `wgharness compare`; where it says improved
or regressed, that step is a change point. A step names the runs of its build
that measured while another run measured on the same machine.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

from harness.results.compare import Settings, judge
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
    contended: tuple[str, ...] = ()
    """Runs of this build that measured while another run measured on the same machine."""


def _group(runs: list[RunSummary]) -> list[tuple[str, list[RunSummary]]]:
    order: list[str] = []
    groups: dict[str, list[RunSummary]] = defaultdict(list)
    for run in sorted(runs, key=lambda r: r.started_at):
        label = run.build or f"run {run.id}"
        if label not in groups:
            order.append(label)
        groups[label].append(run)
    return [(label, groups[label]) for label in order]


def history(
    store: Store, lab: str, metrics: tuple[str, ...], settings: Settings | None = None, limit: int = 500
) -> tuple[list[Step], list[RunSummary], list[RunDetails]]:
    """Each metric's steps across the builds of ``lab``'s runs, oldest first, each
    judged against the build before with ``settings``' significance level and
    minimum effects (`compare`'s defaults when None); and the runs with their details."""
    settings = settings or Settings()
    runs = store.runs_of_lab(lab, limit=limit)
    details = {r.id: store.get_run(r.id) for r in runs}
    steps: list[Step] = []
    previous: dict[str, tuple[list[float], str]] = {}
    for build, group in _group(runs):
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
            if key in previous:
                verdict, _, change, _, _ = judge(
                    previous[key][0],
                    samples[key],
                    direction,
                    unit,
                    settings.effect_for(metric),
                    settings.alpha,
                )
            s = summarize(samples[key])
            steps.append(Step(key, build, s.n, s.median, unit, verdict, change, contended))
            previous[key] = (samples[key], build)
    ordered = sorted(runs, key=lambda r: r.started_at)
    return steps, ordered, [details[r.id] for r in ordered]
