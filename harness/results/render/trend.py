"""A series' trend as an SVG figure for the history page: one point per build
(the series' order, not wall-clock time, on the x-axis, labelled with the
builds), the median line, the interquartile range as a band, each build's
lowest and highest sample as a whisker, and every change point marked: a
dashed line between the last good and the first bad build, and a triangle on
the first bad one, red when it regressed and green when it improved.

The SVG keeps its text as text (not glyph outlines) and carries no date, so a
page of thirty figures stays small and the same history draws the same page.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.results.changes import ChangePoint, Series
from harness.results.records import THROUGHPUT_UNIT, Verdict
from harness.results.render.html import figure_svg
from harness.results.stats import summarize

COLOURS = {Verdict.REGRESSED: "#c62828", Verdict.IMPROVED: "#2e7d32"}
"""A change point's colour by its verdict (the page's style sheet has the same)."""
MARKERS = {Verdict.REGRESSED: "v", Verdict.IMPROVED: "^"}
MAX_TICKS = 40
"""At most this many build labels on the x-axis; beyond, every k-th (and the last)."""


def scale_of(unit: str) -> tuple[float, str]:
    """The divisor and the axis unit of values stored in ``unit``."""
    return (1e6, "Mbit/s") if unit == THROUGHPUT_UNIT else (1.0, unit)


def short_label(label: str) -> str:
    """A point's label for an axis: a run's 12-digit id shortened to 8."""
    return f"run {label[4:12]}" if label.startswith("run ") else label


def trend_svg(series: Series, change_points: Sequence[ChangePoint]) -> str | None:
    """The figure of ``series`` with ``change_points`` (those of this series) marked;
    None for a series without points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [p for p in series.points]
    if not points:
        return None
    div, unit = scale_of(series.unit)
    stats = [summarize(p.samples) for p in points]
    x = list(range(len(points)))
    med = [s.median / div for s in stats]
    q1 = [s.q1 / div for s in stats]
    q3 = [s.q3 / div for s in stats]
    low = [min(p.samples, default=float("nan")) / div for p in points]
    high = [max(p.samples, default=float("nan")) / div for p in points]
    labels = [short_label(p.label) for p in points]
    # text as text in one named font (the browser falls back to its own sans-serif);
    # a fixed salt: the same series draws the same ids
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "wgharness", "font.size": 8,
                                "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"]}):  # fmt: skip
        fig, ax = plt.subplots(figsize=(8, 3.2))
        ax.vlines(x, low, high, color="#1f77b4", alpha=0.35, lw=1, label="lowest to highest sample")
        ax.fill_between(x, q1, q3, color="#1f77b4", alpha=0.2, lw=0, label="interquartile range")
        ax.plot(x, med, color="#1f77b4", marker="o", ms=3.5, lw=1.5, label="median")
        seen: set[Verdict] = set()
        for cp in change_points:
            if not 0 < cp.index < len(points):
                continue
            colour = COLOURS.get(cp.verdict, "#555")
            name = f"{cp.verdict} (last good | first bad)" if cp.verdict not in seen else None
            seen.add(cp.verdict)
            ax.axvline(cp.index - 0.5, color=colour, ls="--", lw=1.2, label=name)
            ax.plot([cp.index], [med[cp.index]], ls="none", marker=MARKERS.get(cp.verdict, "D"), ms=9,
                    color=colour, markeredgecolor="white")  # fmt: skip
            right = cp.index > 0.85 * len(points)  # near the right edge: the label goes left
            ax.annotate(f"{cp.change:+.1%}", (cp.index, med[cp.index]), xytext=(-6 if right else 6, 6),
                        textcoords="offset points", ha="right" if right else "left", color=colour,
                        fontsize=8, fontweight="bold")  # fmt: skip
        step = max(1, -(-len(points) // MAX_TICKS))
        shown = [i for i in x if i % step == 0 or i == x[-1]]
        crowded = len(shown) > 8 or max(len(labels[i]) for i in shown) > 10
        ax.set_xticks(shown, [labels[i] for i in shown], rotation=60 if crowded else 0,
                      ha="right" if crowded else "center", fontsize=7 if crowded else 8)  # fmt: skip
        ax.set_xlim(-0.5, len(points) - 0.5)
        if min(low) >= 0:  # from zero: a few percent must not look like a cliff
            ax.set_ylim(0, max(high) * 1.12 or 1)  # headroom for the change points' labels
        ax.set_xlabel("build (oldest first)")
        ax.set_ylabel(f"{series.metric} ({unit})" if unit else series.metric)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="best", ncol=2, framealpha=0.9)
        return figure_svg(fig, metadata={"Date": None})
