"""The handshake: how fast a tunnel comes up, how fast the end under test
answers, how much it takes, and what a flood of initiations does to its data path
and to another peer's handshake.

The prober (`harness.probe`) runs on the other tunnel end's host and speaks
WireGuard to the end under test (``dut``) at its endpoint on the lab's link,
with its own identities configured there as peers for the measurement.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from ipaddress import IPv4Address

import pytest

from harness.lab.spec import FlowSpec, HandshakeParams, ThroughputParams
from harness.probe.handshakes import FloodResult, LatencyResult, LoadResult, RateResult
from harness.probe.launch import (
    ProberSide,
    finish_probe,
    job,
    prober_peers,
    run_probe,
    second_address,
    sides,
    start_probe,
)
from harness.probe.underflood import FloodHandshakeResult
from harness.progress import Progress
from harness.results.records import Direction, Measurement
from harness.run.orchestrator import LabInstance
from harness.run.throughput import run_flow
from harness.targets.netns import NetnsTarget

SUITE = "handshake"
PARAMS = HandshakeParams


@pytest.fixture
def side(active_lab: LabInstance, suite_params: HandshakeParams) -> ProberSide:
    return sides(active_lab, suite_params.dut)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def test_time_to_tunnel(
    active_lab: LabInstance,
    repetition: int,
    record: Callable[[list[Measurement]], None],
    progress: Progress,
) -> None:
    """From bringing both ends up (start, configure) to the first ping answered through the tunnel."""
    a, _ = active_lab.ends
    started = active_lab.rebuild_tunnel()
    b = active_lab.ends[1]
    # One reply is enough: ping sends every 10 ms until it has one, or 10 s pass.
    done = a.host.run(["ping", "-c", "1", "-i", "0.01", "-w", "10", "-W", "1", b.inner_ip], timeout=30)
    elapsed = time.monotonic() - started
    assert done.ok, f"no packet through the tunnel within 10 s of bringing it up: {done.stdout[-200:]}"
    record([Measurement(SUITE, "time-to-tunnel", repetition, "seconds", elapsed, "s", Direction.LOWER)])
    progress.step(f"handshake time-to-tunnel r{repetition}: {elapsed * 1000:.0f} ms")


def test_handshake_latency(
    side: ProberSide,
    suite_params: HandshakeParams,
    repetition: int,
    record: Callable[[list[Measurement]], None],
    progress: Progress,
) -> None:
    p = suite_params
    with prober_peers(side, 8) as ids:
        r: LatencyResult = run_probe(
            side, job(side, "latency", ids, count=p.latency_count), timeout=60 + p.latency_count
        )
    rtts = [float(x) for x in r.rtt_ms]
    assert rtts, f"no handshake answered out of {p.latency_count} ({r.lost} lost)"
    series = [(float(i), v) for i, v in enumerate(rtts)]

    def m(metric: str, value: float, unit: str = "ms", direction: Direction = Direction.LOWER) -> Measurement:
        return Measurement(SUITE, "latency", repetition, metric, value, unit, direction)

    record([
        m("p50_ms", _quantile(rtts, 0.50)),
        m("p90_ms", _quantile(rtts, 0.90)),
        m("p99_ms", _quantile(rtts, 0.99)),
        Measurement(SUITE, "latency", repetition, "mean_ms", statistics.fmean(rtts), "ms", Direction.LOWER, series=series),
        m("lost", float(r.lost), "count"),
    ])  # fmt: skip
    progress.step(
        f"handshake latency r{repetition}: p50 {_quantile(rtts, 0.5):.2f} ms, p99 {_quantile(rtts, 0.99):.2f} ms "
        f"({len(rtts)} handshakes, {r.lost} lost)"
    )


def test_responder_rate(
    side: ProberSide,
    suite_params: HandshakeParams,
    repetition: int,
    record: Callable[[list[Measurement]], None],
    progress: Progress,
) -> None:
    p = suite_params
    with prober_peers(side, p.rate_peers) as ids:
        r: RateResult = run_probe(
            side,
            job(side, "rate", ids, duration=p.rate_duration, outstanding=p.rate_outstanding),
            timeout=120 + p.rate_duration,
        )
    rate = float(r.per_second)
    record([
        Measurement(SUITE, "responder-rate", repetition, "handshakes_per_s", rate, "1/s", Direction.HIGHER,
                    params={"peers": p.rate_peers, "outstanding": p.rate_outstanding}),
        Measurement(SUITE, "responder-rate", repetition, "cookie_replies", float(r.cookie_replies), "count", Direction.NONE),
    ])  # fmt: skip
    progress.step(
        f"handshake responder-rate r{repetition}: {rate:.0f} handshakes/s with {p.rate_peers} peers "
        f"({r.cookie_replies} cookie replies)"
    )
    assert r.responses > 0, "the device under test completed no handshake"


def test_under_load(
    side: ProberSide,
    suite_params: HandshakeParams,
    repetition: int,
    record: Callable[[list[Measurement]], None],
    progress: Progress,
) -> None:
    """The rate at which cookie replies begin, their share, and that a retry with MAC2 completes."""
    p = suite_params
    count = min(max(p.load_rates) * 2, 20_000)  # enough identities that none repeats within a step's second
    with prober_peers(side, count) as ids:
        r: LoadResult = run_probe(
            side,
            job(side, "load", ids, rates=list(p.load_rates), step_seconds=p.load_step),
            timeout=120 + len(p.load_rates) * p.load_step * 2,
        )
    onset = r.cookie_onset_rate
    top = r.steps[-1] if r.steps else None
    top_share, top_rate = (top.cookie_share, top.rate) if top else (0.0, None)
    ms = [
        Measurement(SUITE, "under-load", repetition, "cookie_share_at_top_rate",
                    float(top_share), "fraction", Direction.NONE, params={"rate": top_rate}),
        Measurement(SUITE, "under-load", repetition, "cookie_onset_found", 1.0 if onset is not None else 0.0,
                    "bool", Direction.NONE),
    ]  # fmt: skip
    if onset is not None:
        ms.append(
            Measurement(
                SUITE, "under-load", repetition, "cookie_onset_rate", float(onset), "1/s", Direction.NONE
            )
        )
        ms.append(
            Measurement(SUITE, "under-load", repetition, "mac2_retry_completed",
                        1.0 if r.retry_with_mac2_completed else 0.0, "bool", Direction.HIGHER)
        )  # fmt: skip
    record(ms)
    progress.step(
        f"handshake under-load r{repetition}: cookies from {onset if onset is not None else 'no rate tried'}"
        f"/s, share at {top_rate}/s {top_share:.0%}, "
        f"retry with MAC2 {'completed' if r.retry_with_mac2_completed else 'did not complete'}"
    )
    if onset is not None:
        assert r.retry_with_mac2_completed, "a retry with the cookie's MAC2 got no handshake response"


FLOOD_WARMUP = 2.0
"""Seconds of flood before the peer's first initiation: the DUT has seen it by then."""
FLOOD_GIVE_UP = 30.0
"""Seconds the peer waits for its handshake under the flood: six of its attempts."""


