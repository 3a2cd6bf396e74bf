"""Adaptive rounds (`harness.results.rounds`) for people and CI: the progress
line of each round, the verdict line, the table (stdout, ``results show``),
Markdown (summary.md), JUnit XML and the HTML page of
``wgharness nightly --rounds adaptive``. Per metric: the outcome (regressed,
improved, same, unknown), the change with the interval that decided it, the
rounds it needed; the samples of every metric still unknown."""

from __future__ import annotations

import html
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from harness.results.records import RunStatus
from harness.results.render.comparison import change_text, value_text
from harness.results.render.html import distribution_plot, figure_svg, page
from harness.results.render.summary import table
from harness.results.rounds import MetricRounds, RoundsReport, Stop
from harness.results.sequential import ORDERS, Decision

HEADERS = ["metric", "outcome", "change", "interval", "rounds", "baseline mean", "candidate mean"]
SHOWN_UNDECIDED = 4
"""A progress line names at most this many undecided metrics."""


def _pct(x: float) -> str:
    return ">+999%" if x > 9.99 else change_text(x)  # an early look's interval can reach anywhere


def _interval(d: Decision) -> str:
    low, high = d.interval
    return "-" if math.isnan(low) or math.isnan(high) else f"[{_pct(low)}, {_pct(high)}]"


def estimate_text(d: Decision) -> str:
    """``-3.1% [-7.9%, +1.6%]``; before the first look, the change alone."""
    interval = _interval(d)
    return change_text(d.change) + (f" {interval}" if interval != "-" else f" after {d.rounds} round(s)")


def _means(m: MetricRounds) -> tuple[float, float]:
    """The mean of A's and of B's values over the rounds the decision used."""
    used = m.rounds[: m.decision.rounds] or m.rounds
    a = [v for r in used for v in r.a]
    b = [v for r in used for v in r.b]
    return (sum(a) / len(a), sum(b) / len(b)) if a and b else (math.nan, math.nan)


def row_cells(m: MetricRounds) -> list[str]:
    a, b = _means(m)
    unit = m.metric.unit
    return [
        m.metric.key, m.label, change_text(m.decision.change), _interval(m.decision),
        str(m.decision.rounds), value_text(a, unit), value_text(b, unit),
    ]  # fmt: skip


def progress_line(report: RoundsReport) -> str:
    """``round 3/20: 2 of 6 metrics decided; undecided: tcp-1 receiver_bps (-3.1% [-7.9%, +1.6%])``."""
    s = report.settings
    line = f"round {report.rounds}/{s.max_rounds}: {len(report.decided)} of {len(report.metrics)} metrics decided"
    undecided = report.undecided
    if undecided:
        named = ", ".join(
            f"{m.metric.short} ({estimate_text(m.decision)})" for m in undecided[:SHOWN_UNDECIDED]
        )
        more = len(undecided) - SHOWN_UNDECIDED
        line += f"; undecided: {named}" + (f" and {more} more" if more > 0 else "")
    elif report.metrics:
        line += " (" + _counts(report) + ")"
    if report.stop in (Stop.FAILED, Stop.NOTHING, Stop.INTERRUPTED):
        line += f"; stopping: {report.note}"
    elif report.stop is Stop.CAP:
        line += "; stopping at the cap"
    return line


def _counts(report: RoundsReport) -> str:
    counts: dict[str, int] = {}
    for m in report.metrics:
        counts[m.label] = counts.get(m.label, 0) + 1
    return ", ".join(f"{n} {label}" for label, n in sorted(counts.items()))


