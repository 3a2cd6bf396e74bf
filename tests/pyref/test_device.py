"""Two pyref devices in memory: routing by allowed IPs, cryptokey routing on
receive, roaming, and drops counted."""

from __future__ import annotations

import os

import pytest

from harness.pyref.crypto import public_of, static_static
from harness.pyref.device import Device, Endpoint
from harness.pyref.ipv4 import echo_request
from harness.pyref.routing import AllowedIPs
from tests.support.pyref_wire import A_EP, B_EP, carry, pair


def test_longest_prefix_match_v4_and_v6() -> None:
    t: AllowedIPs[str] = AllowedIPs()
    t.insert("0.0.0.0/0", "default")
    t.insert("198.19.0.0/16", "wide")
    t.insert("198.19.0.2/32", "host")
    t.insert("2001:2::/48", "v6")
    assert t.lookup(bytes([198, 19, 0, 2])) == "host"
    assert t.lookup(bytes([198, 19, 7, 7])) == "wide"
    assert t.lookup(bytes([10, 0, 0, 1])) == "default"
    assert t.lookup(bytes.fromhex("20010002" + "00" * 12)) == "v6"
    assert t.lookup(bytes.fromhex("20010003" + "00" * 12)) is None
    t.remove_peer("host")
    assert t.lookup(bytes([198, 19, 0, 2])) == "wide"


def test_ping_through_two_devices() -> None:
    a, b = pair()
    ping = echo_request("198.19.0.1", "198.19.0.2", 1, 1)
    assert carry(a, b, a.send_packet(ping, 0.0)) == [ping]
    pong = echo_request("198.19.0.2", "198.19.0.1", 1, 1, b"back")
    more = b.send_packet(pong, 0.0)
    assert more and more[0][1] == A_EP
    _, got = a.receive_datagram(more[0][0], B_EP, 0.0)
    assert got == [pong]


def test_no_route_and_spoofed_inner_source_are_dropped() -> None:
    a, b = pair()
    assert a.send_packet(echo_request("198.19.0.1", "203.0.113.9", 1, 1), 0.0) == []
    assert a.counters.no_route == 1
    carry(a, b, a.send_packet(echo_request("198.19.0.1", "198.19.0.2", 1, 1), 0.0))
    spoofed = echo_request("198.19.0.66", "198.19.0.2", 1, 2)  # a may only send as 198.19.0.1
    assert carry(a, b, a.send_packet(spoofed, 0.0)) == []
    assert b.counters.not_allowed_source == 1


def test_roaming_follows_the_latest_authenticated_source() -> None:
    a, b = pair()
    carry(a, b, a.send_packet(echo_request("198.19.0.1", "198.19.0.2", 1, 1), 0.0))
    moved: Endpoint = ("198.18.0.1", 40000)
    carry(a, b, a.send_packet(echo_request("198.19.0.1", "198.19.0.2", 1, 2), 0.0), src_of_a=moved)
    entry = next(iter(b.peers.values()))
    assert entry.endpoint == moved
    assert b.send_packet(echo_request("198.19.0.2", "198.19.0.1", 1, 3), 0.0)[0][1] == moved
    forged = bytes([4, 0, 0, 0]) + next(iter(a.peers.values())).peer.current.keys.remote_index.to_bytes(
        4, "little"
    )  # type: ignore[union-attr]
    b.receive_datagram(forged + os.urandom(40), ("203.0.113.1", 1), 0.0)
    assert entry.endpoint == moved  # an unauthenticated packet does not move the endpoint


def test_initiation_from_a_stranger_is_counted() -> None:
    a, b = pair()
    c = Device(os.urandom(32), os.urandom)
    c.add_peer(b.static_public, ["198.19.0.2/32"], B_EP)
    out = c.send_packet(echo_request("198.19.0.3", "198.19.0.2", 1, 1), 0.0)
    before = static_static.cache_info()
    assert b.receive_datagram(out[0][0], ("198.18.0.3", 1), 0.0) == ([], [])
    assert b.counters.unknown_peer == 1 and b.counters.unauthenticated == 0
    # Looked up before the static-static DH (the kernel's noise.c): none was computed, nor
    # cached, so a flood of strangers cannot push the peers' secrets out of the cache.
    after = static_static.cache_info()
    assert (after.hits, after.misses, after.currsize) == (before.hits, before.misses, before.currsize)
    assert b.receive_datagram(b"", A_EP, 0.0) == ([], []) and b.receive_datagram(b"\x02", A_EP, 0.0) == (
        [],
        [],
    )


