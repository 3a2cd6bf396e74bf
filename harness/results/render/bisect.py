"""A bisect (`harness.results.bisect`) for people: a line per step, the conclusion
with its evidence, the steps' table (text, Markdown) and an HTML page. Each step
shows the two builds, both medians, the change with the interval that decided
it, the rounds and the verdict; nothing is computed here."""

from __future__ import annotations

import html
import math

from harness.results.bisect import BisectReport, Build, Finding, MetricEvidence, Step
from harness.results.render.comparison import change_text, value_text
from harness.results.render.html import page
from harness.results.render.summary import table

HEADERS = ["step", "candidate", "against", "verdict", "metric", "median A", "median B", "change", "interval",
           "rounds", "run"]  # fmt: skip


def _builds(report: BisectReport) -> tuple[Build, ...]:
    return report.builds or report.plan.builds


def _interval(m: MetricEvidence) -> str:
    low, high = m.interval
    return "-" if math.isnan(low) or math.isnan(high) else f"[{change_text(low)}, {change_text(high)}]"


def evidence_text(m: MetricEvidence) -> str:
    """``receiver_bps regressed -25.1% [-27.0%, -23.3%], medians 153.1 → 114.6 Mbit/s, 3 rounds``."""
    return (
        f"{m.key} {m.label} {change_text(m.change)} {_interval(m)}, medians "
        f"{value_text(m.median_a, m.unit)} → {value_text(m.median_b, m.unit)}, {m.rounds} rounds"
    )


def step_line(report: BisectReport, step: Step) -> str:
    """One line per step, as the bisect goes."""
    builds = _builds(report)
    head = f"step {step.number}: {builds[step.candidate].label} against the {step.reference} end {builds[step.baseline].label}"
    run = f" (run {step.run_id})" if step.run_id else ""
    taken = f", measured by bisect {step.reused_from}" if step.reused_from else ""
    if not step.metrics:
        return f"{head}: {step.label}{run}{taken}" + (f" - {step.note}" if step.note else "")
    return f"{head}: {step.label}{run}{taken}; " + "; ".join(evidence_text(m) for m in step.metrics)


def conclusion_line(report: BisectReport) -> str:
    c = report.conclusion
    builds = _builds(report)
    if c is None:
        return f"bisect: NOT CONCLUDED - {report.note or 'stopped'}"
    if c.finding is Finding.FIRST_BAD and c.first_bad is not None:
        good = f", last good {builds[c.last_good].label}" if c.last_good is not None else ""
        return f"bisect: FIRST BAD {builds[c.first_bad].label}{good} - {c.reason}"
    if c.finding is Finding.NO_REGRESSION:
        return f"bisect: NO REGRESSION IN RANGE - {c.reason}"
    return f"bisect: AMBIGUOUS - {c.reason}"


def evidence_lines(report: BisectReport) -> list[str]:
    """The steps that decided: those of the first bad build and the last good one."""
    c = report.conclusion
    if c is None:
        return []
    named = {i for i in (c.first_bad, c.last_good) if i is not None} | set(c.candidates)
    if c.finding is Finding.NO_REGRESSION:
        named.add(len(_builds(report)) - 1)
    return [step_line(report, s) for s in report.steps if s.candidate in named]


def _rows(report: BisectReport) -> list[list[str]]:
    builds = _builds(report)
    rows = []
    for s in report.steps:
        base = [
            str(s.number),
            builds[s.candidate].label,
            f"{s.reference} ({builds[s.baseline].label})",
            str(s.label),
        ]
        run = (s.run_id or "-") + (f" (bisect {s.reused_from})" if s.reused_from else "")
        for m in s.metrics or (None,):
            if m is None:
                rows.append([*base, "-", "-", "-", "-", "-", str(s.rounds), run])
            else:
                rows.append([*base, m.key, value_text(m.median_a, m.unit), value_text(m.median_b, m.unit),
                             change_text(m.change), _interval(m), str(m.rounds), run])  # fmt: skip
    return rows


def head_lines(report: BisectReport) -> list[str]:
    p = report.plan
    builds = _builds(report)
    skipped = [f"{b.label} ({b.problem})" for b in builds if b.problem]
    lines = [
        f"lab {p.lab}, builds on tunnel end(s) {', '.join(p.ends)}",
        f"{len(builds)} builds from {p.source}: {builds[0].label} (good) .. {builds[-1].label} (bad)",
        f"settings: {p.settings_key}",
    ]
    return lines + ([f"skipped: {'; '.join(skipped)}"] if skipped else [])


def render_text(report: BisectReport) -> str:
    body = table(HEADERS, _rows(report)) if report.steps else "(no step measured)"
    evidence = evidence_lines(report)
    return "\n".join(
        [
            *head_lines(report),
            "",
            body,
            "",
            conclusion_line(report),
            *(["evidence:"] if evidence else []),
            *(f"  {e}" for e in evidence),
        ]  # fmt: skip
    )


def render_markdown(report: BisectReport) -> str:
    out = ["# Bisect", "", *(f"- {line}" for line in head_lines(report)), ""]
    out.append("| " + " | ".join(HEADERS) + " |")
    out.append("|" + "---|" * len(HEADERS))
    out += ["| " + " | ".join(row) + " |" for row in _rows(report)]
    out += ["", f"**{conclusion_line(report)}**", ""]
    evidence = evidence_lines(report)
    if evidence:
        out += ["Evidence:", "", *(f"- {e}" for e in evidence), ""]
    return "\n".join(out)


def html_page(report: BisectReport) -> str:
    verdict = conclusion_line(report)
    c = report.conclusion
    colour = (
        "#2a7" if c is not None and c.finding is Finding.NO_REGRESSION else "#c80" if c is None else "#c33"
    )
    items = "".join(f"<li>{html.escape(x)}</li>" for x in head_lines(report))
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADERS)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in _rows(report)
    )
    evidence = "".join(f"<li>{html.escape(e)}</li>" for e in evidence_lines(report))
    return page(
        "Bisect", verdict, colour, f"<ul>{items}</ul><table><tr>{head}</tr>{rows}</table><ul>{evidence}</ul>"
    )
