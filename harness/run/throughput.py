"""One iperf3 measurement between two hosts: server first, wait for its port,
client with --json, server always stopped. Returns the parsed result and the
raw JSON (kept with the run)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from harness.errors import InfraError
from harness.lab.spec import FlowSpec, ThroughputParams
from harness.parsers.iperf import IperfResult, client_argv, parse_iperf_json, server_argv
from harness.targets.base import Target

PORT_TIMEOUT = 10.0


@dataclass(frozen=True)
class FlowRun:
    result: IperfResult
    raw_json: str


def empty_directions(result: IperfResult) -> list[str]:
    """The directions that carried nothing: zero throughput is a failure, never a pass."""
    return [d.direction for d in result.directions if not d.receiver_bps > 0 or d.receiver_bytes <= 0]


def wait_for_listener(host: Target, port: int, timeout: float = PORT_TIMEOUT, proto: str = "tcp") -> bool:
    """True once something listens on ``port`` on ``host`` (asks the host; no probe traffic)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if host.is_listening(port, proto):
            return True
        time.sleep(0.02)
    return False


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
        if not wait_for_listener(server, params.port):
            out, err = server_proc.output()
            raise InfraError(
                f"{server.name}: iperf3 server not listening on port {params.port} after "
                f"{PORT_TIMEOUT:g}s: {(out + err).decode('utf-8', 'replace').strip()[-300:]}"
            )
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
