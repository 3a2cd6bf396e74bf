"""The verdict matrix of repro bundles, as Markdown: one row per scenario, one
column per implementation of the subject, each cell its verdicts with the
measured values and how many of the capture's transport messages tshark
decrypted with the bundle's key log (`python -m harness.repro.matrix BUNDLE...`)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from harness.capture.tshark import decrypted_protocols
from harness.impl import ImplName
from harness.parsers.pcap import udp_packets, wg_type
from harness.repro.bundle import read_bundle
from harness.repro.expect import ExpectationStatus

MARKS: dict[str, str] = {ExpectationStatus.PASS: "pass", ExpectationStatus.FAIL: "**FAIL**"}
"""A cell's word for a status (any other: unmeasured)."""
ORDER = (ImplName.WIREGUARD_GO, ImplName.PYREF, ImplName.KERNEL)
"""The matrix's first columns; any other implementation follows, by name."""


def decrypted(files: dict[str, bytes]) -> str:
    """'decrypted D of T': transport messages whose inner packet tshark shows, of all that
    carry one."""
    pcap, keylog = files.get("capture.pcap", b""), files.get("keylog.txt", b"")
    # A keepalive (a transport message of 32 bytes: header and tag) has no inner packet.
    total = sum(1 for p in udp_packets(pcap) if wg_type(p.payload) == 4 and len(p.payload) > 32)
    if not pcap:
        return "no capture"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "c.pcap").write_bytes(pcap)
        (Path(tmp) / "k.txt").write_bytes(keylog)
        shown = sum(1 for p in decrypted_protocols(f"{tmp}/c.pcap", f"{tmp}/k.txt") if ":wg:ip" in p)
    return f"decrypted {shown} of {total}"


def cell(verdicts: list[dict[str, object]]) -> str:
    parts = []
    for v in verdicts:
        mark = MARKS.get(str(v["status"]), "unmeasured")
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
        rows.setdefault(manifest.scenario, {})[impl] = cell(verdicts) + "<br>" + decrypted(files)
    impls.sort(key=lambda i: (ORDER.index(i) if i in ORDER else len(ORDER), i))
    lines = ["| scenario | " + " | ".join(impls) + " |", "|---" * (len(impls) + 1) + "|"]
    for name in sorted(rows):
        lines.append(f"| {name} | " + " | ".join(rows[name].get(i, "not run") for i in impls) + " |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(matrix(sys.argv[1:]))
