"""One iperf3 measurement between two hosts: server first, wait for its port,
client with --json, server always stopped. Returns the parsed result and the
raw JSON (kept with the run)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.lab.spec import FlowSpec, ThroughputParams
from harness.parsers.iperf import IperfResult, client_argv, parse_iperf_json, server_argv
from harness.targets.base import Process, Target

PORT_TIMEOUT = 10.0


@dataclass(frozen=True)
class FlowRun:
    result: IperfResult
    raw_json: str


def empty_directions(result: IperfResult) -> list[str]:
    """The directions that carried nothing: zero throughput is a failure, never a pass."""
    return [d.direction for d in result.directions if not d.receiver_bps > 0 or d.receiver_bytes <= 0]


def wait_for_server(server: Target, process: Process, port: int, timeout: float = PORT_TIMEOUT) -> None:
    """Return once the iperf3 server ``process`` listens on ``port`` of ``server`` (asks
    the host; no probe traffic); `NotReady` if it ends first or ``timeout`` seconds pass."""
    process.wait_ready(lambda: server.is_listening(port), timeout, f"iperf3 to listen on port {port}")


def _on(host: Target, argv: list[str]) -> list[str]:
    return [host.tool(argv[0]), *argv[1:]]


def run_flow(
    client: Target, server: Target, server_ip: str, flow: FlowSpec, params: ThroughputParams
) -> FlowRun:
    rule = server.allow_inbound(params.port, "UDP" if flow.protocol == "udp" else "TCP")
    try:
        return _run_flow(client, server, server_ip, flow, params)
    finally:
        if rule:
            server.remove_rule(rule)


def _run_flow(
    client: Target, server: Target, server_ip: str, flow: FlowSpec, params: ThroughputParams
) -> FlowRun:
    server_proc = server.start(_on(server, server_argv(params.port, bind=server_ip)))
    try:
        wait_for_server(server, server_proc, params.port)
        argv = client_argv(
            server_ip,
            params.port,
            protocol=flow.protocol,
            streams=flow.streams,
            reverse=flow.reverse,
            bidir=flow.bidir,
            bitrate=flow.bitrate,
            length=flow.length,
            duration=params.duration,
            omit=params.omit,
        )
        done = client.run(_on(client, argv), timeout=params.duration + params.omit + 60)
        raw = done.stdout
        # parse_iperf_json raises IperfError when iperf3 reported one (that is a test
        # failure, not an infrastructure one) and ParseError on garbage.
        return FlowRun(parse_iperf_json(raw), raw)
    finally:
        server_proc.kill()