def test_handshake_under_flood(
    side: ProberSide,
    repetition: int,
    record: Callable[[list[Measurement]], None],
    progress: Progress,
) -> None:
    """A peer's handshake while another address of the prober's host floods the DUT with
    initiations (valid MAC1, random contents) as fast as the prober sends them: from its
    first initiation to the response (issue 22)."""
    if not isinstance(side.prober.host, NetnsTarget) or not isinstance(
        side.prober.spec.endpoint, IPv4Address
    ):
        pytest.skip("the flood's second address is added to a namespace host on an IPv4 link only")
    with prober_peers(side, 1) as ids, second_address(side) as flood_from:
        r: FloodHandshakeResult = run_probe(
            side,
            job(side, "handshake-under-flood", ids, bind=str(side.prober.spec.endpoint), flood_from=flood_from,
                warmup=FLOOD_WARMUP, give_up=FLOOD_GIVE_UP),
            timeout=FLOOD_WARMUP + FLOOD_GIVE_UP + 60,
        )  # fmt: skip

    def m(metric: str, value: float, unit: str, direction: Direction = Direction.NONE) -> Measurement:
        return Measurement(SUITE, "under-flood", repetition, metric, value, unit, direction,
                           params={"flood_rate": r.flood_rate})  # fmt: skip

    ms = [
        m("completed", 1.0 if r.completed else 0.0, "bool", Direction.HIGHER),
        m("flood_rate", r.flood_rate, "1/s"),
        m("initiations", float(r.initiations), "count"),
    ]
    if r.seconds is not None:
        ms.append(m("seconds_to_handshake", r.seconds, "s", Direction.LOWER))
    record(ms)
    outcome = f"in {r.seconds:.2f} s" if r.seconds is not None else f"none within {FLOOD_GIVE_UP:g} s"
    progress.step(
        f"handshake under-flood r{repetition}: {outcome} ({r.initiations} initiations, "
        f"{r.cookie_replies} cookie replies) under {r.flood_rate:.0f} initiations/s"
    )
    assert r.completed, f"no handshake within {FLOOD_GIVE_UP:g} s under {r.flood_rate:.0f} initiations/s"


def test_data_path_during_a_flood(
    side: ProberSide,
    suite_params: HandshakeParams,
    repetition: int,
    record: Callable[[list[Measurement]], None],
    progress: Progress,
) -> None:
    """iperf3 from the prober's side to the end under test, quiet and while the prober floods it."""
    p = suite_params
    flow = FlowSpec("tcp-1")
    tp = ThroughputParams(duration=p.flood_duration, omit=1, repeat=1, port=p.port)
    quiet = run_flow(side.prober.host, side.dut.host, side.dut.inner_ip, flow, tp).result.directions[0]
    with prober_peers(side, 256) as ids:
        flooder = start_probe(side, job(side, "flood", ids, rate=p.flood_rate, duration=p.flood_duration + 2))
        try:
            loud = run_flow(side.prober.host, side.dut.host, side.dut.inner_ip, flow, tp).result.directions[0]
            flood: FloodResult = finish_probe(flooder, "flood", timeout=p.flood_duration + 60)
        finally:
            flooder.kill()
    ratio = loud.receiver_bps / quiet.receiver_bps if quiet.receiver_bps else 0.0
    record([
        Measurement(SUITE, "flood", repetition, "receiver_bps_quiet", quiet.receiver_bps, "bit/s", Direction.HIGHER),
        Measurement(SUITE, "flood", repetition, "receiver_bps_flooded", loud.receiver_bps, "bit/s", Direction.HIGHER,
                    params={"flood_rate": p.flood_rate, "achieved_rate": flood.achieved_rate}),
        Measurement(SUITE, "flood", repetition, "flooded_over_quiet", ratio, "ratio", Direction.HIGHER),
    ])  # fmt: skip
    progress.step(
        f"handshake flood r{repetition}: {quiet.receiver_bps / 1e6:.0f} Mbit/s quiet, "
        f"{loud.receiver_bps / 1e6:.0f} Mbit/s under {flood.achieved_rate:.0f} initiations/s "
        f"({ratio:.2f}x)"
    )
    assert quiet.receiver_bps > 0 and loud.receiver_bps > 0, "zero throughput through the tunnel"
