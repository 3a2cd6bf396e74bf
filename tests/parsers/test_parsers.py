"""The pure parsers of `wg show IF dump` and `iperf3 --json`, on output captured
on a real machine (tests/data), and the iperf3 command builders."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.parsers import ParseError
from harness.parsers.iperf import (
    IperfError,
    IperfResult,
    client_argv,
    parse_iperf_json,
    server_argv,
)
from harness.parsers.wgdump import parse_wg_dump, redact_wg_dump
from tests.support.paths import DATA

IPERF_OK = ("tcp1", "tcp4", "reverse", "bidir", "udp", "udp_bidir", "udp_reverse")


def wg_text(name: str) -> str:
    return (DATA / "wg" / f"{name}.txt").read_text()


def iperf_text(name: str) -> str:
    return (DATA / "iperf3" / f"{name}.json").read_text()


def iperf_doc(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(iperf_text(name))
    return doc


def first_fields(text: str) -> list[list[str]]:
    return [line.split("\t") for line in text.splitlines()]


# --- wg show IF dump ---------------------------------------------------------

THREE_IF_PRIVATE = "IG9Nf1iGoKsSWsUAydQ63zrsUJiTww4qdNMhNf5s3Gc="
THREE_IF_PUBLIC = "2ry4vx20UKqW/ZBDf5s9B08f4UopHM+VmQEajDiwtXs="
PEER_HANDSHAKEN = "p80xEuUtmRMcvHlA1m2ageL7ZfBWjWVZExUj0i4G6Dg="
PEER_V6 = "ker15HIaDZhBz1kFbhor1DlthBy05vSSIpfgpY0MeWk="
PEER_EMPTY = "diaOeiQQatWQt/enVc/4IX11pfZcsEmnqESv3DQbkSY="
PSK_IF_PRIVATE = "AMxjOawTKkTGe+M9N8gEDUGiMCWJOfzORF7FY900QEU="
PSK = "NXwQT8U+NxQrYdObKqsKbkQ9qgno4mIcsONW44WlKPc="

# From wireguard-go with no key set, `wg set … fwmark 4660` and an IPv6 endpoint.
NO_KEY_FWMARK_DUMP = (
    "(none)\t(none)\t46728\t0x1234\n"
    "X69E8f2nW4umK+LGXxml3Mb3g6oCz64r15YV8T3ptAw=\t(none)\t[fd00::1]:51820\t"
    "::/0,0.0.0.0/0\t0\t0\t0\toff\n"
)


def test_wg_dump_three_peers() -> None:
    dump = parse_wg_dump(wg_text("dump_three_peers"))
    assert dump.public_key == THREE_IF_PUBLIC
    assert dump.listen_port == 51820
    assert dump.fwmark is None
    assert [p.public_key for p in dump.peers] == [PEER_HANDSHAKEN, PEER_V6, PEER_EMPTY]

    handshaken, v6, empty = dump.peers
    assert handshaken.has_preshared_key is False
    assert handshaken.endpoint == "198.18.0.2:51821"
    assert handshaken.allowed_ips == ("198.19.0.2/32",)
    assert handshaken.latest_handshake == 1795556672
    assert (handshaken.rx_bytes, handshaken.tx_bytes) == (658904360, 1312865232)
    assert handshaken.persistent_keepalive is None

    assert v6.endpoint is None
    assert v6.allowed_ips == ("198.19.0.50/32", "fd00:99::/64")
    assert (v6.latest_handshake, v6.rx_bytes, v6.tx_bytes) == (0, 0, 0)

    assert empty.endpoint is None and empty.allowed_ips == ()
    assert empty.latest_handshake == 0 and empty.persistent_keepalive is None

    assert dump.peer(PEER_V6) is v6
    assert dump.peer(THREE_IF_PUBLIC) is None
    assert THREE_IF_PRIVATE not in repr(dump)


def test_wg_dump_psk_and_keepalive() -> None:
    dump = parse_wg_dump(wg_text("dump_psk_keepalive"))
    assert dump.public_key == PEER_HANDSHAKEN
    assert dump.listen_port == 51821
    (peer,) = dump.peers
    assert peer.public_key == THREE_IF_PUBLIC
    assert peer.has_preshared_key is True
    assert peer.persistent_keepalive == 25
    assert peer.endpoint == "198.18.0.1:51820"
    assert (peer.rx_bytes, peer.tx_bytes) == (1137312496, 742675132)
    assert PSK not in repr(dump) and PSK_IF_PRIVATE not in repr(dump)


def test_wg_dump_without_keys_hex_fwmark_and_ipv6_endpoint() -> None:
    dump = parse_wg_dump(NO_KEY_FWMARK_DUMP)
    assert dump.public_key == ""
    assert dump.fwmark == 0x1234
    (peer,) = dump.peers
    assert peer.endpoint == "[fd00::1]:51820"
    assert peer.allowed_ips == ("::/0", "0.0.0.0/0")


@pytest.mark.parametrize(("printed", "mark"), [("off", None), ("4660", 4660), ("0x1234", 4660)])
def test_wg_dump_fwmark_decimal_or_hex(printed: str, mark: int | None) -> None:
    text = wg_text("dump_psk_keepalive").replace("\t51821\toff\n", f"\t51821\t{printed}\n")
    assert parse_wg_dump(text).fwmark == mark


def test_wg_dump_crlf_and_blank_lines() -> None:
    text = wg_text("dump_three_peers")
    crlf = "\r\n".join(text.splitlines()) + "\r\n\r\n"
    assert parse_wg_dump(crlf) == parse_wg_dump(text)


def _replace_field(text: str, line: int, field: int, value: str) -> str:
    rows = first_fields(text)
    rows[line][field] = value
    return "\n".join("\t".join(r) for r in rows) + "\n"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("", "empty"),
        ("\n\n", "empty"),
        ("garbage", "line 1"),
        # too few / too many fields on the interface line
        (f"{THREE_IF_PRIVATE}\t{THREE_IF_PUBLIC}\t51820\n", "line 1"),
        (f"wg0\t{THREE_IF_PRIVATE}\t{THREE_IF_PUBLIC}\t51820\toff\n", "wg show all dump"),
        # peer lines with 7 and 9 fields
        (wg_text("dump_three_peers").replace("\t0\t0\t0\toff\n", "\t0\t0\toff\n", 1), "line 3"),
        (wg_text("dump_psk_keepalive").replace("\t25\n", "\t25\textra\n"), "line 2"),
        (_replace_field(wg_text("dump_three_peers"), 0, 2, "port"), "listen-port"),
        (_replace_field(wg_text("dump_three_peers"), 0, 2, "70000"), "listen-port"),
        (_replace_field(wg_text("dump_three_peers"), 0, 3, "0xZZ"), "fwmark"),
        (_replace_field(wg_text("dump_three_peers"), 0, 1, "short="), "public-key"),
        (_replace_field(wg_text("dump_three_peers"), 1, 0, "!" * 44), "public-key"),
        (_replace_field(wg_text("dump_three_peers"), 1, 2, "198.18.0.2"), "endpoint"),
        (_replace_field(wg_text("dump_three_peers"), 1, 2, "fd00::1:51820"), "endpoint"),
        (_replace_field(wg_text("dump_three_peers"), 1, 2, "host:99999"), "endpoint"),
        (_replace_field(wg_text("dump_three_peers"), 2, 3, "198.19.0.50/32,nope"), "allowed-ips"),
        (_replace_field(wg_text("dump_three_peers"), 1, 4, "-1"), "latest-handshake"),
        (_replace_field(wg_text("dump_three_peers"), 1, 5, "1.5"), "transfer-rx"),
        (_replace_field(wg_text("dump_three_peers"), 1, 6, "١٢"), "transfer-tx"),
        (_replace_field(wg_text("dump_three_peers"), 1, 7, "on"), "persistent-keepalive"),
        (_replace_field(wg_text("dump_three_peers"), 2, 0, PEER_HANDSHAKEN), "repeated"),
    ],
)
def test_wg_dump_malformed_raises_parse_error(text: str, where: str) -> None:
    with pytest.raises(ParseError, match=where):
        parse_wg_dump(text)


@pytest.mark.parametrize(
    ("line", "field", "secret"),
    [(0, 0, THREE_IF_PRIVATE[:-2] + "!="), (0, 0, THREE_IF_PRIVATE[:30])],
)
def test_wg_dump_errors_do_not_quote_secrets(line: int, field: int, secret: str) -> None:
    with pytest.raises(ParseError, match="private-key") as info:
        parse_wg_dump(_replace_field(wg_text("dump_three_peers"), line, field, secret))
    assert secret not in str(info.value)

    bad_psk = PSK[:20]
    with pytest.raises(ParseError, match="preshared-key") as info:
        parse_wg_dump(_replace_field(wg_text("dump_psk_keepalive"), 1, 1, bad_psk))
    assert bad_psk not in str(info.value)


@pytest.mark.parametrize("name", ["dump_three_peers", "dump_psk_keepalive"])
def test_redact_hides_private_key_and_psk_only(name: str) -> None:
    text = wg_text(name)
    redacted = redact_wg_dump(text)
    for secret in (THREE_IF_PRIVATE, PSK_IF_PRIVATE, PSK):
        assert secret not in redacted
    before, after = first_fields(text), first_fields(redacted)
    assert len(before) == len(after)
    assert after[0][0] == "(hidden)" and after[0][1:] == before[0][1:]
    for old, new in zip(before[1:], after[1:], strict=True):
        assert new[0] == old[0]  # public keys stay
        assert new[1] == ("(none)" if old[1] == "(none)" else "(hidden)")
        assert new[2:] == old[2:]
    assert redacted.endswith("\n")
    # A stored, redacted dump still parses to the same facts.
    assert parse_wg_dump(redacted) == parse_wg_dump(text)


def test_redact_keeps_none_and_line_endings() -> None:
    redacted = redact_wg_dump(NO_KEY_FWMARK_DUMP)
    assert redacted == NO_KEY_FWMARK_DUMP
    crlf = wg_text("dump_psk_keepalive").replace("\n", "\r\n")
    out = redact_wg_dump(crlf)
    assert out.count("\r\n") == 2 and PSK not in out and PSK_IF_PRIVATE not in out


@pytest.mark.parametrize(
    "text",
    [
        f"wg0\t{THREE_IF_PRIVATE}\t{THREE_IF_PUBLIC}\t51820\toff\n",
        f"{THREE_IF_PRIVATE} {THREE_IF_PUBLIC} 51820 off\n",
        wg_text("dump_psk_keepalive").replace("\t25\n", "\n"),
    ],
)
def test_redact_refuses_what_is_not_a_dump(text: str) -> None:
    with pytest.raises(ParseError):
        redact_wg_dump(text)


# --- iperf3 --json -------------------------------------------------------------


def parse(name: str) -> IperfResult:
    return parse_iperf_json(iperf_text(name))


@pytest.mark.parametrize("name", IPERF_OK)
def test_iperf_header_fields_match_the_json(name: str) -> None:
    doc = iperf_doc(name)
    ts = doc["start"]["test_start"]
    cpu = doc["end"]["cpu_utilization_percent"]
    r = parse(name)
    assert r.version == "iperf 3.12" == doc["start"]["version"]
    assert r.protocol == ts["protocol"].lower()
    assert (r.streams, r.duration, r.omit) == (ts["num_streams"], ts["duration"], ts["omit"])
    assert r.reverse == bool(ts["reverse"])
    assert r.cpu_client_pct == cpu["host_total"]
    assert r.cpu_server_pct == cpu["remote_total"]
    assert len(r.directions) == (2 if r.bidir else 1)
    for d in r.directions:
        assert d.receiver_bps > 0 and d.sender_bps > 0
        assert d.receiver_bytes > 0 and d.sender_bytes > 0
        assert len(d.intervals) == len(doc["intervals"])
        assert [iv.omitted for iv in d.intervals] == [i["sum"]["omitted"] for i in doc["intervals"]]
        assert sum(iv.omitted for iv in d.intervals) == r.omit
        udp_fields = (d.jitter_ms, d.lost_packets, d.packets, d.lost_percent)
        if r.protocol == "udp":
            assert all(v is not None for v in udp_fields)
            assert d.retransmits is None
            assert all(iv.retransmits is None for iv in d.intervals)
        else:
            assert all(v is None for v in udp_fields)
            assert d.retransmits is not None and d.retransmits >= 0


@pytest.mark.parametrize(
    ("name", "protocol", "streams", "reverse", "bidir", "directions", "intervals"),
    [
        ("tcp1", "tcp", 1, False, False, ["forward"], 4),
        ("tcp4", "tcp", 4, False, False, ["forward"], 4),
        ("reverse", "tcp", 1, True, False, ["reverse"], 4),
        ("bidir", "tcp", 1, False, True, ["forward", "reverse"], 4),
        ("udp", "udp", 1, False, False, ["forward"], 3),
        ("udp_bidir", "udp", 1, False, True, ["forward", "reverse"], 2),
        ("udp_reverse", "udp", 1, True, False, ["reverse"], 3),
    ],
)
def test_iperf_structure(
    name: str,
    protocol: str,
    streams: int,
    reverse: bool,
    bidir: bool,
    directions: list[str],
    intervals: int,
) -> None:
    r = parse(name)
    assert (r.protocol, r.streams, r.reverse, r.bidir) == (protocol, streams, reverse, bidir)
    assert [d.direction for d in r.directions] == directions
    assert all(len(d.intervals) == intervals for d in r.directions)
    for d in r.directions:
        assert r.direction(d.direction) is d
    for absent in {"forward", "reverse"} - set(directions):
        with pytest.raises(KeyError):
            r.direction(absent)


def test_iperf_tcp1_values() -> None:
    r = parse("tcp1")
    d = r.direction("forward")
    assert d.sender_bps == 740983579.89107478
    assert d.receiver_bps == 741110392.82148755
    assert (d.sender_bytes, d.receiver_bytes) == (277872640, 278004960)
    assert d.retransmits == 30737
    assert r.cpu_client_pct == 1.6495232314842914
    assert r.cpu_server_pct == 8.4470889744609359
    first, second = d.intervals[:2]
    assert first.omitted and not second.omitted
    assert (first.start, first.end, first.retransmits) == (0.0, 1.00007, 9458)
    # After the omitted second the counters restart, and so does the interval time.
    assert second.start == 3.1e-05 and second.retransmits == 10140
    assert all(not iv.omitted for iv in d.intervals[1:])
    assert d.intervals[-1].bits_per_second == 765449803.8989048


def test_iperf_tcp4_sums_over_streams() -> None:
    doc = iperf_doc("tcp4")
    d = parse("tcp4").direction("forward")
    streams = doc["end"]["streams"]
    assert len(streams) == 4
    assert d.retransmits == sum(s["sender"]["retransmits"] for s in streams) == 43531
    assert d.sender_bytes == sum(s["sender"]["bytes"] for s in streams)
    assert d.receiver_bytes == sum(s["receiver"]["bytes"] for s in streams)
    for iv, raw in zip(d.intervals, doc["intervals"], strict=True):
        assert raw["sum"]["bytes"] == sum(s["bytes"] for s in raw["streams"])
        # The sum's rate is its bytes over its own seconds: close to the streams' total.
        assert iv.bits_per_second == raw["sum"]["bits_per_second"]
        assert iv.bits_per_second == pytest.approx(
            sum(s["bits_per_second"] for s in raw["streams"]), rel=1e-4
        )
        assert iv.retransmits == sum(s["retransmits"] for s in raw["streams"])


def test_iperf_reverse_takes_the_servers_send_side() -> None:
    doc = iperf_doc("reverse")
    end = doc["end"]
    # The client is not the sender of anything: every sum says "sender": false.
    assert end["sum_sent"]["sender"] is False
    d = parse("reverse").direction("reverse")
    assert d.sender_bps == end["sum_sent"]["bits_per_second"] == 733745166.28319037
    assert d.receiver_bps == end["sum_received"]["bits_per_second"] == 734748939.43540335
    assert d.retransmits == 30882  # the server's, sent over at the end
    # The client's intervals are the receiving side: no retransmits there.
    assert all(iv.retransmits is None for iv in d.intervals)
    assert d.intervals[0].omitted and d.intervals[0].bits_per_second == 697824667.262009


def test_iperf_bidir_maps_directions_by_stream_roles() -> None:
    doc = iperf_doc("bidir")
    r = parse("bidir")
    forward, reverse = r.directions
    streams = doc["end"]["streams"]
    client_sends = [s for s in streams if s["sender"]["sender"]]
    server_sends = [s for s in streams if not s["sender"]["sender"]]
    assert forward.sender_bytes == sum(s["sender"]["bytes"] for s in client_sends) == 179966208
    assert forward.receiver_bytes == sum(s["receiver"]["bytes"] for s in client_sends)
    assert reverse.sender_bytes == sum(s["sender"]["bytes"] for s in server_sends) == 174194688
    assert reverse.receiver_bytes == sum(s["receiver"]["bytes"] for s in server_sends)
    assert forward.retransmits == 15780 and reverse.retransmits == 14492
    assert reverse.receiver_bps == 464966498.26562363
    # Intervals: forward is what the client sent (with retransmits), reverse what it received.
    for i, raw in enumerate(doc["intervals"]):
        fwd_bytes = sum(s["bytes"] for s in raw["streams"] if s["sender"])
        rev_bytes = sum(s["bytes"] for s in raw["streams"] if not s["sender"])
        assert raw["sum"]["bytes"] == fwd_bytes and raw["sum_bidir_reverse"]["bytes"] == rev_bytes
        assert forward.intervals[i].bits_per_second == raw["sum"]["bits_per_second"]
        assert reverse.intervals[i].bits_per_second == raw["sum_bidir_reverse"]["bits_per_second"]
        assert forward.intervals[i].retransmits == raw["sum"]["retransmits"]
        assert reverse.intervals[i].retransmits is None
    assert [iv.omitted for iv in reverse.intervals] == [True, False, False, False]


def test_iperf_udp_loss_and_jitter_from_end_sum() -> None:
    end = iperf_doc("udp")["end"]
    d = parse("udp").direction("forward")
    assert d.jitter_ms == end["sum"]["jitter_ms"] == 0.012451612571302131
    assert d.lost_packets == 33
    assert d.packets == 54810
    assert d.lost_percent == pytest.approx(100 * 33 / 54810)
    assert d.sender_bytes == 74980080 and d.receiver_bytes == 74934936
    assert d.receiver_bps == end["sum_received"]["bits_per_second"]
    assert d.retransmits is None
    assert not any(iv.omitted for iv in d.intervals)


def test_iperf_udp_bidir_reverse_loss_from_sum_bidir_reverse() -> None:
    end = iperf_doc("udp_bidir")["end"]
    r = parse("udp_bidir")
    fwd, rev = r.direction("forward"), r.direction("reverse")
    assert fwd.jitter_ms == end["sum"]["jitter_ms"] == 0.01496108951932489
    assert rev.jitter_ms == end["sum_bidir_reverse"]["jitter_ms"] == 0.03718674158766095
    assert (fwd.packets, rev.packets) == (18268, 18277)
    assert (fwd.lost_packets, rev.lost_packets) == (0, 0)
    assert rev.sender_bps == end["sum_sent_bidir_reverse"]["bits_per_second"]
    assert rev.receiver_bps == end["sum_received_bidir_reverse"]["bits_per_second"]
    assert (rev.sender_bytes, rev.receiver_bytes) == (25002936, 24991992)
    # UDP prints "sender": true on the server's send sum: the flag is not what maps directions.
    assert end["sum_sent_bidir_reverse"]["sender"] is True


def test_iperf_udp_reverse() -> None:
    end = iperf_doc("udp_reverse")["end"]
    d = parse("udp_reverse").direction("reverse")
    assert d.jitter_ms == end["sum"]["jitter_ms"] == 0.007485799887174938
    assert (d.packets, d.lost_packets, d.lost_percent) == (17265, 0, 0.0)
    assert d.sender_bytes == d.receiver_bytes == 24999720
    assert [iv.omitted for iv in d.intervals] == [True, False, False]


def test_iperf_refused_is_iperf_error() -> None:
    with pytest.raises(IperfError, match="Connection refused") as info:
        parse("refused")
    assert str(info.value) == "unable to connect to server: Connection refused"
    assert not isinstance(info.value, ParseError)


def _without(name: str, *path: str | int) -> str:
    doc = iperf_doc(name)
    parent: Any = doc
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return json.dumps(doc)


def _with(name: str, value: Any, *path: str | int) -> str:
    doc = iperf_doc(name)
    parent: Any = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("", "not JSON"),
        ("iperf3: error - unable to connect", "not JSON"),
        (iperf_text("tcp1")[: len(iperf_text("tcp1")) // 2], "not JSON"),
        ("[]", "JSON object"),
        ("42", "JSON object"),
        ("{}", "start is missing"),
        ("[" * 100_000, "JSON"),
        (_without("tcp1", "end"), "end is missing"),
        (_without("tcp1", "start", "test_start"), "start.test_start is missing"),
        (_without("tcp1", "end", "sum_sent"), "end.sum_sent is missing"),
        (_without("tcp1", "end", "sum_received", "bits_per_second"), "end.sum_received.bits"),
        (_without("tcp1", "end", "cpu_utilization_percent"), "cpu_utilization_percent"),
        (_without("tcp1", "intervals", 2, "sum"), r"intervals\[2\].sum is missing"),
        (_without("udp", "end", "sum"), "end.sum is missing"),
        (_without("udp_bidir", "end", "sum_bidir_reverse"), "end.sum_bidir_reverse is missing"),
        (_without("bidir", "intervals", 1, "sum_bidir_reverse"), "sum_bidir_reverse is missing"),
        (_with("tcp1", "fast", "end", "sum_sent", "bits_per_second"), "expected a number"),
        (_with("tcp1", None, "end", "sum_received", "bytes"), "expected an integer"),
        (_with("tcp1", 1.5, "end", "sum_received", "bytes"), "expected an integer"),
        (_with("tcp1", True, "end", "sum_sent", "bits_per_second"), "expected a number"),
        (_with("tcp1", "SCTP", "start", "test_start", "protocol"), "protocol"),
        (_with("tcp1", "yes", "intervals", 0, "sum", "omitted"), "omitted"),
        (_with("tcp1", [], "intervals", 0), r"intervals\[0\]"),
        (_with("tcp1", {}, "end"), "end.sum_sent is missing"),
        (iperf_text("tcp1").replace("740983579.89107478", "NaN"), "expected a number"),
    ],
)
def test_iperf_malformed_raises_parse_error(text: str, where: str) -> None:
    with pytest.raises(ParseError, match=where):
        parse_iperf_json(text)


def test_iperf_optional_retransmits_absent_or_negative() -> None:
    # A sender that cannot count retransmits (not Linux) leaves the key out.
    r = parse_iperf_json(_without("reverse", "end", "sum_sent", "retransmits"))
    assert r.directions[0].retransmits is None
    r = parse_iperf_json(_with("tcp1", -1, "end", "sum_sent", "retransmits"))
    assert r.directions[0].retransmits is None


def _congestion(name: str, sender: str, receiver: str) -> str:
    """A capture with iperf3's end-of-test congestion pair set (every capture here says bbr twice)."""
    doc = iperf_doc(name)
    doc["end"]["sender_tcp_congestion"], doc["end"]["receiver_tcp_congestion"] = sender, receiver
    return json.dumps(doc)


