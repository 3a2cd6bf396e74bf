"""`wgharness report`: each metric's history across builds, with change points.

Runs of one lab are grouped by build label (runs without one stand alone), in
the order the builds first appear. Between consecutive builds the samples are
compared with the same `judge` as `wgharness compare`; where it says improved
or regressed, that step is a change point.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from harness.compare import judge
from harness.report_html import trend_plot, trend_points
from harness.stats import summarize
from harness.store import RunDetails, RunSummary, Store
from harness.summary import table


@dataclass(frozen=True)
class Step:
    key: str
    build: str
    n: int
    median: float
    unit: str
    verdict: str
    """'' for the first build, else the verdict against the build before."""
    change: float


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
    store: Store, lab: str, metrics: tuple[str, ...], limit: int = 500
) -> tuple[list[Step], list[RunSummary], list[RunDetails]]:
    runs = [r for r in store.list_runs(limit=limit) if r.lab_name == lab and r.status in ("passed", "failed")]
    details = {r.id: store.get_run(r.id) for r in runs}
    steps: list[Step] = []
    previous: dict[str, tuple[list[float], str]] = {}
    for build, group in _group(runs):
        samples: dict[str, list[float]] = defaultdict(list)
        meta: dict[str, tuple[str, str]] = {}
        for run in group:
            for m in details[run.id].measurements:
                if m.metric in metrics:
                    key = (
                        f"{m.suite}/{m.case}"
                        + (f"/{m.flow_direction}" if m.flow_direction else "")
                        + f"/{m.metric}"
                    )
                    samples[key].append(m.value)
                    meta[key] = (m.unit, m.direction)
        for key in sorted(samples):
            unit, direction = meta[key]
            verdict, change = "", float("nan")
            if key in previous:
                verdict, _, change, _, _ = judge(previous[key][0], samples[key], direction, unit, 0.05, 0.05)
            s = summarize(samples[key])
            steps.append(Step(key, build, s.n, s.median, unit, verdict, change))
            previous[key] = (samples[key], build)
    ordered = sorted(runs, key=lambda r: r.started_at)
    return steps, ordered, [details[r.id] for r in ordered]


def _value(v: float, unit: str) -> str:
    return f"{v / 1e6:,.1f} Mbit/s" if unit == "bit/s" else f"{v:.3g} {unit}"


def render_markdown(lab: str, steps: list[Step]) -> str:
    rows = [
        [s.key, s.build, str(s.n), _value(s.median, s.unit), "" if not s.verdict else f"{s.change:+.1%}",
         s.verdict or "-", "<- change point" if s.verdict in ("improved", "regressed") else ""]
        for s in steps
    ]  # fmt: skip
    body = (
        table(["metric", "build", "n", "median", "vs previous", "verdict", ""], rows) if rows else "(no runs)"
    )
    points = [s for s in steps if s.verdict in ("improved", "regressed")]
    tail = (
        "\n".join(f"- {s.key}: {s.verdict} at build {s.build} ({s.change:+.1%})" for s in points) or "- none"
    )
    return f"# History of lab {lab}\n\n```\n{body}\n```\n\nChange points:\n{tail}\n"


def write_report(store: Store, lab: str, metrics: tuple[str, ...], out: Path) -> str:
    import html

    steps, runs, details = history(store, lab, metrics)
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