def test_a_known_initiator_uses_the_static_static_precomputed_for_it() -> None:
    """The device computes DH(static, static) when the peer (or our key) arrives, as the
    kernel's wg_noise_precompute_static_static, and the responder uses that result: no
    static-static is computed, nor looked up in a cache, while answering an initiation."""
    a, b = pair()
    [(init, _)] = a.send_packet(echo_request("198.19.0.1", "198.19.0.2", 1, 1), 0.0)
    before = static_static.cache_info()
    [(resp, _)], _ = b.receive_datagram(init, A_EP, 0.0)
    after = static_static.cache_info()
    assert resp[0] == 2 and (after.hits, after.misses) == (before.hits, before.misses)
    # After our key changes, the secret is the new key's: a handshake still completes.
    b.set_private_key(os.urandom(32))
    [entry] = a.peers.values()
    a.remove_peer(entry.peer.peer_public)
    a.add_peer(b.static_public, ["198.19.0.2/32"], B_EP)
    ping = echo_request("198.19.0.1", "198.19.0.2", 1, 2)
    assert carry(a, b, a.send_packet(ping, 10.0), 10.0) == [ping]


def test_many_peers_and_stale_indices() -> None:
    ka = os.urandom(32)
    a = Device(ka, os.urandom)
    others = []
    for i in range(200):
        k = os.urandom(32)
        d = Device(k, os.urandom)
        d.add_peer(public_of(ka), ["198.19.0.1/32"], A_EP)
        a.add_peer(public_of(k), [f"198.19.1.{i}/32"], ("198.18.1.1", 10000 + i))
        others.append(d)
    d, d_ep = others[123], ("198.18.1.1", 10123)
    ping = echo_request("198.19.1.123", "198.19.0.1", 1, 1)
    [(init, to)] = d.send_packet(ping, 0.0)
    assert to == A_EP
    [(resp, back)] = a.receive_datagram(init, d_ep, 0.0)[0]
    assert back == d_ep
    [(data, _)] = d.receive_datagram(resp, A_EP, 0.0)[0]
    assert a.receive_datagram(data, d_ep, 0.0)[1] == [ping]  # found by its receiver index among 200 peers
    a.remove_peer(d.static_public)
    [(again, _)] = d.send_packet(ping, 1.0)
    assert a.receive_datagram(again, d_ep, 1.0) == ([], []) and a.counters.unknown_peer == 1


def test_initiation_timestamps_are_wall_clock_through_the_offset() -> None:
    from harness.pyref.crypto import tai64n
    from harness.pyref.messages import parse_initiation
    from harness.pyref.noise import consume_initiation

    ka, kb = os.urandom(32), os.urandom(32)
    a = Device(ka, os.urandom)
    a.add_peer(public_of(kb), ["198.19.0.2/32"], B_EP)
    a.wall_offset = 1_800_000_000.0  # set after the peer exists: it must reach the peer too
    out = a.send_packet(echo_request("198.19.0.1", "198.19.0.2", 1, 1), 5.25)
    seen = consume_initiation(kb, parse_initiation(out[0][0]))
    # A responder remembers the largest timestamp it accepted from a key, across our restarts:
    # seconds since boot would be refused after a reboot.
    # Its nanoseconds whitened as the kernel's tai64n_now: 250_000_000 rounded down to 2^24 ns.
    assert seen.timestamp == tai64n(1_800_000_005.0)[:8] + (0x0E000000).to_bytes(4, "big")


def test_a_peer_with_a_low_order_key_gets_nothing_and_nothing_raises() -> None:
    # A point of order 8 on Curve25519 (listed among the points X25519 implementations
    # refuse, e.g. libsodium's blocklist): every DH with it gives all zeros.
    low = bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")
    d = Device(os.urandom(32), os.urandom)
    peer = d.add_peer(low, ["198.19.0.2/32"], B_EP)
    ping = echo_request("198.19.0.1", "198.19.0.2", 1, 1)
    assert d.send_packet(ping, 0.0) == [] and d.tick(10.0) == []
    assert peer.counters.unusable_key >= 1 and d.deadline() is None


def test_set_mtu_pads_every_peer_to_the_new_mtu() -> None:
    """The MTU comes from the interface through `Device.set_mtu`; padding follows it at
    once, for existing peers and ones added later (the kernel's send.c reads the MTU per
    packet, calculate_skb_padding; wireguard-go's device/send.go loads tun.mtu per packet)."""
    a, b = pair()
    ping = echo_request("198.19.0.1", "198.19.0.2", 1, 1, bytes(1377 - 28))  # 1377 bytes of IP
    assert carry(a, b, a.send_packet(ping, 0.0)) == [ping]

    def sealed_length() -> int:
        ((datagram, _),) = a.send_packet(ping, 0.0)
        return len(datagram) - 32  # the plaintext: packet and padding

    assert a.mtu == 1420 and sealed_length() == 1392  # the default MTU: to a multiple of 16
    assert a.set_mtu(1380) == 1380 and sealed_length() == 1380  # never past the MTU
    assert a.set_mtu(0) == 0 and sealed_length() == 1392  # unknown: multiples of 16
    assert a.set_mtu(1280) == 1280 and sealed_length() == 1377 + 15  # longer: padded as its 97 bytes past it
    c = public_of(os.urandom(32))
    assert a.add_peer(c, ["198.19.0.3/32"]).mtu == 1280
    assert a.set_mtu(100_000) == 65503 and a.peers[c].peer.mtu == 65503  # capped, as wireguard-go
    with pytest.raises(ValueError, match="negative"):
        a.set_mtu(-1)
    assert a.mtu == 65503
