"""A scenario's expectations checked against what its timeline observed.

Pure functions of the observations and the captured packets: every result
carries the measured value, so a failure says by how much, and a bundle's
results (its verdicts.json) can be recomputed from its own files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from harness.parsers.pcap import UdpPacket, wg_type
from harness.repro.scenario import DURATION_STEPS, Expectation, Scenario
from harness.repro.timeline import Observations


class ExpectationStatus(StrEnum):
    """How one expectation came out; a bundle's verdicts.json keeps the value."""

    PASS = "pass"
    FAIL = "fail"
    UNMEASURED = "unmeasured"
    """The value could not be taken: never a pass."""


@dataclass(frozen=True)
class ExpectationResult:
    """One expectation checked: what it asked, how it came out, and the value measured."""

    id: str
    what: str
    description: str
    status: ExpectationStatus
    measured: float | None
    unit: str
    message: str


def evaluate(scenario: Scenario, obs: Observations, packets: Sequence[UdpPacket]) -> list[ExpectationResult]:
    return [_check(x, obs, packets) for x in scenario.expectations]


def _window(x: Expectation, obs: Observations) -> tuple[float, float]:
    lo, hi = obs.started, obs.ended
    if x.after is not None:
        event = obs.event(x.after)
        ended = x.edge == "end" or (x.edge == "effect" and event.do in DURATION_STEPS)
        lo = event.end if ended else event.start
    if x.until is not None:
        hi = obs.event(x.until).start
    return lo, hi


def _result(
    x: Expectation, ok: bool | None, measured: float | None, unit: str, message: str
) -> ExpectationResult:
    status = (
        ExpectationStatus.UNMEASURED
        if ok is None
        else ExpectationStatus.PASS
        if ok
        else ExpectationStatus.FAIL
    )
    return ExpectationResult(x.id, x.what, x.describe(), status, measured, unit, message)


def _from(packets: Sequence[UdpPacket], src: set[str], lo: float, hi: float) -> list[UdpPacket]:
    return [p for p in packets if p.src in src and lo <= p.ts < hi]


def _check(x: Expectation, obs: Observations, packets: Sequence[UdpPacket]) -> ExpectationResult:
    lo, hi = _window(x, obs)
    if x.what == "resumes":
        assert x.traffic and x.within is not None
        ping = obs.pings.get(x.traffic)
        if ping is None:
            return _result(x, None, None, "s", f"no record of ping {x.traffic}")
        # The first request sent after the moment that was answered: a reply already on
        # its way then says nothing about the path afterwards.
        after = sorted(arrived for _, sent, arrived in ping.replies if sent >= lo)
        if not after:
            return _result(
                x,
                False,
                None,
                "s",
                f"no request sent in the {ping.stopped - lo:.1f}s after {x.after} was answered",
            )
        took = after[0] - lo
        return _result(x, took <= x.within, took, "s", f"first reply {took:.2f}s after {x.after}")
    if x.what == "throughput":
        assert x.traffic
        run = obs.iperfs.get(x.traffic)
        if run is None or run.receiver_bps is None:
            why = run.error if run is not None else "no record"
            return _result(x, False, 0.0, "Mbit/s", f"iperf3 {x.traffic}: {why}")
        mbps = run.receiver_bps / 1e6
        ok = True
        notes = [f"{mbps:.1f} Mbit/s"]
        if x.at_least_mbps is not None:
            ok = ok and mbps >= x.at_least_mbps
        if x.at_most_mbps is not None:
            ok = ok and mbps <= x.at_most_mbps
        if x.of is not None and x.at_least_ratio is not None:
            base = obs.iperfs.get(x.of)
            if base is None or not base.receiver_bps:
                return _result(x, None, mbps, "Mbit/s", f"{x.of} measured nothing to compare with")
            ratio = run.receiver_bps / base.receiver_bps
            notes.append(f"{ratio:.2f} x {x.of} ({base.receiver_bps / 1e6:.1f} Mbit/s)")
            ok = ok and ratio >= x.at_least_ratio
        return _result(x, ok, mbps, "Mbit/s", ", ".join(notes))
    if x.what == "handshakes":
        assert x.source and x.at_most is not None
        n = sum(1 for p in _from(packets, obs.addresses[x.source], lo, hi) if wg_type(p.payload) == 1)
        return _result(x, n <= x.at_most, float(n), "initiations", f"{n} initiations in {hi - lo:.1f}s")
    if x.what == "handshake":
        assert x.within is not None
        ends = set().union(*obs.addresses.values())
        responses = [p.ts for p in _from(packets, ends, lo, hi) if wg_type(p.payload) == 2]
        if not responses:
            return _result(
                x, False, None, "s", f"no handshake response in the {hi - lo:.1f}s after {x.after}"
            )
        took = responses[0] - lo
        return _result(x, took <= x.within, took, "s", f"response {took:.2f}s after {x.after}")
    if x.what == "counters_equal":
        hosts = list(obs.counters)
        if len(hosts) != 2:
            return _result(x, None, None, "B", "the final counters of both ends are not known")
        (rx_a, tx_a), (rx_b, tx_b) = obs.counters[hosts[0]], obs.counters[hosts[1]]
        diff = max(abs(tx_a - rx_b), abs(tx_b - rx_a))
        msg = f"{hosts[0]} sent {tx_a} B, {hosts[1]} got {rx_b} B; {hosts[1]} sent {tx_b} B, {hosts[0]} got {rx_a} B"
        return _result(x, diff <= x.tolerance_bytes, float(diff), "B", msg)
    if x.what == "no_packets":
        assert x.source and x.dest
        dst = obs.addresses[x.dest]
        n = sum(1 for p in _from(packets, obs.addresses[x.source], lo, hi) if p.dst in dst)
        return _result(
            x, n == 0, float(n), "packets", f"{n} packets {x.source} -> {x.dest} in {hi - lo:.1f}s"
        )
    # ping_loss
    assert x.traffic and x.at_most_pct is not None
    ping = obs.pings.get(x.traffic)
    loss = ping.loss_pct(lo if x.after else None, hi if x.until else None) if ping else None
    if loss is None:
        return _result(x, None, None, "%", f"no requests of ping {x.traffic} in the window")
    return _result(x, loss <= x.at_most_pct, loss, "%", f"{loss:.1f}% lost")
