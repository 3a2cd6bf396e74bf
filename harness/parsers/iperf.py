"""iperf3 command lines, and the parser of the client's `--json` output.

Everything here is pure: the argv builders return lists (long options, checked
against iperf 3.12's `--help`), and ``parse_iperf_json`` turns the text the
client printed into an ``IperfResult``. Running the commands is
``harness.run.throughput``'s job.

Where iperf 3.12 puts each value in the client's JSON (read from the captures
in tests/data/iperf3/; "client" = the host running `iperf3 --client`):

    value                    | one direction (normal, -R)  | --bidir, reverse direction
    -------------------------+-----------------------------+--------------------------------
    sender bps, bytes        | end.sum_sent                | end.sum_sent_bidir_reverse
    TCP sender retransmits   | end.sum_sent.retransmits    | end.sum_sent_bidir_reverse.retr..
    receiver bps, bytes      | end.sum_received            | end.sum_received_bidir_reverse
    UDP jitter, loss, packets| end.sum                     | end.sum_bidir_reverse
    per-interval sums        | intervals[].sum             | intervals[].sum_bidir_reverse
    client / server CPU %    | end.cpu_utilization_percent.host_total / .remote_total

* ``sum_sent`` always describes the end that sends and ``sum_received`` the end
  that receives, whichever of client and server that is. With -R the server
  sends: ``sum_sent`` (and its retransmits) are the server's figures, passed to
  the client at the end of the test, and ``sum_received`` is the client's. Their
  ``"sender"`` flag says whether the *client* sends that direction: true normally,
  false with -R and (TCP) for the ``*_bidir_reverse`` sums; but UDP --bidir
  prints ``sum_sent_bidir_reverse`` with ``"sender": true``, so the flag is not
  used. --bidir's forward direction is the client sending.
* ``test_start`` holds protocol, num_streams, duration, omit and reverse, but no
  bidir flag in 3.12: --bidir is recognised by ``end.sum_sent_bidir_reverse``
  (or a ``test_start.bidir`` that newer versions may print).
* Intervals are measured by the client only, so they are the sender's view
  normally (TCP sums carry ``retransmits``; UDP sums carry ``packets`` only) and
  the receiver's view with -R (no retransmits; UDP sums carry jitter and loss).
  Under --bidir ``sum`` is the client sending, ``sum_bidir_reverse`` the client
  receiving.
* -O N: the first N intervals have ``"omitted": true``; both ends then reset
  their counters, so the next interval starts again near 0 s and ``end.*``
  exclude the omitted seconds. Each end resets at its own moment, so sender and
  receiver count slightly different spans (in tcp1.json the receiver counts more
  bytes than the sender).
* UDP ``end.sum``: ``bytes`` and ``bits_per_second`` are the sender's (as in
  ``sum_sent``), ``packets`` the number sent, ``jitter_ms``, ``lost_packets`` and
  ``lost_percent`` the receiver's (jitter averaged over the streams with -P).
  ``sum_sent`` carries zero jitter and loss; ``sum_received`` repeats the
  receiver's jitter and loss, but its ``packets`` can differ from ``end.sum``'s.
* ``retransmits`` (always there from Linux senders) is taken as unknown, None,
  when absent or negative, as for a sender that cannot count them.
* TCP: ``end.sender_tcp_congestion`` and ``end.receiver_tcp_congestion`` name
  the congestion control each end used (absent from UDP tests and from iperf3
  builds that cannot tell). "sender" is the end sending the one direction
  iperf3 prints them for (iperf_api.c, ``stream_must_be_sender``): the client
  normally, the server with -R, and with --bidir the server too (the client's
  last pass is its receiving one). So they are read as the client's and the
  server's algorithm, and each direction's sender and receiver follow.
* A failed test prints an ``"error"`` key (refused.json: ``end`` is ``{}``):
  ``IperfError``. Usage errors (e.g. -R with --bidir) print no JSON at all.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from harness.parsers import ParseError

PROTOCOLS = ("tcp", "udp")
BITRATE = re.compile(r"[0-9]+(\.[0-9]+)?[kKmMgGtT]?(/[0-9]+)?")


def server_argv(port: int, bind: str | None = None) -> list[str]:
    """A server that takes one test and exits. Its own output is not parsed."""
    _check_port(port)
    argv = ["iperf3", "--server", "--one-off", "--port", str(port)]
    if bind is not None:
        argv += ["--bind", bind]
    return argv


def client_argv(
    server: str,
    port: int,
    *,
    protocol: str = "tcp",
    streams: int = 1,
    reverse: bool = False,
    bidir: bool = False,
    bitrate: str | None = None,
    length: int | None = None,
    duration: int = 10,
    omit: int = 1,
    connect_timeout_ms: int | None = 5000,
) -> list[str]:
    """The client command, always with --json.

    ``bitrate`` is iperf3's ``#[KMGT][/#]`` (``"200M"``); without it iperf3 sends
    UDP at only 1 Mbit/s and TCP unlimited. ``reverse`` and ``bidir`` exclude each
    other (iperf3 refuses both). ValueError for arguments iperf3 would refuse.
    """
    _check_port(port)
    if not server:
        raise ValueError("server address is empty")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    if streams < 1:
        raise ValueError(f"streams {streams}: at least 1")
    if reverse and bidir:
        raise ValueError("reverse and bidir exclude each other")
    if bitrate is not None and not BITRATE.fullmatch(bitrate):
        raise ValueError(f"bitrate {bitrate!r}: expected a number with K/M/G/T and /burst optional")
    if length is not None and length < 1:
        raise ValueError(f"length {length}: at least 1")
    if duration < 1:
        raise ValueError(f"duration {duration}: at least 1 second")
    if omit < 0:
        raise ValueError(f"omit {omit}: cannot be negative")
    if connect_timeout_ms is not None and connect_timeout_ms < 1:
        raise ValueError(f"connect_timeout_ms {connect_timeout_ms}: at least 1")

    argv = ["iperf3", "--client", server, "--port", str(port), "--json"]
    argv += ["--time", str(duration), "--omit", str(omit)]
    if protocol == "udp":
        argv.append("--udp")
    if streams > 1:
        argv += ["--parallel", str(streams)]
    if reverse:
        argv.append("--reverse")
    if bidir:
        argv.append("--bidir")
    if bitrate is not None:
        argv += ["--bitrate", bitrate]
    if length is not None:
        argv += ["--length", str(length)]
    if connect_timeout_ms is not None:
        argv += ["--connect-timeout", str(connect_timeout_ms)]
    return argv


def _check_port(port: int) -> None:
    if not 1 <= port <= 0xFFFF:
        raise ValueError(f"port {port}: expected 1-65535")


class FlowDirection(StrEnum):
    """Which way one direction of a test carries data; a bidirectional flow's
    measurements keep the value (`Measurement.flow_direction`)."""

    FORWARD = "forward"
    """From client to server."""
    REVERSE = "reverse"
    """From server to client (-R, or --bidir's second direction)."""


@dataclass(frozen=True)
class Interval:
    """One reporting interval, summed over the streams of one direction."""

    start: float
    """Seconds since the test (or, after the omitted ones, the counted part) began."""
    end: float
    bits_per_second: float
    retransmits: int | None
    """TCP, and only when the client is the sender of this direction."""
    omitted: bool
    """Within the -O warm-up: not part of the end results."""


@dataclass(frozen=True)
class DirectionResult:
    """The end results of one direction of the test."""

    direction: FlowDirection
    sender_bps: float
    receiver_bps: float
    sender_bytes: int
    receiver_bytes: int
    retransmits: int | None
    """TCP sender retransmits (None for UDP or when the sender cannot tell)."""
    jitter_ms: float | None
    """UDP only, as measured by the receiver."""
    lost_packets: int | None
    """UDP only."""
    packets: int | None
    """UDP only: packets sent."""
    lost_percent: float | None
    """UDP only."""
    intervals: tuple[Interval, ...]
    """Per-interval sums for this direction, omitted ones flagged."""
    sender_tcp_congestion: str = ""
    """TCP: the congestion control of the end sending this direction ('' for UDP or unknown)."""
    receiver_tcp_congestion: str = ""
    """TCP: the congestion control of the end receiving this direction."""


@dataclass(frozen=True)
class IperfResult:
    version: str
    """As iperf3 prints it: "iperf 3.12"."""
    protocol: str
    """"tcp" or "udp"."""
    streams: int
    duration: int
    omit: int
    reverse: bool
    bidir: bool
    directions: tuple[DirectionResult, ...]
    """One (forward, or reverse with -R); two with --bidir, forward first."""
    cpu_client_pct: float
    cpu_server_pct: float

    def direction(self, name: FlowDirection) -> DirectionResult:
        for d in self.directions:
            if d.direction == name:
                return d
        raise KeyError(name)


class IperfError(Exception):
    """iperf3 reported an error in its JSON (the ``"error"`` key); the message is that error."""


def parse_iperf_json(text: str) -> IperfResult:
    """Parse `iperf3 --client … --json` output.

    IperfError when iperf3 reported an error; ParseError when the text is not
    iperf3 JSON (the message names the missing or wrong key).
    """
    try:
        doc = json.loads(text)
    except RecursionError:
        raise ParseError("iperf3 output: JSON nested too deeply") from None
    except ValueError as exc:
        raise ParseError(f"iperf3 output is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ParseError(f"iperf3 output: expected a JSON object, got {type(doc).__name__}")
    if "error" in doc:
        raise IperfError(str(doc["error"]) or "iperf3 reported an error without a message")

    start = _obj(doc, "start", "")
    test_start = _obj(start, "test_start", "start")
    end = _obj(doc, "end", "")
    intervals = _list(doc, "intervals", "")

    version = _value(start, "version", "start", str)
    protocol = _value(test_start, "protocol", "start.test_start", str).lower()
    if protocol not in PROTOCOLS:
        raise ParseError(f"iperf3 output: start.test_start.protocol {protocol!r} is not TCP or UDP")
    udp = protocol == "udp"
    reverse = bool(_int(test_start, "reverse", "start.test_start"))
    bidir = bool(test_start.get("bidir")) or "sum_sent_bidir_reverse" in end

    first = _direction(end, intervals, "", FlowDirection.REVERSE if reverse else FlowDirection.FORWARD, udp)
    directions: tuple[DirectionResult, ...] = (first,)
    if bidir:
        directions += (_direction(end, intervals, "_bidir_reverse", FlowDirection.REVERSE, udp),)
    if not udp:
        directions = _with_congestion(end, directions, client_sent=not (reverse or bidir))

    cpu = _obj(end, "cpu_utilization_percent", "end")
    return IperfResult(
        version=version,
        protocol=protocol,
        streams=_int(test_start, "num_streams", "start.test_start"),
        duration=_int(test_start, "duration", "start.test_start"),
        omit=_int(test_start, "omit", "start.test_start"),
        reverse=reverse,
        bidir=bidir,
        directions=directions,
        cpu_client_pct=_float(cpu, "host_total", "end.cpu_utilization_percent"),
        cpu_server_pct=_float(cpu, "remote_total", "end.cpu_utilization_percent"),
    )


def _direction(
    end: dict[str, Any], intervals: list[Any], suffix: str, name: FlowDirection, udp: bool
) -> DirectionResult:
    """One direction from the ``end.sum_sent{suffix}`` family and ``intervals[].sum{suffix}``."""
    sent_key, received_key = f"sum_sent{suffix}", f"sum_received{suffix}"
    sent = _obj(end, sent_key, "end")
    received = _obj(end, received_key, "end")
    sent_where, received_where = f"end.{sent_key}", f"end.{received_key}"

    jitter_ms = lost_packets = packets = lost_percent = None
    retransmits = None
    if udp:
        where = f"end.sum{suffix}"
        loss = _obj(end, f"sum{suffix}", "end")
        jitter_ms = _float(loss, "jitter_ms", where)
        lost_packets = _int(loss, "lost_packets", where)
        packets = _int(loss, "packets", where)
        lost_percent = _float(loss, "lost_percent", where)
    else:
        retransmits = _optional_count(sent, "retransmits", sent_where)

    series = []
    for i, item in enumerate(intervals):
        where = f"intervals[{i}]"
        if not isinstance(item, dict):
            raise ParseError(f"iperf3 output: {where} is not an object")
        where_sum = f"{where}.sum{suffix}"
        s = _obj(item, f"sum{suffix}", where)
        series.append(
            Interval(
                start=_float(s, "start", where_sum),
                end=_float(s, "end", where_sum),
                bits_per_second=_float(s, "bits_per_second", where_sum),
                retransmits=None if udp else _optional_count(s, "retransmits", where_sum),
                omitted=_flag(s, "omitted", where_sum),
            )
        )

    return DirectionResult(
        direction=name,
        sender_bps=_float(sent, "bits_per_second", sent_where),
        receiver_bps=_float(received, "bits_per_second", received_where),
        sender_bytes=_int(sent, "bytes", sent_where),
        receiver_bytes=_int(received, "bytes", received_where),
        retransmits=retransmits,
        jitter_ms=jitter_ms,
        lost_packets=lost_packets,
        packets=packets,
        lost_percent=lost_percent,
        intervals=tuple(series),
    )


def _with_congestion(
    end: dict[str, Any], directions: tuple[DirectionResult, ...], client_sent: bool
) -> tuple[DirectionResult, ...]:
    """``directions`` with each one's sender and receiver congestion control, from
    ``end``'s pair (whose "sender" is the client when ``client_sent``, else the server)."""
    sender = _optional_text(end, "sender_tcp_congestion", "end")
    receiver = _optional_text(end, "receiver_tcp_congestion", "end")
    client, server = (sender, receiver) if client_sent else (receiver, sender)
    return tuple(
        replace(d, sender_tcp_congestion=client, receiver_tcp_congestion=server)
        if d.direction is FlowDirection.FORWARD
        else replace(d, sender_tcp_congestion=server, receiver_tcp_congestion=client)
        for d in directions
    )


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _get(parent: dict[str, Any], key: str, where: str) -> Any:
    if key not in parent:
        raise ParseError(f"iperf3 output: {_path(where, key)} is missing")
    return parent[key]


def _value(parent: dict[str, Any], key: str, where: str, kind: type) -> Any:
    value = _get(parent, key, where)
    if not isinstance(value, kind):
        raise ParseError(
            f"iperf3 output: {_path(where, key)} is {type(value).__name__}, expected {kind.__name__}"
        )
    return value


def _obj(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value: dict[str, Any] = _value(parent, key, where, dict)
    return value


def _list(parent: dict[str, Any], key: str, where: str) -> list[Any]:
    value: list[Any] = _value(parent, key, where, list)
    return value


def _float(parent: dict[str, Any], key: str, where: str) -> float:
    value = _get(parent, key, where)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ParseError(f"iperf3 output: {_path(where, key)} is {value!r:.40}, expected a number")
    return float(value)


def _int(parent: dict[str, Any], key: str, where: str) -> int:
    value = _get(parent, key, where)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ParseError(f"iperf3 output: {_path(where, key)} is {value!r:.40}, expected an integer")


def _flag(parent: dict[str, Any], key: str, where: str) -> bool:
    """A true/false that may be absent (False then)."""
    if key not in parent:
        return False
    flag: bool = _value(parent, key, where, bool)
    return flag


def _optional_text(parent: dict[str, Any], key: str, where: str) -> str:
    """A string that may be absent ('' then)."""
    if key not in parent:
        return ""
    text: str = _value(parent, key, where, str)
    return text


def _optional_count(parent: dict[str, Any], key: str, where: str) -> int | None:
    """An integer that may be absent (or negative, for "unknown"): None then."""
    if key not in parent:
        return None
    count = _int(parent, key, where)
    return count if count >= 0 else None
