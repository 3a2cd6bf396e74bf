"""HTML reports with plots (SVG made by matplotlib, inlined so the page is one
self-contained file): a comparison's page, and the plots the nightly and history
reports use."""

from __future__ import annotations

import html
import io
from collections import defaultdict
from collections.abc import Sequence

from harness.results.compare import Comparison
from harness.results.records import THROUGHPUT_UNIT, RunDetails
from harness.results.render.comparison import HEADERS, row_cells, verdict_line


def figure_svg(fig: object, metadata: dict[str, str | None] | None = None) -> str:
    """``fig`` as an SVG element to inline (closed after); ``metadata``: matplotlib's
    SVG metadata (``{"Date": None}`` leaves the date out)."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata=metadata)  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    text = buf.getvalue()
    return text[text.index("<svg") :]


def series_plot(details: RunDetails) -> str | None:
    """Per-interval receiver rate of every flow of a run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ms = [m for m in details.measurements if m.metric == "receiver_bps" and m.series]
    if not ms:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for m in ms:
        tag = f" {m.flow_direction}" if m.flow_direction else ""
        ax.plot([t for t, _ in m.series or []], [v / 1e6 for _, v in m.series or []],
                marker=".", label=f"{m.case}{tag} r{m.repetition}")  # fmt: skip
    ax.set_ylim(bottom=0)  # from zero: a few percent must not look like a cliff
    ax.set_xlabel("time in flow (s)")
    ax.set_ylabel("receiver Mbit/s")
    ax.set_title(f"run {details.run.id}: per-interval throughput")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return figure_svg(fig)


def distribution_plot(base: dict[str, list[float]], cand: dict[str, list[float]], unit: str) -> str | None:
    """Every sample of each compared metric, baseline beside candidate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(set(base) | set(cand))
    if not keys:
        return None
    scale = 1e6 if unit == THROUGHPUT_UNIT else 1.0
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(keys) + 1.5))
    for i, key in enumerate(keys):
        for offset, values, colour, label in ((-0.15, base.get(key, []), "tab:blue", "baseline"),
                                               (0.15, cand.get(key, []), "tab:orange", "candidate")):  # fmt: skip
            ax.scatter([v / scale for v in values], [i + offset] * len(values), color=colour, s=18,
                       label=label if i == 0 else None)  # fmt: skip
    ax.set_yticks(range(len(keys)), keys, fontsize=7)
    ax.set_ylim(-0.5, len(keys) - 0.5)
    ax.set_xlabel("Mbit/s" if unit == THROUGHPUT_UNIT else unit)
    ax.set_title("samples per build")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return figure_svg(fig)


def html_page(title: str, c: Comparison, sections: Sequence[tuple[str, str | None]]) -> str:
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in [*row_cells(r), r.reason]) + "</tr>"
        for r in c.rows
    )
    head = "".join(f"<th>{html.escape(h)}</th>" for h in [*HEADERS, "reason"])
    notes = "".join(
        f"<li>{html.escape(n)}</li>" for n in [*c.mismatches, *c.infra, *c.failed_runs, *c.contended]
    )
    plots = "".join(f"<h2>{html.escape(name)}</h2>{svg}" for name, svg in sections if svg)
    runs = (
        f"<p>baseline {html.escape(c.baseline.text)}: {', '.join(r.id for r in c.base_runs) or '-'};\n"
        f"candidate {html.escape(c.candidate.text)}: {', '.join(r.id for r in c.cand_runs) or '-'}</p>"
    )
    verdict = verdict_line(c)
    colour = "#2a7" if verdict.startswith("verdict: OK") else "#c33"
    return page(
        title, verdict, colour, f"{runs}\n<ul>{notes}</ul><table><tr>{head}</tr>{rows}</table>{plots}"
    )


def page(title: str, verdict: str, colour: str, body: str) -> str:
    """One self-contained HTML page: the title, the verdict in ``colour``, then ``body``."""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:70em;margin:2em auto}}table{{border-collapse:collapse;font-size:85%}}
td,th{{border:1px solid #ccc;padding:.2em .5em}}.verdict{{color:{colour};font-weight:bold}}</style></head>
<body><h1>{html.escape(title)}</h1><p class="verdict">{html.escape(verdict)}</p>
{body}</body></html>
"""


def samples_by_key(
    store_details: Sequence[RunDetails], metrics: Sequence[str]
) -> tuple[dict[str, list[float]], str]:
    out: dict[str, list[float]] = defaultdict(list)
    unit = ""
    for d in store_details:
        for m in d.measurements:
            if m.metric in metrics:
                out[m.key].append(m.value)
                unit = m.unit
    return dict(out), unit
