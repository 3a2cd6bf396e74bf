"""Fuzzing the pyref core (hypothesis): every parser and every entry point that
takes bytes from the network, with arbitrary bytes and with bit flips of real
messages. Nothing may raise, every datagram refused is counted somewhere, no
mutated datagram delivers a packet, and the device's memory stays bounded."""

from __future__ import annotations

import dataclasses
import functools
import os
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.pyref.cookie import CookieMaker, LoadPolicy
from harness.pyref.crypto import public_of
from harness.pyref.device import Device, Endpoint
from harness.pyref.ipv4 import echo_request
from harness.pyref.messages import (
    COOKIE_REPLY,
    COOKIE_REPLY_LEN,
    INITIATION,
    INITIATION_LEN,
    RESPONSE,
    RESPONSE_LEN,
    TRANSPORT,
    MessageError,
    parse_cookie_reply,
    parse_initiation,
    parse_response,
    parse_transport,
)
from harness.pyref.noise import create_initiation
from harness.pyref.peer import Peer
from harness.pyref.transport import REKEY_AFTER_TIME
from tests.support.pyref_wire import A_EP, B_EP, carry

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PING = echo_request("198.19.0.1", "198.19.0.2", 1, 1)

PARSERS: list[tuple[Callable[[bytes], object], int, int | None]] = [
    (parse_initiation, INITIATION, INITIATION_LEN),
    (parse_response, RESPONSE, RESPONSE_LEN),
    (parse_cookie_reply, COOKIE_REPLY, COOKIE_REPLY_LEN),
    (parse_transport, TRANSPORT, None),
]


def typed(kind: int) -> st.SearchStrategy[bytes]:
    """Bytes that start like a message of ``kind``, of any length, the right one often."""
    lengths = {INITIATION: INITIATION_LEN, RESPONSE: RESPONSE_LEN, COOKIE_REPLY: COOKIE_REPLY_LEN}
    exact = lengths.get(kind, 32) - 4
    rest = st.one_of(st.binary(min_size=exact, max_size=exact), st.binary(max_size=200))
    return rest.map(lambda r: bytes([kind, 0, 0, 0]) + r)


GARBAGE = st.one_of(st.binary(max_size=200), st.integers(0, 6).flatmap(typed))
SOURCES = st.tuples(st.ip_addresses().map(str), st.integers(0, 65535))


# -- parsers -----------------------------------------------------------------
@FUZZ
@given(GARBAGE)
def test_parsers_raise_only_message_error_and_round_trip(data: bytes) -> None:
    for parse, _, _ in PARSERS:
        try:
            msg = parse(data)
        except MessageError:
            continue
        assert msg.encode() == data  # type: ignore[attr-defined]


@FUZZ
@given(st.sampled_from(PARSERS), st.binary(max_size=100))
def test_well_framed_messages_parse(
    parser: tuple[Callable[[bytes], object], int, int | None], body: bytes
) -> None:
    parse, kind, length = parser
    size = length if length is not None else 32 + len(body)
    data = (bytes([kind, 0, 0, 0]) + body + bytes(size))[:size]
    assert parse(data).encode() == data  # type: ignore[attr-defined]


# -- a world of real messages to mutate ---------------------------------------
@dataclass
class World:
    a: Device
    b: Device
    initiation: bytes  # a -> b
    response: bytes  # b -> a
    transport: bytes  # a -> b, delivered once already
    cookie_reply: bytes  # b -> a, for a's first initiation (b under load then)


def make_world() -> World:
    ka, kb = os.urandom(32), os.urandom(32)
    a, b = Device(ka, os.urandom), Device(kb, os.urandom, load_policy=LoadPolicy(always=True))
    a.add_peer(public_of(kb), ["198.19.0.2/32"], B_EP)
    b.add_peer(public_of(ka), ["198.19.0.1/32"], A_EP)
    [(first, _)] = a.send_packet(PING, 0.0)
    [(cookie_reply, _)], _ = b.receive_datagram(first, A_EP, 0.0)
    a.receive_datagram(cookie_reply, B_EP, 0.0)
    b.load_policy = LoadPolicy()
    [(initiation, _)] = a.tick(10.0)
    [(response, _)], _ = b.receive_datagram(initiation, A_EP, 10.0)
    [(transport, _)], _ = a.receive_datagram(response, B_EP, 10.0)
    assert b.receive_datagram(transport, A_EP, 10.0)[1] == [PING]
    return World(a, b, initiation, response, transport, cookie_reply)


@functools.cache
def world() -> World:
    return make_world()


def reactions(dev: Device) -> int:
    """Everything the device and its peers counted: drops, and cookie replies sent."""
    total = sum(dataclasses.astuple(dev.counters))
    for entry in dev.peers.values():
        c = entry.peer.counters
        total += c.rejected() + c.cookies_received
    return total