def test_iperf_congestion_control_of_each_direction() -> None:
    """iperf3 names one sender and one receiver: the client and the server normally,
    the server and the client with -R and with --bidir (iperf_api.c prints the pair
    on the client's last pass, its receiving one). Each direction gets its own ends'."""
    assert [(d.sender_tcp_congestion, d.receiver_tcp_congestion) for d in parse("tcp1").directions] == [
        ("bbr", "bbr")
    ]
    # client cubic, server bbr, in all three modes:
    (forward,) = parse_iperf_json(_congestion("tcp1", "cubic", "bbr")).directions
    assert (forward.sender_tcp_congestion, forward.receiver_tcp_congestion) == ("cubic", "bbr")
    (reverse,) = parse_iperf_json(_congestion("reverse", "bbr", "cubic")).directions
    assert (reverse.sender_tcp_congestion, reverse.receiver_tcp_congestion) == ("bbr", "cubic")
    forward, reverse = parse_iperf_json(_congestion("bidir", "bbr", "cubic")).directions
    assert (forward.sender_tcp_congestion, forward.receiver_tcp_congestion) == ("cubic", "bbr")
    assert (reverse.sender_tcp_congestion, reverse.receiver_tcp_congestion) == ("bbr", "cubic")
    # UDP has none; an iperf3 that cannot tell leaves the keys out.
    assert all(d.sender_tcp_congestion == "" for d in parse("udp_bidir").directions)
    (d,) = parse_iperf_json(_without("tcp1", "end", "sender_tcp_congestion")).directions
    assert (d.sender_tcp_congestion, d.receiver_tcp_congestion) == ("", "bbr")
    with pytest.raises(ParseError, match="end.sender_tcp_congestion"):
        parse_iperf_json(_with("tcp1", 7, "end", "sender_tcp_congestion"))


