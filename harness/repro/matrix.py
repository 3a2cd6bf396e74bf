"""The verdict matrix of repro bundles, as Markdown: one row per scenario, one
column per implementation of the subject, each cell its verdicts with the
measured values (`python -m harness.repro.matrix BUNDLE...`)."""

from __future__ import annotations

import json
import sys

from harness.repro.bundle import read_bundle


def cell(verdicts: list[dict[str, object]]) -> str:
    parts = []
    for v in verdicts:
        mark = {"pass": "pass", "fail": "**FAIL**"}.get(str(v["status"]), "unmeasured")
        value = v.get("measured")
        shown = f" {value:.3g} {v['unit']}" if isinstance(value, int | float) else ""
        parts.append(f"{v['id']} {mark}{shown}")
    return "<br>".join(parts)


def matrix(paths: list[str]) -> str:
    rows: dict[str, dict[str, str]] = {}
    impls: list[str] = []
    for path in paths:
        manifest, files = read_bundle(path)
        impl = manifest.impl or json.loads(files["facts.json"])["implementations"][manifest.subject]["impl"]
        if impl not in impls:
            impls.append(impl)
        verdicts = json.loads(files["verdicts.json"])["verdicts"]
        rows.setdefault(manifest.scenario, {})[impl] = cell(verdicts)
    lines = ["| scenario | " + " | ".join(impls) + " |", "|---" * (len(impls) + 1) + "|"]
    for name in sorted(rows):
        lines.append(f"| {name} | " + " | ".join(rows[name].get(i, "not run") for i in impls) + " |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(matrix(sys.argv[1:]))
