"""What a peer delivers from an authenticated transport packet, on in-memory peers:
what the kernel's src/receive.c, wg_packet_consume_data_done, delivers (an IPv4 or
IPv6 packet, cut at the length in its header so the padding goes) and what it drops
(anything else, counted). wireguard-go's device/receive.go,
RoutineSequentialReceiver, drops the same packets."""

from __future__ import annotations

import ipaddress
import os
import struct

import pytest

from harness.pyref.crypto import public_of
from harness.pyref.ipv4 import echo_request
from harness.pyref.peer import Peer
from tests.support.pyref_wire import carry, pair

PING = echo_request("198.19.0.1", "198.19.0.2", 1, 1)  # 37 bytes: 11 of padding on the wire
assert len(PING) == 37


def peers() -> tuple[Peer, Peer]:
    """a and b with a confirmed session, a the initiator."""
    ka, kb = os.urandom(32), os.urandom(32)
    a, b = Peer(ka, public_of(kb), os.urandom), Peer(kb, public_of(ka), os.urandom)
    [init] = a.send(PING, 0.0)
    [response], _ = b.receive(init, 0.0)
    [first], _ = a.receive(response, 0.0)
    assert b.receive(first, 0.0)[1] == [PING]
    return a, b


def ipv4_length(packet: bytes, length: int) -> bytes:
    return packet[:2] + struct.pack("!H", length) + packet[4:]


def ipv6(payload: bytes, payload_length: int | None = None) -> bytes:
    """An IPv6 packet with no next header (59) from 2001:db8::1 to 2001:db8::2."""
    n = len(payload) if payload_length is None else payload_length
    src, dst = (ipaddress.IPv6Address(f"2001:db8::{i}").packed for i in (1, 2))
    return struct.pack("!IHBB", 6 << 28, n, 59, 64) + src + dst + payload


# (what a seals, what b delivers; None: dropped). On the wire each is padded to 16 bytes.
DELIVERED = {
    "ipv4, its padding cut off": (PING, PING),
    "ipv4 whose length takes in the padding": (ipv4_length(PING, 48), ipv4_length(PING, 48) + bytes(11)),
    "ipv4 of just a header": (ipv4_length(PING, 20), ipv4_length(PING, 20)[:20]),
    "ipv6, its padding cut off": (ipv6(b"x" * 10), ipv6(b"x" * 10)),
    "ipv6 whose length takes in the padding": (ipv6(b"x" * 10, 24), ipv6(b"x" * 10, 24) + bytes(14)),
}
DROPPED = {
    "ipv4 longer than what arrived": (ipv4_length(PING, 49), "bad_length"),
    "ipv4 far longer": (ipv4_length(PING, 1500), "bad_length"),
    "ipv4 length below its header": (ipv4_length(PING, 19), "bad_length"),
    "ipv4 length zero": (ipv4_length(PING, 0), "bad_length"),
    "ipv6 longer than what arrived": (ipv6(b"x" * 10, 25), "bad_length"),
    "ipv6 payload of 65535": (ipv6(b"x" * 10, 0xFFFF), "bad_length"),
    "version 4, shorter than its header": (PING[:10], "not_ip"),
    "version 6, shorter than its header": (ipv6(b"")[:30], "not_ip"),
    "version 5": (bytes([0x50]) + PING[1:], "not_ip"),
    "version 0": (bytes(40), "not_ip"),
    "a single byte": (b"\x45", "not_ip"),
}


@pytest.mark.parametrize("name", list(DELIVERED))
def test_ip_packets_are_delivered_without_their_padding(name: str) -> None:
    """wg_packet_consume_data_done trims the packet to the IP header's length (total
    length; IPv6: 40 + payload length) and delivers it, so bytes the sender counted in
    that length arrive even where they are the padding."""
    sent, delivered = DELIVERED[name]
    a, b = peers()
    assert b.receive(a.send(sent, 1.0)[0], 1.0)[1] == [delivered]
    assert b.counters.rejected() == 0


@pytest.mark.parametrize("name", list(DROPPED))
def test_what_upstream_drops_is_dropped_and_counted(name: str) -> None:
    """wg_packet_consume_data_done: neither IPv4 nor IPv6, or shorter than its header, is
    dishonest_packet_type (rx_frame_errors: pyref's not_ip); an IPv4 total length below
    20 or an IP length beyond the bytes that arrived is dishonest_packet_size
    (rx_length_errors: bad_length). RoutineSequentialReceiver drops the same."""
    sent, counter = DROPPED[name]
    a, b = peers()
    out, delivered = b.receive(a.send(sent, 1.0)[0], 1.0)
    assert delivered == [] and out == []
    assert getattr(b.counters, counter) == 1 and b.counters.rejected() == 1
    assert b.receive(a.send(PING, 1.1)[0], 1.1)[1] == [PING]  # the session goes on


def test_a_keepalive_is_not_a_drop() -> None:
    """A plaintext of length 0 is a keepalive (wg_packet_consume_data_done): nothing to
    deliver, nothing counted."""
    a, b = peers()
    assert b.receive(a.send(b"", 1.0)[0], 1.0) == ([], [])
    assert b.counters.rejected() == 0


def test_a_device_drops_it_before_cryptokey_routing_and_still_roams() -> None:
    """On a device: the packet authenticated, so the peer's endpoint follows it
    (wg_packet_consume_data_done sets the endpoint before it looks inside), but it is
    dropped as a bad length, not as a disallowed source."""
    a, b = pair()
    assert carry(a, b, a.send_packet(PING, 0.0)) == [PING]
    moved = ("198.18.0.1", 40000)
    assert carry(a, b, a.send_packet(ipv4_length(PING, 49), 1.0), 1.0, src_of_a=moved) == []
    entry = next(iter(b.peers.values()))
    assert entry.peer.counters.bad_length == 1 and b.counters.not_allowed_source == 0
    assert entry.endpoint == moved
    assert b.send_packet(echo_request("198.19.0.2", "198.19.0.1", 1, 2), 1.0)[0][1] == moved