def test_iperf_bidir_flag_in_test_start_is_honoured() -> None:
    r = parse_iperf_json(_with("bidir", 1, "start", "test_start", "bidir"))
    assert r.bidir and len(r.directions) == 2
    r = parse_iperf_json(_with("tcp1", 0, "start", "test_start", "bidir"))
    assert not r.bidir and len(r.directions) == 1


# --- command lines -------------------------------------------------------------


def test_server_argv() -> None:
    assert server_argv(5201) == ["iperf3", "--server", "--one-off", "--port", "5201"]
    assert server_argv(5202, bind="198.19.0.2") == [
        "iperf3",
        "--server",
        "--one-off",
        "--port",
        "5202",
        "--bind",
        "198.19.0.2",
    ]


def test_client_argv_defaults() -> None:
    assert client_argv("198.19.0.2", 5201) == [
        "iperf3", "--client", "198.19.0.2", "--port", "5201", "--json",
        "--time", "10", "--omit", "1", "--connect-timeout", "5000",
    ]  # fmt: skip


def test_client_argv_everything() -> None:
    argv = client_argv(
        "fd00::2",
        5301,
        protocol="udp",
        streams=4,
        bidir=True,
        bitrate="200M",
        length=1200,
        duration=3,
        omit=0,
        connect_timeout_ms=None,
    )
    assert argv == [
        "iperf3", "--client", "fd00::2", "--port", "5301", "--json",
        "--time", "3", "--omit", "0", "--udp", "--parallel", "4", "--bidir",
        "--bitrate", "200M", "--length", "1200",
    ]  # fmt: skip


