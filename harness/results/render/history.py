"""`wgharness report`'s output: a lab's history across builds as Markdown (a
series per fingerprint, named ``runner@hash``), and as an HTML page with a
trend plot per metric."""

from __future__ import annotations

import html
from pathlib import Path

from harness.results.compare import Settings
from harness.results.history import Step, history
from harness.results.records import THROUGHPUT_UNIT
from harness.results.render.html import trend_plot, trend_points
from harness.results.render.summary import table
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


def write_report(
    store: Store, lab: str, metrics: tuple[str, ...], out: Path, settings: Settings | None = None
) -> str:
    steps, runs, details = history(store, lab, metrics, settings)
    md = render_markdown(lab, steps)
    out.mkdir(parents=True, exist_ok=True)
    (out / "history.md").write_text(md)
    plots = "".join(
        f"<h2>{html.escape(m)}</h2>{svg}"
        for m in metrics
        if (svg := trend_plot(trend_points(runs, details, m), m))
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>history of {html.escape(lab)}</title></head>"
        f"<body style='font-family:sans-serif;max-width:70em;margin:2em auto'>"
        f"<pre>{html.escape(md)}</pre>{plots}</body></html>"
    )
    (out / "history.html").write_text(page)
    return md
