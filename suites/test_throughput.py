"""Throughput through the tunnel with iperf3 --json.

Each lab flow (TCP one stream, N streams, reverse, bidirectional, UDP at a
rate) runs once per repetition. Every direction's receiver and sender rate,
retransmits, UDP loss and jitter and both ends' CPU use are stored with the
per-interval series, and with TCP each end's congestion control as iperf3
reported it (params ``sender_tcp_congestion``, ``receiver_tcp_congestion``);
the raw JSON is kept with the run. Zero throughput in
any direction fails the test.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.codec import encode
from harness.lab.spec import FlowSpec, ThroughputParams
from harness.parsers.iperf import DirectionResult, IperfError
from harness.progress import Progress
from harness.results.records import Direction, Measurement
from harness.run.orchestrator import LabInstance
from harness.run.throughput import empty_directions, run_flow

SUITE = "throughput"
PARAMS = ThroughputParams


def _direction_measurements(
    d: DirectionResult, flow: FlowSpec, repetition: int, tag: str
) -> list[Measurement]:
    params = {k: v for k, v in encode(flow).items() if k != "name" and v is not None}
    # iperf3's congestion control of each end, as it reported them (TCP only)
    for key in ("sender_tcp_congestion", "receiver_tcp_congestion"):
        if getattr(d, key):
            params[key] = getattr(d, key)
    series = [(iv.end, iv.bits_per_second) for iv in d.intervals if not iv.omitted]

    def m(
        metric: str, value: float, unit: str, direction: Direction, with_series: bool = False
    ) -> Measurement:
        return Measurement(
            suite=SUITE,
            case=flow.name,
            repetition=repetition,
            metric=metric,
            value=float(value),
            unit=unit,
            direction=direction,
            params=params,
            series=series if with_series else None,
            flow_direction=tag,
        )

    out = [
        m("receiver_bps", d.receiver_bps, "bit/s", Direction.HIGHER, with_series=True),
        m("sender_bps", d.sender_bps, "bit/s", Direction.HIGHER),
    ]
    if d.retransmits is not None:
        out.append(m("retransmits", d.retransmits, "count", Direction.LOWER))
    if d.lost_percent is not None:
        out.append(m("lost_percent", d.lost_percent, "%", Direction.LOWER))
    if d.jitter_ms is not None:
        out.append(m("jitter_ms", d.jitter_ms, "ms", Direction.LOWER))
    return out


def test_throughput(
    active_lab: LabInstance,
    suite_params: ThroughputParams,
    flow: FlowSpec,
    repetition: int,
    variant: str | None,
    record: Callable[[list[Measurement]], None],
    artifact: Callable[..., None],
    progress: Progress,
) -> None:
    params = suite_params
    client = active_lab.end(params.client)
    server = next(e for e in active_lab.ends if e is not client)
    try:
        run = run_flow(client.host, server.host, server.inner_ip, flow, params)
    except IperfError as exc:
        raise AssertionError(f"iperf3 failed: {exc}") from None
    case_id = f"{flow.name}-r{repetition}" + (f"-{variant}" if variant else "")
    artifact(f"iperf3-{case_id}.json", run.raw_json.encode(), "application/json")

    measurements: list[Measurement] = []
    for d in run.result.directions:
        measurements += _direction_measurements(d, flow, repetition, d.direction if flow.bidir else "")
    for metric, value in (
        ("cpu_client_pct", run.result.cpu_client_pct),
        ("cpu_server_pct", run.result.cpu_server_pct),
    ):
        measurements.append(Measurement(SUITE, flow.name, repetition, metric, value, "%", Direction.LOWER))
    record(measurements)
    rates = ", ".join(f"{d.direction} {d.receiver_bps / 1e6:.1f} Mbit/s" for d in run.result.directions)
    progress.step(f"throughput {case_id}: {rates}")

    empty = empty_directions(run.result)
    assert not empty, f"zero throughput ({', '.join(empty)}): the tunnel carried nothing"
