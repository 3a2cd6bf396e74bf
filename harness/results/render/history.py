"""`wgharness report`'s output: a lab's history across builds as Markdown (a
series per fingerprint, named ``runner@hash``, its change points from
`harness.results.changes`), as JSON, and as HTML pages: the history page with a
trend per metric and case, and a page per run
(`harness.results.render.history_page`)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

from harness.codec import encode, from_json
from harness.results.changes import ChangePoint
from harness.results.compare import Settings
from harness.results.history import LabHistory, Step, lab_history
from harness.results.records import THROUGHPUT_UNIT, RunStatus
from harness.results.render.changes import render_json, sentence
from harness.results.render.history_page import write_pages
from harness.results.render.summary import table
from harness.results.rounds import ROUNDS_ARTIFACT, RoundsReport
from harness.results.store import Store


def _value(v: float, unit: str) -> str:
    return f"{v / 1e6:,.1f} Mbit/s" if unit == THROUGHPUT_UNIT else f"{v:.3g} {unit}"


def _marks(s: Step, firsts: set[tuple[str, str, str]]) -> str:
    marks = ["<- change point"] if (s.series, s.key, s.build) in firsts else []
    marks += ["(a run measured beside another)"] if s.contended else []
    return " ".join(marks)


def render_markdown(lab: str, steps: Sequence[Step], changes: Sequence[ChangePoint] | None = None) -> str:
    """The steps as a table (each against the build before: a column, not a change
    point), the builds that begin a change point marked, then the change points
    (``changes`` None: the steps alone, no section of change points)."""
    firsts = {(cp.series.fingerprint, cp.series.key, cp.first_bad.label) for cp in changes or ()}
    rows = [
        [s.series, s.key, s.build, str(s.n), _value(s.median, s.unit),
         "" if not s.verdict else f"{s.change:+.1%}", s.verdict or "-", _marks(s, firsts)]
        for s in steps
    ]  # fmt: skip
    headers = ["series", "metric", "build", "n", "median", "vs previous", "verdict vs previous", ""]
    body = table(headers, rows) if rows else "(no runs)"
    listed = "\n".join(f"- {sentence(cp)}" for cp in changes or ()) or "- none"
    tail = "" if changes is None else f"\nChange points (`wgharness changes`):\n{listed}\n"
    beside = sorted({run for s in steps for run in s.contended})
    note = (
        "\nMeasured while another run measured on the same machine (figures may be low): "
        + ", ".join(beside)
        + "\n"
        if beside
        else ""
    )
    return f"# History of lab {lab}\n\n```\n{body}\n```\n{tail}{note}"


def history_json(h: LabHistory) -> str:
    """The history as JSON: the series with every sample, the change points, the steps."""
    return render_json(h.lab, h.series, h.changes, steps=[encode(s) for s in h.steps])


def write_report(
    store: Store, lab: str, metrics: tuple[str, ...], out: Path, settings: Settings | None = None
) -> str:
    """``history.md``, ``history.json``, ``history.html`` and ``runs/RUN_ID.html``
    into ``out``; the Markdown."""
    h = lab_history(store, lab, metrics, settings)
    md = render_markdown(lab, h.steps, h.changes)
    out.mkdir(parents=True, exist_ok=True)
    (out / "history.md").write_text(md)
    (out / "history.json").write_text(history_json(h))
    loaded = {d.run.id: d for d in h.details}
    every = [loaded.get(r.id) or store.get_run(r.id) for r in store.runs_of_lab(lab, tuple(RunStatus))]
    rounds = {}
    for d in every:
        if ROUNDS_ARTIFACT in d.artifacts:
            # a report of an older shape is left out: the run's page shows its status alone
            with contextlib.suppress(ValueError):
                rounds[d.run.id] = from_json(store.get_artifact(d.run.id, ROUNDS_ARTIFACT), RoundsReport)
    write_pages(out, lab, every, list(h.series), list(h.changes), rounds)
    return md
