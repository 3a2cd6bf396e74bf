"""`wgharness report`'s output: a lab's history across builds as Markdown (a
series per fingerprint, named ``runner@hash``), and as HTML pages: the history
page with a trend per metric and case, and a page per run
(`harness.results.render.history_page`)."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from pathlib import Path

from harness.codec import from_json
from harness.results.changes import Point, Series, change_points
from harness.results.compare import Settings
from harness.results.fingerprint import fingerprint
from harness.results.history import Step, history
from harness.results.records import THROUGHPUT_UNIT, Direction, RunDetails, RunStatus
from harness.results.render.history_page import write_pages
from harness.results.render.summary import table
from harness.results.rounds import ROUNDS_ARTIFACT, RoundsReport
from harness.results.store import Store


def _value(v: float, unit: str) -> str:
    return f"{v / 1e6:,.1f} Mbit/s" if unit == THROUGHPUT_UNIT else f"{v:.3g} {unit}"


def _marks(s: Step) -> str:
    marks = ["<- change point"] if s.verdict and s.verdict.change_point else []
    marks += ["(a run measured beside another)"] if s.contended else []
    return " ".join(marks)


def render_markdown(lab: str, steps: list[Step]) -> str:
    rows = [
        [s.series, s.key, s.build, str(s.n), _value(s.median, s.unit),
         "" if not s.verdict else f"{s.change:+.1%}", s.verdict or "-", _marks(s)]
        for s in steps
    ]  # fmt: skip
    headers = ["series", "metric", "build", "n", "median", "vs previous", "verdict", ""]
    body = table(headers, rows) if rows else "(no runs)"
    points = [s for s in steps if s.verdict and s.verdict.change_point]
    tail = (
        "\n".join(
            f"- {s.key}: {s.verdict} at build {s.build} ({s.change:+.1%}) on {s.series}" for s in points
        )
        or "- none"
    )
    beside = sorted({run for s in steps for run in s.contended})
    note = (
        "\nMeasured while another run measured on the same machine (figures may be low): "
        + ", ".join(beside)
        + "\n"
        if beside
        else ""
    )
    return f"# History of lab {lab}\n\n```\n{body}\n```\n\nChange points:\n{tail}\n{note}"


def series_of(lab: str, details: list[RunDetails], metrics: tuple[str, ...]) -> list[Series]:
    """The series of ``metrics`` over runs ``details`` (oldest first): per fingerprint
    and measurement key, a point per build in the order the builds first appear
    (a measurement's own build label first: a run of rounds measured two).
    Stands in for the store's series of `harness.results.changes` until they meet."""
    points: dict[tuple[str, str], dict[str, tuple[list[str], list[float]]]] = defaultdict(dict)
    meta: dict[str, tuple[str, str, Direction]] = {}
    for d in details:
        label = fingerprint(d).label
        for m in d.measurements:
            if m.metric not in metrics:
                continue
            build = m.build or d.run.build or f"run {d.run.id}"
            run_ids, samples = points[label, m.key].setdefault(build, ([], []))
            if d.run.id not in run_ids:
                run_ids.append(d.run.id)
            samples.append(m.value)
            meta[m.key] = (m.metric, m.unit, m.direction)
    return [
        Series(
            lab,
            key,
            *meta[key],
            label,
            tuple(Point(b, tuple(ids), tuple(vs)) for b, (ids, vs) in builds.items()),
        )
        for (label, key), builds in sorted(points.items())
    ]


def write_report(
    store: Store, lab: str, metrics: tuple[str, ...], out: Path, settings: Settings | None = None
) -> str:
    """``history.md``, ``history.html`` and ``runs/RUN_ID.html`` into ``out``; the Markdown."""
    steps, _, measured = history(store, lab, metrics, settings)
    md = render_markdown(lab, steps)
    out.mkdir(parents=True, exist_ok=True)
    (out / "history.md").write_text(md)
    loaded = {d.run.id: d for d in measured}
    every = [loaded.get(r.id) or store.get_run(r.id) for r in store.runs_of_lab(lab, tuple(RunStatus))]
    rounds = {}
    for d in every:
        if ROUNDS_ARTIFACT in d.artifacts:
            # a report of an older shape is left out: the run's page shows its status alone
            with contextlib.suppress(ValueError):
                rounds[d.run.id] = from_json(store.get_artifact(d.run.id, ROUNDS_ARTIFACT), RoundsReport)
    series = series_of(lab, measured, metrics)
    try:
        found = [cp for s in series for cp in change_points(s)]
    except NotImplementedError:  # the detection is being written (issue 21)
        found = []
    write_pages(out, lab, every, series, found, rounds)
    return md
