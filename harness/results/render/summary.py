"""Plain-text tables of a stored run: what `wgharness run` ends with and what
`wgharness results show` prints. Every summary says what each host ran on
(bare metal, KVM, TCG or another hypervisor; CPU model and cores)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from harness.results.records import HostRecord, Measurement, RunDetails, RunSummary, impls_text


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None) -> str:
    """Columns padded to their widest cell; numbers (``right``) aligned right."""
    right = right or [False] * len(headers)
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).rjust(w) if r else str(c).ljust(w) for c, w, r in zip(cells, widths, right, strict=False)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _mbit(bps: float) -> str:
    return f"{bps / 1e6:,.1f}"


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def throughput_rows(measurements: Sequence[Measurement]) -> list[list[str]]:
    by_case: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    order: list[tuple[str, str]] = []
    for m in measurements:
        if m.suite != "throughput":
            continue
        # A run that interleaves variants gets one row per build: "case@build".
        key = (m.case + (f"@{m.build}" if m.build else ""), m.flow_direction)
        if key not in by_case:
            order.append(key)
        by_case[key][m.metric].append(m.value)
    # CPU is measured per flow, not per direction: share it with the flow's rows.
    cpu: dict[str, dict[str, list[float]]] = {
        case: values for (case, tag), values in by_case.items() if tag == "" and "cpu_client_pct" in values
    }
    rows = []
    for case, tag in order:
        values = by_case[case, tag]
        if "receiver_bps" not in values:
            continue
        recv = values["receiver_bps"]
        c = cpu.get(case, values)
        loss = values.get("lost_percent")
        retr = values.get("retransmits")
        rows.append([
            case,
            tag or "-",
            str(len(recv)),
            _mbit(_median(recv)),
            f"{_mbit(min(recv))}-{_mbit(max(recv))}",
            _mbit(_median(values.get("sender_bps", []))),
            f"{_median(retr):.0f}" if retr else "-",
            f"{_median(loss):.2f}" if loss else "-",
            f"{_median(c.get('cpu_client_pct', [])):.0f}/{_median(c.get('cpu_server_pct', [])):.0f}",
        ])  # fmt: skip
    # bidir flows store CPU once with an empty direction tag but no receiver rate: already skipped.
    return rows


THROUGHPUT_HEADERS = [
    "case", "dir", "n", "recv Mbit/s", "min-max", "send Mbit/s", "retr", "loss %", "cpu c/s %",
]  # fmt: skip


HANDSHAKE_METRICS = (
    ("time-to-tunnel", "seconds", "time to tunnel", 1000.0, "ms"),
    ("latency", "p50_ms", "latency p50", 1.0, "ms"),
    ("latency", "p99_ms", "latency p99", 1.0, "ms"),
    ("responder-rate", "handshakes_per_s", "responder rate", 1.0, "/s"),
    ("under-load", "cookie_onset_rate", "cookie replies from", 1.0, "/s"),
    ("under-load", "cookie_share_at_top_rate", "cookie share at top rate", 100.0, "%"),
    ("flood", "receiver_bps_quiet", "iperf3 quiet", 1e-6, "Mbit/s"),
    ("flood", "receiver_bps_flooded", "iperf3 under a flood", 1e-6, "Mbit/s"),
)


def _ends(m: Measurement) -> dict[str, str]:
    """What ran on each tunnel end for a variant's measurement (params ``impl_HOST``), by host."""
    return {k.removeprefix("impl_"): str(v) for k, v in m.params.items() if k.startswith("impl_")}


def _impl_of(m: Measurement) -> str:
    """What a measurement ran against: the suite's own ``impl``, a variant's build, or '-'."""
    return str(m.params.get("impl") or m.build or "-")


def handshake_table(measurements: Sequence[Measurement]) -> str | None:
    """Medians of the handshake suite's figures, one column per implementation (or build)."""
    values: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    columns: list[str] = []
    for m in measurements:
        if m.suite == "handshake":
            col = m.build or "-"
            if col not in columns:
                columns.append(col)
            values[m.case, m.metric][col].append(m.value)
    if not columns:
        return None
    rows = []
    for case, metric, label, scale, unit in HANDSHAKE_METRICS:
        got = values.get((case, metric))
        if got:
            rows.append(
                [
                    f"{label} ({unit})",
                    *(f"{_median(got[c]) * scale:,.2f}" if got.get(c) else "-" for c in columns),
                ]
            )
    return table(["handshake", *columns], rows, [False] + [True] * len(columns))


def conformance_matrix(measurements: Sequence[Measurement]) -> str | None:
    """Probes × implementations: pass or FAIL, with the value measured where a probe has one
    (a probe that ran more than once shows FAIL if any run failed, and its last value)."""
    verdicts: dict[str, dict[str, bool]] = defaultdict(dict)
    measured: dict[tuple[str, str], str] = {}
    probes: list[str] = []
    for m in measurements:
        if m.suite == "conformance" and m.metric == "conformant":
            if m.case not in probes:
                probes.append(m.case)
            impl = _impl_of(m)
            verdicts[impl][m.case] = verdicts[impl].get(m.case, True) and m.value >= 1.0
            if m.params.get("measured"):
                measured[impl, m.case] = str(m.params["measured"])
    if not probes:
        return None
    impls = list(verdicts)

    def cell(impl: str, probe: str) -> str:
        if probe not in verdicts[impl]:
            return "-"
        word = "pass" if verdicts[impl][probe] else "FAIL"
        value = measured.get((impl, probe))
        return f"{word} ({value})" if value else word

    rows = [[probe, *(cell(impl, probe) for impl in impls)] for probe in probes]
    return table(["probe", *impls], rows)


