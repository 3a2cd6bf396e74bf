"""Change points (`harness.results.changes`) as a text table, Markdown and JSON,
and the verdict line of `wgharness changes`."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from harness.codec import encode
from harness.results.changes import ALPHA, MIN_SEGMENT, ChangePoint, Series
from harness.results.render.comparison import change_text, value_text
from harness.results.render.summary import table

HEADERS = ["series", "metric", "last good", "first bad", "change", "95% interval", "p", "median before -> after", "verdict", "new"]  # fmt: skip


def row(cp: ChangePoint) -> list[str]:
    """One change point as the cells of `HEADERS`."""
    unit = cp.series.unit
    return [
        cp.series.fingerprint, cp.series.key, cp.last_good.label, cp.first_bad.label, change_text(cp.change),
        f"{change_text(cp.low)}..{change_text(cp.high)}", f"{cp.p:.2g}",
        f"{value_text(cp.before, unit)} -> {value_text(cp.after, unit)}", cp.verdict, "NEW" if cp.new else "",
    ]  # fmt: skip


def sentence(cp: ChangePoint) -> str:
    """One change point in words: ``KEY on SERIES: regressed from build A to build B: -10.2%
    [-14.0%..-6.1%], p=0.0005, 700.0 Mbit/s -> 628.6 Mbit/s`` (and ``, NEW``)."""
    series, key, good, bad, change, interval, p, medians, verdict, new = row(cp)
    return (f"{key} on {series}: {verdict} from build {good} to build {bad}: {change} [{interval}], p={p}, "
            f"{medians}{', NEW' if new else ''}")  # fmt: skip


def about(lab: str, series: Sequence[Series]) -> str:
    """One line: the series and points looked at, and what cannot show a change point."""
    short = sum(1 for s in series if len(s.points) < 2 * MIN_SEGMENT)
    points = sum(len(s.points) for s in series)
    line = f"lab {lab}: {len(series)} series, {points} points (builds); alpha {ALPHA:g}"
    if short:
        line += f"; {short} series with fewer than {2 * MIN_SEGMENT} points cannot show a change point yet"
    return line


def verdict_line(changes: Sequence[ChangePoint]) -> str:
    """``verdict: REGRESSION - ...`` when a new change point regressed (exit status 1), else ``verdict: OK - ...``."""
    alarms = [cp for cp in changes if cp.alarm]
    if alarms:
        named = "; ".join(
            f"{cp.series.key} {change_text(cp.change)} from build {cp.first_bad.label} on {cp.series.fingerprint}"
            for cp in alarms
        )
        return f"verdict: REGRESSION - new change point: {named}"
    if not changes:
        return "verdict: OK - no change points"
    return f"verdict: OK - {len(changes)} change point(s), none new and regressed"


def render_text(lab: str, series: Sequence[Series], changes: Sequence[ChangePoint]) -> str:
    body = table(HEADERS, [row(cp) for cp in changes]) if changes else "(no change points)"
    return "\n".join([about(lab, series), "", body, "", verdict_line(changes)])


def render_markdown(lab: str, series: Sequence[Series], changes: Sequence[ChangePoint]) -> str:
    out = [f"# Change points of lab {lab}", "", about(lab, series), ""]
    if changes:
        out += ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
        out += ["| " + " | ".join(row(cp)) + " |" for cp in changes]
    else:
        out.append("(no change points)")
    return "\n".join([*out, "", verdict_line(changes), ""])


def _finite(value: Any) -> Any:
    """NaN and infinities as null: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def change_record(cp: ChangePoint) -> dict[str, Any]:
    """A change point as JSON-shaped values, its series named rather than repeated."""
    s = cp.series
    return {
        "series": s.fingerprint, "key": s.key, "metric": s.metric, "unit": s.unit, "direction": s.direction.value,
        "index": cp.index, "last_good": cp.last_good.label, "first_bad": cp.first_bad.label,
        "last_good_runs": list(cp.last_good.run_ids), "first_bad_runs": list(cp.first_bad.run_ids),
        "change": cp.change, "low": cp.low, "high": cp.high, "p": cp.p, "verdict": cp.verdict.value,
        "new": cp.new, "alarm": cp.alarm, "start": cp.start, "end": cp.end, "before": cp.before, "after": cp.after,
    }  # fmt: skip


def render_json(lab: str, series: Sequence[Series], changes: Sequence[ChangePoint], **extra: Any) -> str:
    """The lab, its series (every point with its samples), its change points and
    ``extra`` (already JSON-shaped), indented."""
    document = {
        "lab": lab,
        "alpha": ALPHA,
        "series": [encode(s) for s in series],
        "change_points": [change_record(cp) for cp in changes],
        **extra,
    }
    return json.dumps(_finite(document), indent=1)
