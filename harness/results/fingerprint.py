"""A run's fingerprint: what, besides the build, decides its numbers. Computed
here and nowhere else, from what the store keeps (the runner's name, the lab
file's hash and each host's facts); `compare` refuses runs whose fingerprints
differ, `report` splits its series by them and `noise` groups by them.

The rules:

* The fields (`Fingerprint.fields`): ``runner``, ``lab file`` (its SHA-256, 12
  digits), and per host (``host a: ...``) its CPU model, cores, kernel,
  virtualization, a booted guest's accelerator, TCP congestion control, socket
  buffer limits (one field per sysctl), CPU frequency governor and each offload of
  its lab-link interface. Not the interface's name: it carries the lab instance's id.
* A field a run did not record (stored before it was recorded, or unknown on that
  host: no cpufreq in a guest, no ethtool) is left out, and two sides are compared
  only on the fields both recorded: old runs are not refused for what they lack.
* `Fingerprint.short` is a stable hash of all fields, 8 hex digits; a series
  label is ``runner@short``.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.results.records import RunDetails

RUNNER = "runner"
LAB_FILE = "lab file"


def _host_fields(facts: Mapping[str, Any]) -> dict[str, str]:
    """The fingerprint's fields of one host's stored facts ('' values left out)."""
    extra = facts.get("extra") or {}
    fields = {
        "CPU model": facts.get("cpu_model"),
        "cores": facts.get("cores") or None,
        "kernel": facts.get("kernel"),
        "virtualization": facts.get("virtualization"),
        "accelerator": extra.get("accelerator"),
        "tcp congestion control": facts.get("tcp_congestion_control"),
        **dict(sorted((facts.get("socket_buffers") or {}).items())),
        "cpu governor": facts.get("cpu_governor"),
        **{f"offload {k}": v for k, v in sorted((facts.get("link_offloads") or {}).items())},
    }
    return {name: str(value) for name, value in fields.items() if value not in (None, "")}


@dataclass(frozen=True)
class Fingerprint:
    """What a run ran on, as fields (label -> value); see the module's rules."""

    fields: tuple[tuple[str, str], ...]
    """(label, value) pairs in a fixed order: runner, lab file, then host by host."""

    @property
    def runner(self) -> str:
        """The runner's name; '' for a run stored before runners were."""
        return dict(self.fields).get(RUNNER, "")

    @property
    def short(self) -> str:
        """A stable hash of every field: 8 hex digits."""
        text = json.dumps(self.fields, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    @property
    def label(self) -> str:
        """``runner@short`` (``?@short`` without a runner): how series are named."""
        return f"{self.runner or '?'}@{self.short}"


def fingerprint(details: RunDetails) -> Fingerprint:
    """The fingerprint of a stored run."""
    fields: list[tuple[str, str]] = []
    if details.run.runner:
        fields.append((RUNNER, details.run.runner))
    if details.run.lab_sha256:
        fields.append((LAB_FILE, details.run.lab_sha256[:12]))
    for host in sorted(details.hosts, key=lambda h: h.host):
        fields += [(f"host {host.host}: {name}", value) for name, value in _host_fields(host.facts).items()]
    return Fingerprint(tuple(fields))


def differences(baseline: Iterable[Fingerprint], candidate: Iterable[Fingerprint]) -> list[str]:
    """Each field recorded on both sides whose values differ, one line each:
    ``host a: tcp congestion control: bbr vs cubic`` (a side's several values
    joined by commas, in sorted order)."""
    sides: list[dict[str, set[str]]] = []
    for prints in (baseline, candidate):
        seen: dict[str, set[str]] = defaultdict(set)
        for p in prints:
            for name, value in p.fields:
                seen[name].add(value)
        sides.append(seen)
    base, cand = sides
    order = list(dict.fromkeys([*base, *cand]))
    return [
        f"{name}: {', '.join(sorted(base[name]))} vs {', '.join(sorted(cand[name]))}"
        for name in order
        if name in base and name in cand and base[name] != cand[name]
    ]