def verdict_line(report: RoundsReport | None, status: RunStatus) -> str:
    """One line: REGRESSION, FAILED, INFRASTRUCTURE, INTERRUPTED, NOTHING DECIDED, or
    OK (``OK, BUT N UNKNOWN`` when some metric is still unknown)."""
    if report is None:
        return "verdict: INFRASTRUCTURE - the rounds never began (the run broke before its first test)"
    done = f"{len(report.decided)} of {len(report.metrics)} metrics decided"
    if status == RunStatus.INTERRUPTED:
        return f"verdict: INTERRUPTED after {report.rounds} round(s) - {done}"
    if status.infrastructure:
        return f"verdict: INFRASTRUCTURE - {report.note or 'the run broke'} ({done})"
    if report.regressions:
        names = ", ".join(f"{m.metric.short} {change_text(m.decision.change)} after {m.decision.rounds} rounds"
                          for m in report.regressions)  # fmt: skip
        return f"verdict: REGRESSION - {names}"
    if status == RunStatus.FAILED:
        return f"verdict: FAILED - {report.note or 'a test failed'}"
    if report.stop is Stop.NOTHING:
        return f"verdict: NOTHING DECIDED - {report.note}"
    undecided = report.undecided
    if undecided:
        names = "; ".join(f"{m.metric.short} {estimate_text(m.decision)}" for m in undecided)
        return (
            f"verdict: OK, BUT {len(undecided)} UNKNOWN after {report.rounds} rounds "
            f"(cap {report.settings.max_rounds}) - {names}; all: {_counts(report)}"
        )
    return f"verdict: OK - {_counts(report)}"


def head_lines(report: RoundsReport) -> list[str]:
    s = report.settings
    stop = (
        f"stopped: {report.stop}" + (f" ({report.note})" if report.note else "") if report.stop else "running"
    )
    return [
        f"baseline  (A): {report.baseline}",
        f"candidate (B): {report.candidate}",
        f"rounds: {report.rounds} of at most {s.max_rounds} ({' and '.join(' '.join(o) for o in ORDERS)} in turn); "
        f"minimum effect {s.min_effect:.0%}, alpha {s.alpha:g}; {stop}",
    ]


def samples_lines(m: MetricRounds) -> list[str]:
    """One line per round: A's values, B's values, and B's change."""
    out = []
    for k, r in enumerate(m.rounds, 1):
        a = ", ".join(value_text(v, m.metric.unit) for v in r.a)
        b = ", ".join(value_text(v, m.metric.unit) for v in r.b)
        ma, mb = sum(r.a) / len(r.a), sum(r.b) / len(r.b)
        change = change_text(mb / ma - 1) if ma else "-"
        out.append(f"round {k}: A {a} | B {b} | {change}")
    return out


def rounds_text(report: RoundsReport) -> str:
    """The head, the table, each decision's reason, and the samples of what is unknown."""
    body = table(HEADERS, [row_cells(m) for m in report.metrics]) if report.metrics else "(no metric)"
    reasons = [f"  {m.metric.key}: {m.decision.reason}" for m in report.metrics]
    samples = [
        line
        for m in report.undecided
        for line in [f"still unknown, {m.metric.key}:", *(f"  {s}" for s in samples_lines(m))]
    ]
    return "\n".join([*head_lines(report), "", body, "", *reasons, *([""] + samples if samples else [])])


def render_markdown(report: RoundsReport | None, status: RunStatus, notes: Sequence[str] = ()) -> str:
    if report is None:
        return "\n".join(
            ["# Adaptive rounds", "", *(f"> {n}" for n in notes), "", f"**{verdict_line(None, status)}**", ""]
        )
    out = ["# Adaptive rounds", "", *(f"- {line}" for line in head_lines(report)), ""]
    out.append("| " + " | ".join(HEADERS) + " | reason |")
    out.append("|" + "---|" * (len(HEADERS) + 1))
    out += ["| " + " | ".join([*row_cells(m), m.decision.reason]) + " |" for m in report.metrics]
    for m in report.undecided:
        out += ["", f"## Still unknown: {m.metric.key}", "", *(f"- {s}" for s in samples_lines(m))]
    out += ["", *(f"> {n}" for n in notes), "", f"**{verdict_line(report, status)}**", ""]
    return "\n".join(out)


