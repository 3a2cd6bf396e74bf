"""The HTML pages of `wgharness report --out`: ``history.html``, the page a team
opens every morning, and a page per run (``runs/RUN_ID.html``) it links to.
Self-contained and offline: the style is inline, the figures are inlined SVG.

The history page, top to bottom:

* the verdict of the latest run of the lab, in a banner coloured by outcome
  (`latest_verdict`): its adaptive rounds' verdict when it ran them, else its
  status and the change points new with it; with links to its run's page;
* a summary line: the latest build and its date, runs, builds and series,
  new change points and all of them;
* the change points, newest first, each with its last good and first bad
  build, the change with its interval, p, and links to the runs and the figure;
* a figure per series (metric and case, on one fingerprint; `trend.trend_svg`)
  with the series' runner and fingerprint, and its builds in a folded table;
* the series: each fingerprint's runner and fields;
* every run of the lab, newest first, linking to its page (runs that broke are
  listed and marked, and stay out of the figures).

The pages render what they are given and compute nothing but medians and
quartiles to print: the series and change points come from
`harness.results.changes`.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.results.changes import ChangePoint, Series
from harness.results.fingerprint import Fingerprint, fingerprint
from harness.results.records import RunDetails, RunStatus, RunSummary, Verdict
from harness.results.render.comparison import change_text, value_text
from harness.results.render.rounds import HEADERS as ROUNDS_HEADERS
from harness.results.render.rounds import head_lines
from harness.results.render.rounds import row_cells as rounds_cells
from harness.results.render.rounds import verdict_line as rounds_verdict
from harness.results.render.trend import short_label, trend_svg
from harness.results.rounds import RoundsReport
from harness.results.stats import summarize

HISTORY_PAGE = "history.html"
RUNS_FOLDER = "runs"

OK, WARN, BAD, NONE = "ok", "warn", "bad", "none"
"""A banner's tone: its colours are in the style sheet."""

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;max-width:78em;margin:1.5em auto;padding:0 1em}
h1{font-size:1.6em;margin:.2em 0 .4em}h2{font-size:1.25em;margin:1.6em 0 .5em;border-bottom:1px solid #ddd}
h3{font-size:1.05em;margin:1.2em 0 .3em}a{color:#0b57d0}code{font-size:92%}
.banner{padding:.7em 1em;border-left:.5em solid;border-radius:4px;margin:0 0 .6em}
.banner .verdict{font-size:1.15em;font-weight:600;margin:.2em 0}.banner p{margin:.2em 0}
.banner.ok{background:#e8f5e9;border-color:#2e7d32}.banner.ok .verdict{color:#1b5e20}
.banner.warn{background:#fff4e5;border-color:#ef6c00}.banner.warn .verdict{color:#b35c00}
.banner.bad{background:#fdecea;border-color:#c62828}.banner.bad .verdict{color:#b71c1c}
.banner.none{background:#f1f3f4;border-color:#888}
.summary{color:#444;margin:.3em 0 1em}nav a{margin-right:1em}
table{border-collapse:collapse;font-size:90%;margin:.4em 0}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f6f8}tbody tr:nth-child(even){background:#fafbfc}td.num{text-align:right;white-space:nowrap}
tr.regressed td:first-child{border-left:4px solid #c62828}tr.improved td:first-child{border-left:4px solid #2e7d32}
td.regressed,span.regressed{color:#b71c1c;font-weight:600}td.improved,span.improved{color:#1b5e20;font-weight:600}
.tag{display:inline-block;font-size:80%;padding:0 .4em;border-radius:3px;background:#0b57d0;color:#fff}
.status-passed{color:#1b5e20}.status-failed,.status-error,.status-aborted{color:#b71c1c;font-weight:600}
.status-running,.status-interrupted{color:#b35c00}.muted{color:#777}
figure{margin:1em 0 2em;padding:.6em;border:1px solid #e3e3e3;border-radius:4px}
figcaption{margin-bottom:.4em}figure svg{width:100%;height:auto}
details summary{cursor:pointer;color:#0b57d0}
"""


@dataclass(frozen=True)
class Banner:
    """The verdict at the top of a page."""

    verdict: str
    tone: str
    """OK, WARN, BAD or NONE."""
    lines: tuple[str, ...] = ()
    """HTML lines under the verdict (already escaped)."""


def _e(text: object) -> str:
    return html.escape(str(text))


def _when(run: RunSummary) -> str:
    return f"{run.started_at:%Y-%m-%d %H:%M} UTC"


def _slug(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(parts)).strip("-")


def figure_id(series: Series) -> str:
    """The id of a series' figure on the history page."""
    return "trend-" + _slug(series.key, series.fingerprint)


def run_href(run_id: str) -> str:
    """A run's page, relative to the history page."""
    return f"{RUNS_FOLDER}/{run_id}.html"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], classes: Sequence[str] = ()) -> str:
    """A table of HTML cells (``td`` elements or their escaped text); ``classes``: per row."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers) if any(headers) else ""
    body = "".join(
        f"<tr{f' class={_attr(c)}' if c else ''}>"
        + "".join(cell if cell.startswith("<td") else f"<td>{cell}</td>" for cell in row)
        + "</tr>"
        for row, c in zip(rows, [*classes, *[""] * (len(rows) - len(classes))], strict=True)
    )
    return f"<table>{f'<thead><tr>{head}</tr></thead>' if head else ''}<tbody>{body}</tbody></table>"


def _attr(value: str) -> str:
    return '"' + html.escape(value, quote=True) + '"'


def _num(text: str) -> str:
    return f'<td class="num">{_e(text)}</td>'


def _document(title: str, banner: Banner, body: str) -> str:
    lines = "".join(f"<p>{line}</p>" for line in banner.lines)
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head>\n<body>\n<h1>{_e(title)}</h1>\n"
        f'<div class="banner {banner.tone}" id="verdict"><p class="verdict">{_e(banner.verdict)}</p>'
        f"{lines}</div>\n{body}\n</body></html>\n"
    )


def _tone(verdict: str) -> str:
    if verdict.startswith("verdict: OK -"):
        return OK
    if verdict.startswith(("verdict: OK", "verdict: RUNNING", "verdict: INTERRUPTED", "verdict: NOTHING")):
        return WARN
    return BAD


def _cp_text(cp: ChangePoint) -> str:
    return (
        f"{cp.series.key} {change_text(cp.change)} at build {cp.first_bad.label} "
        f"(since {cp.last_good.label}) on {cp.series.fingerprint}"
    )


def latest_verdict(
    latest: RunSummary | None, rounds: RoundsReport | None, new: Sequence[ChangePoint], lab: str = ""
) -> Banner:
    """The verdict on the latest run of a lab: its adaptive rounds' verdict when it
    ran them; else, by its status, the change points new with it (``new``)."""
    if latest is None:
        return Banner(f"no run of lab {lab} stored", NONE)
    regressed = [cp for cp in new if cp.verdict is Verdict.REGRESSED]
    improved = [cp for cp in new if cp.verdict is Verdict.IMPROVED]
    status = latest.status
    if rounds is not None:
        verdict = rounds_verdict(rounds, status)
    elif status == RunStatus.RUNNING:
        verdict = "verdict: RUNNING - the latest run has not finished"
    elif status == RunStatus.INTERRUPTED:
        verdict = "verdict: INTERRUPTED - the latest run was stopped before it finished"
    elif status.infrastructure:
        verdict = (
            f"verdict: INFRASTRUCTURE - the latest run ended {status}: {latest.error or 'no reason stored'}"
        )
    elif regressed:
        verdict = "verdict: REGRESSION - " + "; ".join(_cp_text(cp) for cp in regressed)
    elif status == RunStatus.FAILED:
        verdict = f"verdict: FAILED - a test failed{f': {latest.error}' if latest.error else ''}"
    else:
        better = f"{len(improved)} new improvement(s)" if improved else "no new change point"
        verdict = f"verdict: OK - {better}"
    head = (
        f"latest run <a href={_attr(run_href(latest.id))}>{_e(latest.id)}</a>: build "
        f"<b>{_e(latest.build or '-')}</b>, {_e(_when(latest))}, "
        f'<span class="status-{_e(status)}">{_e(status)}</span>'
    )
    lines = [head]
    if rounds is not None:
        lines += [_e(line) for line in head_lines(rounds)[:2]]
    lines += [f"new change point, {cp.verdict}: {_cp_link(cp)}" for cp in new]
    if latest.overlap is not None and not latest.overlap.alone:
        lines.append(f"note: {_e(latest.overlap)}")
    return Banner(verdict, _tone(verdict), tuple(lines))


def _cp_link(cp: ChangePoint) -> str:
    return f"<a href={_attr('#' + figure_id(cp.series))}>{_e(_cp_text(cp))}</a>"


def _runs_links(run_ids: Sequence[str], known: Mapping[str, Any]) -> str:
    return ", ".join(
        f"<a href={_attr(run_href(r))}>{_e(r[:8])}</a>" if r in known else _e(r[:8]) for r in run_ids
    )


def _latest_measured(runs: Sequence[RunDetails]) -> RunDetails | None:
    trusted = [d for d in runs if not d.summary.status.infrastructure]
    return max(trusted, key=lambda d: d.summary.started_at, default=None)


def new_change_points(change_points: Sequence[ChangePoint], latest_measured: str | None) -> list[ChangePoint]:
    """The change points new with the run ``latest_measured`` (the newest run that
    measured): new ones of series whose newest point holds it."""
    return [
        cp
        for cp in change_points
        if cp.new and latest_measured is not None and latest_measured in cp.series.points[-1].run_ids
    ]


def _change_points_section(change_points: Sequence[ChangePoint], runs: Mapping[str, RunDetails]) -> str:
    if not change_points:
        return '<h2 id="change-points">Change points</h2><p class="muted">none found</p>'
    order = sorted(
        change_points,
        key=lambda cp: (not cp.new, -_point_time(cp, runs), cp.series.key, cp.series.fingerprint),
    )
    rows = [
        [
            f'<td class="{_e(cp.verdict)}">{_e(cp.verdict)}'
            + (' <span class="tag">new</span>' if cp.new else "")
            + "</td>",
            f"<a href={_attr('#' + figure_id(cp.series))}>{_e(cp.series.key)}</a>",
            _e(cp.series.fingerprint),
            f"{_e(cp.last_good.label)} <span class=muted>({_runs_links(cp.last_good.run_ids, runs)})</span>",
            f"<b>{_e(cp.first_bad.label)}</b> <span class=muted>({_runs_links(cp.first_bad.run_ids, runs)})</span>",
            f'<td class="num {_e(cp.verdict)}">{_e(change_text(cp.change))}</td>',
            _num(f"[{change_text(cp.low)}, {change_text(cp.high)}]"),
            _num(f"{cp.p:.2g}"),
        ]
        for cp in order
    ]
    headers = ["verdict", "metric", "series", "last good", "first bad", "change", "interval", "p"]
    return '<h2 id="change-points">Change points</h2>' + _table(
        headers, rows, [str(cp.verdict) for cp in order]
    )


def _point_time(cp: ChangePoint, runs: Mapping[str, RunDetails]) -> float:
    times = [runs[r].summary.started_at.timestamp() for r in cp.first_bad.run_ids if r in runs]
    return min(times, default=0.0)


def _builds_table(series: Series, marks: Mapping[int, ChangePoint], runs: Mapping[str, RunDetails]) -> str:
    rows: list[list[str]] = []
    classes: list[str] = []
    for i, p in enumerate(series.points):
        s = summarize(p.samples)
        dates = sorted(runs[r].summary.started_at for r in p.run_ids if r in runs)
        cp = marks.get(i)
        after = marks.get(i + 1)
        mark = (
            f'<span class="{_e(cp.verdict)}">{_e(cp.verdict)} {_e(change_text(cp.change))} (first bad)</span>'
            if cp
            else f"last good before {_e(after.first_bad.label)}"
            if after
            else ""
        )
        rows.append([
            _e(p.label), _e(f"{dates[0]:%Y-%m-%d %H:%M}" if dates else "-"), _runs_links(p.run_ids, runs),
            _num(str(s.n)), _num(value_text(s.median, series.unit)),
            _num(f"{value_text(s.q1, series.unit)} – {value_text(s.q3, series.unit)}"),
            _num(f"{value_text(min(p.samples, default=math.nan), series.unit)} – "
                 f"{value_text(max(p.samples, default=math.nan), series.unit)}"),
            mark,
        ])  # fmt: skip
        classes.append(str(cp.verdict) if cp else "")
    headers = ["build", "first run (UTC)", "runs", "n", "median", "interquartile range", "range", ""]
    return _table(headers, rows[::-1], classes[::-1])


def _figures_section(
    series: Sequence[Series], change_points: Sequence[ChangePoint], runs: Mapping[str, RunDetails]
) -> str:
    by_series: dict[tuple[str, str], list[ChangePoint]] = defaultdict(list)
    for cp in change_points:
        by_series[cp.series.key, cp.series.fingerprint].append(cp)
    prints = _fingerprints(runs)
    out = ['<h2 id="trends">Trends</h2>']
    if not series:
        out.append('<p class="muted">nothing measured</p>')
    for s in sorted(series, key=lambda s: (s.metric, s.key, s.fingerprint)):
        cps = by_series.get((s.key, s.fingerprint), [])
        svg = trend_svg(s, cps)
        if svg is None:
            continue
        latest = summarize(s.points[-1].samples)
        runner = prints[s.fingerprint].runner if s.fingerprint in prints else ""
        marks = ", ".join(
            f'<span class="{_e(cp.verdict)}">{_e(cp.verdict)} {_e(change_text(cp.change))} at '
            f"{_e(cp.first_bad.label)}</span>"
            for cp in cps
        )
        out.append(
            f"<figure id={_attr(figure_id(s))} class=trend data-key={_attr(s.key)} "
            f"data-series={_attr(s.fingerprint)}>"
            f"<figcaption><h3>{_e(s.key)}</h3>"
            f"series <a href={_attr('#' + _series_id(s.fingerprint))}>{_e(s.fingerprint)}</a>"
            f" (runner {_e(runner or '?')}), {len(s.points)} build(s); latest "
            f"{_e(short_label(s.points[-1].label))}: median {_e(value_text(latest.median, s.unit))}, "
            f"interquartile range {_e(value_text(latest.iqr, s.unit))}"
            f"{f'; change points: {marks}' if marks else ''}</figcaption>{svg}"
            f"<details><summary>builds of this series ({len(s.points)}), newest first</summary>"
            f"{_builds_table(s, {cp.index: cp for cp in cps}, runs)}</details></figure>"
        )
    return "\n".join(out)


def _fingerprints(runs: Mapping[str, RunDetails]) -> dict[str, Fingerprint]:
    return {(f := fingerprint(d)).label: f for d in runs.values()}


def _series_id(label: str) -> str:
    return "series-" + _slug(label)


def _series_section(runs: Mapping[str, RunDetails]) -> str:
    members: dict[str, list[RunDetails]] = defaultdict(list)
    prints: dict[str, Fingerprint] = {}
    for d in runs.values():
        f = fingerprint(d)
        prints[f.label] = f
        members[f.label].append(d)
    rows = []
    for label, ds in sorted(members.items()):
        ds = sorted(ds, key=lambda d: d.summary.started_at)
        fields = _table(["field", "value"], [[_e(k), _e(v)] for k, v in prints[label].fields])
        rows.append([
            f'<td id={_attr(_series_id(label))}><b>{_e(label)}</b></td>', _e(prints[label].runner or "?"),
            _num(str(len(ds))),
            _e(f"{ds[0].summary.build or '-'} … {ds[-1].summary.build or '-'} ({_when(ds[-1].summary)})"),
            f"<details><summary>{len(prints[label].fields)} fields</summary>{fields}</details>",
        ])  # fmt: skip
    headers = ["series", "runner", "runs", "builds (first … latest)", "fingerprint"]
    return '<h2 id="series">Series (where each ran)</h2>' + _table(headers, rows)


def _runs_section(runs: Mapping[str, RunDetails]) -> str:
    rows = []
    for d in sorted(runs.values(), key=lambda d: d.summary.started_at, reverse=True):
        s = d.summary
        notes = []
        if s.status.infrastructure:
            notes.append("left out of the trends")
        if s.error:
            notes.append(s.error)
        if s.overlap is not None and not s.overlap.alone:
            notes.append("measured beside another run")
        rows.append([
            f"<a href={_attr(run_href(s.id))}>{_e(s.id)}</a>", _e(_when(s)),
            f'<span class="status-{_e(s.status)}">{_e(s.status)}</span>', _e(s.build or "-"),
            _e(fingerprint(d).label), _num(str(s.measurements)),
            _e(", ".join(str(i) for i in s.impls) or "-"), _e("; ".join(notes)),
        ])  # fmt: skip
    headers = ["run", "started", "status", "build", "series", "values", "implementations", "notes"]
    return f'<h2 id="runs">Runs ({len(rows)}, newest first)</h2>' + _table(headers, rows)


def history_page(
    lab: str,
    runs: Sequence[RunDetails],
    series: Sequence[Series],
    change_points: Sequence[ChangePoint],
    rounds: Mapping[str, RoundsReport] | None = None,
) -> str:
    """The history page of ``lab``: ``runs`` every run of the lab (any status),
    ``series`` the metrics' series over its trusted runs, ``change_points`` those
    found on them, ``rounds`` the adaptive rounds of runs that ran them (by run id)."""
    rounds = rounds or {}
    by_id = {d.run.id: d for d in runs}
    latest = max(runs, key=lambda d: d.summary.started_at, default=None)
    measured = _latest_measured(runs)
    new = new_change_points(change_points, measured.run.id if measured else None)
    banner = latest_verdict(
        latest.summary if latest else None, rounds.get(latest.run.id) if latest else None, new, lab
    )
    builds = {d.summary.build or d.run.id for d in runs if not d.summary.status.infrastructure}
    new_bad = sum(cp.verdict is Verdict.REGRESSED for cp in new)
    summary = (
        f"latest build <b>{_e(measured.summary.build or f'none (run {measured.run.id})')}</b>"
        f" measured {_e(_when(measured.summary))}"
        if measured
        else "no run measured"
    ) + (
        f" · {len(runs)} run(s), {len(builds)} build(s), {len(series)} series"
        f" · new change points: {len(new)} ({new_bad} regressed), {len(change_points)} in all"
    )
    nav = "".join(
        f'<a href="#{anchor}">{name}</a>'
        for anchor, name in (("change-points", "change points"), ("trends", "trends"),
                             ("series", "series"), ("runs", "runs"))
    )  # fmt: skip
    body = "\n".join(
        [
            f'<p class="summary" id="summary">{summary}</p><nav>{nav}</nav>',
            _change_points_section(change_points, by_id),
            _figures_section(series, change_points, by_id),
            _series_section({k: v for k, v in by_id.items() if not v.summary.status.infrastructure}),
            _runs_section(by_id),
        ]
    )
    return _document(f"History of lab {lab}", banner, body)


def _fact(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def run_page(
    details: RunDetails,
    rounds: RoundsReport | None = None,
    trends: Sequence[tuple[str, str]] = (),
    back: str = f"../{HISTORY_PAGE}",
) -> str:
    """A run's page: its metadata, fingerprint, hosts and their facts, measurements,
    artifacts, its adaptive rounds when it ran them, and ``trends``: (text, link)
    of each point of the history page's figures it is part of."""
    run, s = details.run, details.summary
    verdict = (
        rounds_verdict(rounds, s.status)
        if rounds is not None
        else f"run {s.id}: {s.status}" + (f" - {s.error}" if s.error else "")
    )
    tone = _tone(verdict) if rounds is not None else {
        RunStatus.PASSED: OK, RunStatus.RUNNING: WARN, RunStatus.INTERRUPTED: WARN}.get(s.status, BAD)  # fmt: skip
    f = fingerprint(details)
    banner = Banner(verdict, tone, (f"<a href={_attr(back)}>← history of lab {_e(run.lab_name)}</a>",))
    meta = [
        ("run", run.id), ("status", s.status), ("lab", f"{run.lab_name} ({run.lab_path}, sha256 {run.lab_sha256[:12]})"),
        ("build", run.build or "-"), ("started", _when(s)),
        ("finished", f"{s.finished_at:%Y-%m-%d %H:%M:%S} UTC" if s.finished_at else "-"),
        ("implementations", ", ".join(str(i) for i in s.impls) or "-"),
        ("series", f.label), ("runner", run.runner or "-"), ("host name", run.hostname),
        ("command", run.command), ("harness", run.harness_version),
        ("measured", str(s.overlap) if s.overlap else "not recorded"), ("error", s.error or "-"),
    ]  # fmt: skip
    parts = ["<h2>Run</h2>" + _table(["", ""], [[f"<b>{_e(k)}</b>", _e(v)] for k, v in meta])]
    if rounds is not None:
        parts.append(
            "<h2>Adaptive rounds</h2>"
            + "".join(f"<p>{_e(line)}</p>" for line in head_lines(rounds))
            + _table(
                ROUNDS_HEADERS,
                [[_e(c) for c in rounds_cells(m)] for m in rounds.metrics],
                [m.label for m in rounds.metrics],
            )  # fmt: skip
        )
    if trends:
        items = "".join(f"<li><a href={_attr(href)}>{_e(text)}</a></li>" for text, href in trends)
        parts.append(f"<h2>In the history</h2><ul>{items}</ul>")
    parts.append(
        f"<h2>Fingerprint {_e(f.label)}</h2>"
        + _table(["field", "value"], [[_e(k), _e(v)] for k, v in f.fields])
    )
    for h in details.hosts:
        facts = _table(["fact", "value"], [[_e(k), _e(_fact(v))] for k, v in sorted(h.facts.items())])
        parts.append(
            f"<h3>host {_e(h.host)}: {_e(h.impl or '-')} {_e(h.impl_version or '')}"
            f" build {_e(h.build or '-')}</h3><details><summary>facts ({len(h.facts)})</summary>{facts}</details>"
        )
    rows = [
        [_e(m.suite), _e(m.case), _e(m.flow_direction or "-"), _e(m.build or "-"), _e(m.metric),
         _num(str(m.repetition)), _num(value_text(m.value, m.unit)), _e(m.direction)]
        for m in details.measurements
    ]  # fmt: skip
    headers = ["suite", "case", "flow", "build", "metric", "repetition", "value", "better"]
    parts.append(
        f"<h2>Measurements ({len(rows)})</h2>"
        + (_table(headers, rows) if rows else "<p class=muted>none</p>")
    )
    if details.artifacts:
        items = "".join(f"<li><code>{_e(a)}</code></li>" for a in details.artifacts)
        parts.append(
            f"<h2>Artifacts ({len(details.artifacts)})</h2><ul>{items}</ul><p class=muted>read one with "
            f"<code>wgharness results show {_e(run.id)} --artifact NAME</code></p>"
        )
    return _document(f"Run {run.id} of lab {run.lab_name}", banner, "\n".join(parts))


def write_pages(
    out: Path,
    lab: str,
    runs: Sequence[RunDetails],
    series: Sequence[Series],
    change_points: Sequence[ChangePoint],
    rounds: Mapping[str, RoundsReport] | None = None,
) -> None:
    """``history.html`` and ``runs/RUN_ID.html`` of every run into folder ``out``."""
    rounds = rounds or {}
    folder = out / RUNS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    trends: dict[str, list[tuple[str, str]]] = defaultdict(list)
    steps = {(cp.series.key, cp.series.fingerprint, cp.index): cp for cp in change_points}
    for s in series:
        for i, p in enumerate(s.points):
            cp = steps.get((s.key, s.fingerprint, i))
            mark = f" (first bad: {cp.verdict} {change_text(cp.change)})" if cp else ""
            for run_id in p.run_ids:
                trends[run_id].append(
                    (
                        f"{s.key} on {s.fingerprint}, build {p.label}{mark}",
                        f"../{HISTORY_PAGE}#{figure_id(s)}",
                    )
                )
    for d in runs:
        (folder / f"{d.run.id}.html").write_text(run_page(d, rounds.get(d.run.id), trends[d.run.id]))
    (out / HISTORY_PAGE).write_text(history_page(lab, runs, series, change_points, rounds))