def flip(message: bytes, bits: list[int]) -> bytes:
    out = bytearray(message)
    for bit in bits:
        out[bit // 8 % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


MUTATIONS = st.tuples(
    st.sampled_from(["initiation", "response", "transport", "cookie_reply"]),
    st.lists(st.integers(0, 8 * INITIATION_LEN - 1), min_size=1, max_size=4, unique=True),
)


# -- the device ---------------------------------------------------------------
@FUZZ
@given(GARBAGE, SOURCES)
def test_device_counts_every_garbage_datagram(data: bytes, source: Endpoint) -> None:
    w = world()
    for dev in (w.a, w.b):
        before = reactions(dev)
        out, delivered = dev.receive_datagram(data, source, 20.0)
        assert delivered == [] and reactions(dev) > before
        assert all(d[0] == COOKIE_REPLY and to == source for d, to in out)


@FUZZ
@given(MUTATIONS, SOURCES)
def test_device_refuses_and_counts_every_mutated_message(
    mutation: tuple[str, list[int]], source: Endpoint
) -> None:
    w = world()
    which, bits = mutation
    original = getattr(w, which)
    mutated = flip(original, bits)
    if mutated == original:  # two flips of one bit undo each other
        return
    dev = w.b if which in ("initiation", "transport") else w.a
    before = reactions(dev)
    out, delivered = dev.receive_datagram(mutated, source, 20.0)
    assert delivered == [] and reactions(dev) > before
    assert all(d[0] == COOKIE_REPLY for d, _ in out)  # never a response, nor data


def test_device_state_stays_bounded_under_garbage_and_handshake_floods() -> None:
    w = make_world()
    rng = os.urandom
    ka_public = w.a.static_public
    stranger = os.urandom(32)  # knows b's public key: valid MAC1, but not a peer of b
    stamp = iter(range(10**9, 2 * 10**9))

    def one_round(i: int) -> None:
        now = 30.0 + i * 0.001
        w.b.receive_datagram(rng(i % 200), ("203.0.113.7", i % 65536), now)
        w.b.receive_datagram(flip(w.transport, [8 * (i % len(w.transport))]), A_EP, now)
        w.b.receive_datagram(flip(w.initiation, [8 * 140 + i % 128]), A_EP, now)
        init, _ = create_initiation(stranger, w.b.static_public, os.urandom(32), i, next(stamp))
        w.b.receive_datagram(init.encode(), ("203.0.113.8", 1), now)  # unknown peer, or a cookie
        w.a.receive_datagram(rng(64), B_EP, now)

    for i in range(300):
        one_round(i)
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        for i in range(300, 2300):
            one_round(i)
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert end - start < 64 * 1024, f"grew by {end - start} bytes over 2000 rounds"
    assert all(e.peer.queue == [] for e in w.b.peers.values())
    assert ka_public in w.b.peers and w.b.counters.unknown_peer > 0 and w.b.counters.bad_mac1 > 0


def test_device_index_map_stays_bounded_over_many_handshakes() -> None:
    """Peers that handshake again and again (a rekey every REKEY_AFTER_TIME) leave no index behind."""
    w = make_world()

    def rekey(i: int) -> None:
        now = 10.0 + (i + 1) * (REKEY_AFTER_TIME + 1)  # the world's session began at 10
        out = w.a.send_packet(PING, now)
        assert [d[0] for d, _ in out] == [TRANSPORT, INITIATION]
        assert carry(w.a, w.b, out, now) == [PING]

    for i in range(50):
        rekey(i)
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        for i in range(50, 350):
            rekey(i)
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert end - start < 32 * 1024, f"grew by {end - start} bytes over 300 handshakes"


# -- the peer alone -------------------------------------------------------------
@dataclass
class Pending:
    """A peer with a handshake in progress, and real answers to its initiation."""

    peer: Peer
    initiation: bytes
    response: bytes
    cookie_reply: bytes


def pending() -> Pending:
    ka, kb = os.urandom(32), os.urandom(32)
    peer, responder = Peer(ka, public_of(kb), os.urandom), Peer(kb, public_of(ka), os.urandom)
    [init] = peer.send(PING, 0.0)
    msg = parse_initiation(init)
    reply = CookieMaker(public_of(kb), os.urandom).reply(msg.sender, msg.mac1, b"src", 0.0)
    [response], _ = responder.receive(init, 0.0)
    return Pending(peer, init, response, reply.encode())


BITS = st.lists(st.integers(0, 8 * INITIATION_LEN - 1), min_size=1, max_size=4, unique=True)


@FUZZ
@given(GARBAGE)
def test_peer_receive_never_raises_and_counts_garbage(data: bytes) -> None:
    p = pending()
    before = p.peer.counters.rejected()
    assert p.peer.receive(data, 1.0) == ([], [])
    assert p.peer.counters.rejected() > before and p.peer.counters.cookies_received == 0
    assert len(p.peer.queue) == 1  # the queued ping still waits for the handshake


@FUZZ
@given(st.sampled_from(["response", "cookie_reply", "initiation"]), BITS)
def test_peer_refuses_mutated_messages_and_still_takes_the_real_one(which: str, bits: list[int]) -> None:
    p = pending()
    original = getattr(p, which)
    mutated = flip(original, bits)
    if mutated == original:
        return
    if which == "response" and mutated[:-16] == original[:-16]:
        # mac2 alone: only a device under load looks at it; the handshake completes.
        assert [d[0] for d in p.peer.receive(mutated, 1.0)[0]] == [TRANSPORT]
        return
    before = p.peer.counters.rejected()
    assert p.peer.receive(mutated, 1.0) == ([], [])
    assert p.peer.counters.rejected() > before and p.peer.counters.cookies_received == 0
    if which == "cookie_reply":
        p.peer.receive(p.cookie_reply, 1.0)
        assert p.peer.counters.cookies_received == 1
    out, _ = p.peer.receive(p.response, 1.0)  # a mutated message did not spoil the handshake
    assert [d[0] for d in out] == [TRANSPORT] and p.peer.queue == []
