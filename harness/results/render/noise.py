"""`wgharness noise`'s output: each metric's run-to-run spread per series and
lab (`harness.results.noise`), as a text table, Markdown or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence

from harness.codec import encode
from harness.results.noise import AA_ROUNDS, Spread
from harness.results.render.summary import table

HEADERS = ["lab", "series", "metric", "n", "builds", "CV", "start rounds"]
NOTE = (
    "CV: of the per-run medians of runs of one build (A/A); start rounds: what an A/A "
    "comparison of the sequential design takes in the median at that CV (docs/comparing.md)"
)


def _row(s: Spread) -> list[str]:
    rounds = str(s.rounds) + (" (above the measured range)" if s.cv > AA_ROUNDS[-1][0] else "")
    return [s.lab, s.series, s.key, str(s.n), str(s.builds), f"{s.cv:.1%}", rounds]


def render_text(spreads: Sequence[Spread]) -> str:
    return "\n".join([table(HEADERS, [_row(s) for s in spreads]), "", NOTE])


def render_markdown(spreads: Sequence[Spread]) -> str:
    out = ["# Run-to-run noise", "", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    out += ["| " + " | ".join(_row(s)) + " |" for s in spreads]
    return "\n".join([*out, "", NOTE, ""])


def render_json(spreads: Sequence[Spread]) -> str:
    return json.dumps({"spreads": [encode(s) for s in spreads]}, indent=1)


RENDERERS = {"text": render_text, "markdown": render_markdown, "json": render_json}
