"""Render a `Comparison` as a text table, Markdown or JSON."""

from __future__ import annotations

import json
import math

from harness.codec import encode
from harness.results.compare import Comparison, MetricComparison
from harness.results.records import THROUGHPUT_UNIT, Verdict
from harness.results.render.summary import table

HEADERS = [
    "metric",
    "n base/cand",
    "base median",
    "cand median",
    "IQR base/cand",
    "change",
    "95% CI",
    "p",
    "verdict",
]


def value_text(value: float, unit: str) -> str:
    if math.isnan(value):
        return "-"
    if unit == THROUGHPUT_UNIT:
        return f"{value / 1e6:,.1f} Mbit/s"
    return f"{value:.3g} {unit}"


def change_text(value: float) -> str:
    return "-" if math.isnan(value) or math.isinf(value) else f"{value:+.1%}"


def row_cells(r: MetricComparison) -> list[str]:
    ci = "-" if math.isnan(r.ci[0]) else f"{change_text(r.ci[0])}..{change_text(r.ci[1])}"
    iqr = f"{value_text(r.base.iqr, r.unit)} / {value_text(r.cand.iqr, r.unit)}"
    return [
        r.key, f"{r.base.n}/{r.cand.n}", value_text(r.base.median, r.unit), value_text(r.cand.median, r.unit), iqr,
        change_text(r.change), ci, f"{r.p:.3g}", r.verdict,
    ]  # fmt: skip


def _head(c: Comparison) -> list[str]:
    lines = [
        f"baseline  {c.baseline.text}: {len(c.base_runs)} run(s) {', '.join(r.id for r in c.base_runs) or '-'}",
        f"candidate {c.candidate.text}: {len(c.cand_runs)} run(s) {', '.join(r.id for r in c.cand_runs) or '-'}",
    ]
    lines += [f"fingerprint differs (baseline vs candidate): {m}" for m in c.mismatches]
    lines += [f"infrastructure failure, left out: {m}" for m in c.infra]
    lines += [f"failed run: {m}" for m in c.failed_runs]
    lines += c.contended
    return lines


def verdict_line(c: Comparison) -> str:
    caution = (
        f" (caution: {len(c.contended)} run(s) measured while another lab was active: figures may be low)"
        if c.contended
        else ""
    )
    return _verdict(c) + caution


def _verdict(c: Comparison) -> str:
    if not c.base_runs or not c.cand_runs:
        side, sel = ("baseline", c.baseline) if not c.base_runs else ("candidate", c.candidate)
        return f"verdict: NOTHING TO COMPARE - no usable {side} run matches {sel.text!r}"
    bad = c.regressions
    if bad or c.failed_runs:
        names = ", ".join(f"{r.key} {r.verdict}" for r in bad) or "a candidate run failed"
        return f"verdict: REGRESSION - {names}"
    counts: dict[Verdict, int] = {}
    for r in c.rows:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    return "verdict: OK - " + (", ".join(f"{n} {v}" for v, n in sorted(counts.items())) or "nothing compared")


def render_text(c: Comparison) -> str:
    body = table(HEADERS, [row_cells(r) for r in c.rows]) if c.rows else "(no metric in common)"
    notes = [f"  {r.key}: {r.reason}" for r in c.rows if r.verdict is not Verdict.UNCHANGED]
    return "\n".join([*_head(c), "", body, *([""] + notes if notes else []), "", verdict_line(c)])


def render_markdown(c: Comparison) -> str:
    out = ["# Comparison", ""] + [f"- {line}" for line in _head(c)] + [""]
    out.append("| " + " | ".join(HEADERS) + " | reason |")
    out.append("|" + "---|" * (len(HEADERS) + 1))
    for r in c.rows:
        out.append("| " + " | ".join([*row_cells(r), r.reason]) + " |")
    out += ["", f"**{verdict_line(c)}**", ""]
    return "\n".join(out)


def render_json(c: Comparison) -> str:
    def clean(value: object) -> object:
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    doc = {
        "baseline": {"selector": c.baseline.text, "runs": [r.id for r in c.base_runs]},
        "candidate": {"selector": c.candidate.text, "runs": [r.id for r in c.cand_runs]},
        "mismatches": c.mismatches,
        "infrastructure": c.infra,
        "failed_runs": c.failed_runs,
        "contended": c.contended,
        "metrics": [dict(encode(r), key=r.key) for r in c.rows],
        "verdict": verdict_line(c),
        "exit_status": c.exit_status(),
    }
    return json.dumps(clean(doc), indent=1, default=str)


RENDERERS = {"text": render_text, "markdown": render_markdown, "json": render_json}