def junit_xml(report: RoundsReport | None, status: RunStatus, run_errors: Sequence[str] = ()) -> str:
    """A test case per metric: regressed is a failure, unknown is skipped (shown, not
    failing), a failed test of the run a failure, an infrastructure problem an error."""
    suite = ET.Element("testsuite", name="wgharness.rounds")
    counts = {"failures": 0, "errors": 0, "skipped": 0}
    for m in report.metrics if report else ():
        case = ET.SubElement(suite, "testcase", classname=f"{m.metric.suite}.{m.metric.case}",
                             name=m.metric.key, time="0")  # fmt: skip
        text = f"{m.label}, {m.decision.reason}"
        if m.decision.verdict.failing:
            counts["failures"] += 1
            ET.SubElement(case, "failure", message=text, type=m.label)
        elif not m.decision.outcome.decided:
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message=f"UNKNOWN {text}")
        ET.SubElement(case, "system-out").text = text
    if status == RunStatus.FAILED:
        counts["failures"] += 1
        case = ET.SubElement(suite, "testcase", classname="runs", name="rounds", time="0")
        ET.SubElement(case, "failure", message=(report.note if report else "") or "a test failed",
                      type="failed-run")  # fmt: skip
    if status.infrastructure and not run_errors:
        run_errors = [verdict_line(report, status)]
    for line in run_errors:
        counts["errors"] += 1
        case = ET.SubElement(suite, "testcase", classname="infrastructure", name=line.split(":")[0], time="0")
        ET.SubElement(case, "error", message=line, type="infrastructure")
    suite.set("tests", str(len(suite.findall("testcase"))))
    for name, n in counts.items():
        suite.set(name, str(n))
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)


def rounds_plot(report: RoundsReport) -> str | None:
    """Per metric, B's change against A in each round, the ± minimum effect band
    shaded, and the round each metric was decided in marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if not report.metrics:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.5))
    effect = report.settings.min_effect * 100
    ax.axhspan(-effect, effect, color="tab:green", alpha=0.1, label=f"±{effect:g}% (same)")
    ax.axhline(0, color="grey", lw=0.8)
    for m in report.metrics:
        changes = [100 * ((sum(r.b) / len(r.b)) / (sum(r.a) / len(r.a)) - 1) if sum(r.a) else math.nan
                   for r in m.rounds]  # fmt: skip
        (line,) = ax.plot(
            range(1, len(changes) + 1), changes, marker=".", label=f"{m.metric.short}: {m.label}"
        )
        if m.decision.outcome.decided and m.decision.rounds <= len(changes):
            k = m.decision.rounds
            ax.plot([k], [changes[k - 1]], marker="o", ms=9, mfc="none", color=line.get_color())
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel("B against A (%)")
    ax.set_title("change per round (circled: the round that decided)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return figure_svg(fig)


def samples_plot(report: RoundsReport) -> str | None:
    """Every value of A and of B, per metric."""
    base = {m.metric.key: [v for r in m.rounds for v in r.a] for m in report.metrics}
    cand = {m.metric.key: [v for r in m.rounds for v in r.b] for m in report.metrics}
    unit = report.metrics[0].metric.unit if report.metrics else ""
    return distribution_plot(base, cand, unit)


def html_page(title: str, report: RoundsReport | None, status: RunStatus, notes: Sequence[str] = ()) -> str:
    verdict = verdict_line(report, status)
    items = "".join(f"<li>{html.escape(x)}</li>" for x in [*(head_lines(report) if report else []), *notes])
    if report is None:
        return page(title, verdict, "#c33", f"<ul>{items}</ul>")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in [*HEADERS, "reason"])
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in [*row_cells(m), m.decision.reason]) + "</tr>"
        for m in report.metrics
    )
    unknown = "".join(
        f"<h3>still unknown: {html.escape(m.metric.key)}</h3><ul>"
        + "".join(f"<li>{html.escape(s)}</li>" for s in samples_lines(m))
        + "</ul>"
        for m in report.undecided
    )
    plots = "".join(
        f"<h2>{html.escape(name)}</h2>{svg}"
        for name, svg in (
            ("Change per round", rounds_plot(report)),
            ("Samples per build", samples_plot(report)),
        )
        if svg
    )
    colour = (
        "#2a7"
        if verdict.startswith("verdict: OK -")
        else "#c80"
        if verdict.startswith("verdict: OK")
        else "#c33"
    )
    return page(
        title, verdict, colour, f"<ul>{items}</ul><table><tr>{head}</tr>{rows}</table>{unknown}{plots}"
    )