def test_client_argv_reverse_single_stream() -> None:
    argv = client_argv("10.0.0.2", 5201, reverse=True, streams=1, bitrate="1.5G/10")
    assert "--reverse" in argv and "--parallel" not in argv and "--udp" not in argv
    assert argv[argv.index("--bitrate") + 1] == "1.5G/10"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"protocol": "sctp"},
        {"streams": 0},
        {"reverse": True, "bidir": True},
        {"bitrate": "fast"},
        {"bitrate": "1.5x"},
        {"length": 0},
        {"duration": 0},
        {"omit": -1},
        {"connect_timeout_ms": 0},
        {"port": 0},
        {"port": 70000},
        {"server": ""},
    ],
)
def test_client_argv_refuses_what_iperf3_would(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"server": "10.0.0.2", "port": 5201}
    args.update(kwargs)
    server, port = args.pop("server"), args.pop("port")
    with pytest.raises(ValueError):
        client_argv(server, port, **args)


# --- properties ------------------------------------------------------------------

WG_ALPHABET = st.sampled_from(list("\t\n\r ,:/[]().=+0123456789abcdefnoxAZ"))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet=WG_ALPHABET)))
def test_wg_dump_arbitrary_text_only_parse_error(text: str) -> None:
    for fn in (parse_wg_dump, redact_wg_dump):
        with contextlib.suppress(ParseError):
            fn(text)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=3),
    st.integers(min_value=0, max_value=7),
    st.text(max_size=50),
)
def test_wg_dump_mutated_field_only_parse_error(line: int, field: int, value: str) -> None:
    rows = first_fields(wg_text("dump_three_peers"))
    rows[line][field % len(rows[line])] = value
    text = "\n".join("\t".join(r) for r in rows)
    with contextlib.suppress(ParseError):
        parse_wg_dump(text)
    with contextlib.suppress(ParseError):
        redact_wg_dump(text)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_iperf_arbitrary_text_only_parse_or_iperf_error(text: str) -> None:
    with contextlib.suppress(ParseError, IperfError):
        parse_iperf_json(text)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(IPERF_OK), st.data(), JSON_VALUES, st.booleans())
def test_iperf_mutated_document_only_parse_or_iperf_error(
    name: str, data: st.DataObject, value: Any, delete: bool
) -> None:
    doc = copy.deepcopy(iperf_doc(name))
    path = data.draw(st.sampled_from(_paths(doc)))
    parent: Any = doc
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    with contextlib.suppress(ParseError, IperfError):
        parse_iperf_json(json.dumps(doc))