def interop_matrix(measurements: Sequence[Measurement]) -> str | None:
    """For a run that interleaves variants: which pair of implementations worked in which
    suite (ok: measured and nothing failed; FAIL: zero throughput or a failed probe)."""
    pairs: dict[str, str] = {}
    cells: dict[tuple[str, str], bool] = {}
    suites: list[str] = []
    for m in measurements:
        if not m.build or m.suite == "counters":
            continue
        ends = _ends(m)
        if ends:
            pairs.setdefault(m.build, " ↔ ".join(f"{h}={v.split()[0]}" for h, v in sorted(ends.items())))
        if m.suite not in suites:
            suites.append(m.suite)
        bad = (m.metric == "receiver_bps" and not m.value > 0) or (m.metric == "conformant" and m.value < 1)
        cells[m.build, m.suite] = cells.get((m.build, m.suite), True) and not bad
    if len(pairs) < 2:
        return None
    rows = [
        [
            f"{build}: {pair}",
            *("-" if (build, s) not in cells else "ok" if cells[build, s] else "FAIL" for s in suites),
        ]
        for build, pair in pairs.items()
    ]
    return table(["interop", *suites], rows)


def _virtualization(facts: dict[str, Any]) -> str:
    """What a stored host ran on (its facts' ``virtualization``, else, for runs stored
    before it was recorded, the vm's accelerator)."""
    extra = facts.get("extra") or {}
    if facts.get("virtualization"):
        return str(facts["virtualization"])
    if extra.get("accelerator"):
        return f"{str(extra['accelerator']).upper()} (QEMU, -cpu {extra.get('qemu_cpu') or '?'})"
    return "not recorded"


def hosts_table(hosts: Sequence[HostRecord]) -> str | None:
    """Per host: what it ran on (bare metal, KVM, TCG or the hypervisor detected),
    its CPU model and cores; a line under it for every host emulated by TCG."""
    if not hosts:
        return None
    rows = [
        [
            h.host,
            _virtualization(h.facts),
            str(h.facts.get("cpu_model") or "?"),
            str(h.facts.get("cores") or "?"),
        ]
        for h in hosts
    ]
    out = table(["host", "runs on", "CPU", "cores"], rows, [False, False, False, True])
    emulated = [h.host for h in hosts if _virtualization(h.facts).startswith(("TCG", "QEMU (TCG)"))]
    if emulated:
        out += (
            f"\nnote: {', '.join(emulated)} ran under TCG, QEMU's software emulation of the CPU: "
            "its figures are not those of hardware (compare them only with TCG runs)"
        )
    return out


def run_summary(details: RunDetails) -> str:
    s = details.summary
    impls = impls_text(s.impls) or "-"
    variants: dict[str, str] = {}
    for m in details.measurements:
        ends = _ends(m)
        if m.build and ends:
            variants.setdefault(m.build, ", ".join(f"{h}={v}" for h, v in sorted(ends.items())))
    if variants:
        impls = "; ".join(f"{build}: {ends}" for build, ends in variants.items())
    head = [
        f"run {s.id}  {s.status}  lab {s.lab_name}  build {s.build or '-'}  "
        f"{s.started_at:%Y-%m-%d %H:%M:%S} UTC",
        f"implementations: {impls}",
    ]
    if s.error:
        head.append(f"error: {s.error}")
    up = [m.value for m in details.measurements if m.metric == "lab_up_seconds"]
    if up:
        head.append(f"lab up in {up[0]:.2f}s")
    if s.overlap is not None:
        head.append(f"{'' if s.overlap.alone else 'note: '}{s.overlap}")
    hosts = hosts_table(details.hosts)
    if hosts:
        head += ["", hosts]
    rows = throughput_rows(details.measurements)
    parts = [table(THROUGHPUT_HEADERS, rows, [False, False] + [True] * 7)] if rows else []
    for extra in (
        handshake_table(details.measurements),
        conformance_matrix(details.measurements),
        interop_matrix(details.measurements),
    ):
        if extra:
            parts.append(extra)
    repro = any(m.suite == "repro" for m in details.measurements)  # its verdicts follow (timeline_text)
    body = "\n\n".join(parts) or ("(the verdicts below)" if repro else "(nothing measured)")
    return "\n".join(head) + "\n\n" + body


summary_table = run_summary


def runs_table(runs: Sequence[RunSummary]) -> str:
    rows = [
        [
            r.id,
            f"{r.started_at:%Y-%m-%d %H:%M:%S}",
            r.status,
            r.lab_name,
            r.build or "-",
            str(r.measurements),
            impls_text(r.impls) or "-",
        ]
        for r in runs
    ]
    return table(["run", "started (UTC)", "status", "lab", "build", "values", "implementations"], rows)


def timeline_text(timeline_json: bytes, verdicts_json: bytes | None) -> str:
    """A repro run's timeline (steps with their times) and verdicts, for `results show`."""
    import json

    steps = json.loads(timeline_json)
    rows = [[f"{s['t_start']:.2f}", f"{s['t_end']:.2f}", s["step"], s["detail"]] for s in steps]
    out = "timeline\n" + table(["start s", "end s", "step", "what happened"], rows)
    if verdicts_json is not None:
        verdicts = json.loads(verdicts_json).get("verdicts", [])
        vrows = [[v["status"], v["id"], v["description"], v["message"]] for v in verdicts]
        out += "\n\nverdicts\n" + table(["verdict", "id", "expectation", "measured"], vrows)
    return out
