"""XChaCha20-Poly1305 from HChaCha20, the cookie/MAC2 exchange, and cookies under
load through two devices in memory on a test clock."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from harness.pyref.cookie import (
    COOKIE_LATENCY,
    COOKIE_SECRET_LIFETIME,
    DEFAULT_LOAD_POLICY,
    Admission,
    CookieChecker,
    CookieError,
    CookieMaker,
    LatestCookie,
    LoadPolicy,
    mac2_of,
    open_cookie_reply,
    source_bytes,
)
from harness.pyref.crypto import hchacha20, public_of, xaead_decrypt, xaead_encrypt
from harness.pyref.device import Device
from harness.pyref.ipv4 import echo_request
from harness.pyref.messages import (
    COOKIE_REPLY,
    COOKIE_REPLY_LEN,
    INITIATION_LEN,
    CookieReply,
    parse_cookie_reply,
    parse_initiation,
)
from harness.pyref.noise import create_initiation
from harness.pyref.peer import Peer
from tests.support.pyref_wire import A_EP, B_EP, carry


def test_hchacha20_known_answer() -> None:
    # draft-irtf-cfrg-xchacha-03, section 2.2.1 (HChaCha20 test vector).
    key = bytes(range(32))
    nonce = bytes.fromhex("000000090000004a0000000031415927")
    assert hchacha20(key, nonce).hex() == "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc"


def test_xaead_round_trip_and_tamper() -> None:
    key, nonce = os.urandom(32), os.urandom(24)
    sealed = xaead_encrypt(key, nonce, b"cookie-16-bytes!", b"ad")
    assert len(sealed) == 32 and xaead_decrypt(key, nonce, sealed, b"ad") == b"cookie-16-bytes!"
    with pytest.raises(Exception):  # noqa: B017 - InvalidTag from cryptography
        xaead_decrypt(key, nonce, sealed, b"other ad")


class CountingRandom:
    def __init__(self) -> None:
        self.bytes_given = 0

    def random(self, n: int) -> bytes:
        self.bytes_given += n
        return os.urandom(n)


def test_cookie_exchange_and_mac2() -> None:
    a, b = os.urandom(32), os.urandom(32)
    source = bytes([198, 18, 0, 1]) + (51820).to_bytes(2, "big")
    maker = CookieMaker(public_of(b), CountingRandom().random)
    first, _ = create_initiation(a, public_of(b), os.urandom(32), 5, 100.0)
    wire = maker.reply(first.sender, first.mac1, source, now=1000.0).encode()
    assert len(wire) == COOKIE_REPLY_LEN
    reply = parse_cookie_reply(wire)
    assert reply.receiver == 5
    cookie = open_cookie_reply(reply, public_of(b), first.mac1)
    # The initiator retries with mac2 over its new message up to mac2.
    retry, _ = create_initiation(a, public_of(b), os.urandom(32), 6, 101.0)
    covered = retry.body() + retry.mac1
    mac2 = mac2_of(cookie, covered)
    assert maker.valid_mac2(covered, mac2, source, now=1010.0)
    assert not maker.valid_mac2(
        covered, mac2, bytes([198, 18, 0, 2]) + source[4:], now=1010.0
    )  # other source
    assert not maker.valid_mac2(covered, mac2, source, now=1000.0 + 121)  # the secret has changed
    with pytest.raises(CookieError):
        open_cookie_reply(reply, public_of(b), retry.mac1)  # not the message it answered


# -- cookies under load, through two devices in memory -------------------------
PING = echo_request("198.19.0.1", "198.19.0.2", 1, 1)


def devices(a_policy: LoadPolicy = DEFAULT_LOAD_POLICY, b_policy: LoadPolicy = DEFAULT_LOAD_POLICY):
    ka, kb = os.urandom(32), os.urandom(32)
    a, b = Device(ka, os.urandom, load_policy=a_policy), Device(kb, os.urandom, load_policy=b_policy)
    a.add_peer(public_of(kb), ["198.19.0.2/32"], B_EP)
    b.add_peer(public_of(ka), ["198.19.0.1/32"], A_EP)
    return a, b


def peer_of(dev: Device) -> Peer:
    [entry] = dev.peers.values()
    return entry.peer


def test_under_load_first_initiation_gets_a_cookie_and_the_retry_completes() -> None:
    a, b = devices(b_policy=LoadPolicy(always=True))
    [(init, _)] = a.send_packet(PING, 0.0)
    [(reply, to)], delivered = b.receive_datagram(init, A_EP, 0.0)
    assert reply[0] == COOKIE_REPLY and len(reply) == COOKIE_REPLY_LEN and to == A_EP and delivered == []
    assert b.counters.cookie_replies_sent == 1 and peer_of(b).next is None  # no Diffie-Hellman done
    assert a.receive_datagram(reply, B_EP, 0.1) == ([], [])
    assert peer_of(a).counters.cookies_received == 1
    # As in the kernel and wireguard-go, nothing goes out at once: the retry timer sends mac2.
    retry_at = a.deadline()
    assert retry_at is not None and 5.0 <= retry_at <= 5.34
    retry = a.tick(retry_at)
    assert parse_initiation(retry[0][0]).mac2 != bytes(16)
    assert carry(a, b, retry, retry_at) == [PING]
    assert b.counters.cookie_replies_sent == 1 and b.counters.bad_mac1 == 0
    pong = echo_request("198.19.0.2", "198.19.0.1", 1, 1, b"back")
    [(data, to)] = b.send_packet(pong, retry_at + 1)
    assert to == A_EP and a.receive_datagram(data, B_EP, retry_at + 1)[1] == [pong]


def test_under_load_initiator_sends_the_responder_a_cookie() -> None:
    a, b = devices(a_policy=LoadPolicy(always=True))
    [(init, _)] = a.send_packet(PING, 0.0)
    [(resp, _)], _ = b.receive_datagram(init, A_EP, 0.0)
    [(reply, to)], _ = a.receive_datagram(resp, B_EP, 0.0)  # the response needs mac2 too
    assert reply[0] == COOKIE_REPLY and to == B_EP and a.counters.cookie_replies_sent == 1
    b.receive_datagram(reply, A_EP, 0.0)
    assert peer_of(b).counters.cookies_received == 1
    retry_at = a.deadline()
    assert retry_at is not None
    assert carry(a, b, a.tick(retry_at), retry_at) == [PING]  # b's new response carries mac2
    assert a.counters.cookie_replies_sent == 1


def test_bad_mac1_gets_nothing_even_under_load() -> None:
    a, b = devices(b_policy=LoadPolicy(always=True))
    [(init, _)] = a.send_packet(PING, 0.0)
    for at in (10, 120):  # a byte of the body (mac1 covers it), a byte of mac1
        bad = bytearray(init)
        bad[at] ^= 1
        assert b.receive_datagram(bytes(bad), A_EP, 0.0) == ([], [])
    assert b.counters.bad_mac1 == 2 and b.counters.cookie_replies_sent == 0
    stranger = Device(os.urandom(32), os.urandom)  # MAC1 keyed with someone else's public key
    stranger.add_peer(public_of(os.urandom(32)), ["198.19.0.2/32"], B_EP)
    [(other, _)] = stranger.send_packet(PING, 0.0)
    assert b.receive_datagram(other, A_EP, 0.0) == ([], []) and b.counters.bad_mac1 == 3


def test_mac2_made_for_another_source_is_refused() -> None:
    a, b = devices(b_policy=LoadPolicy(always=True))
    [(init, _)] = a.send_packet(PING, 0.0)
    [(reply, _)], _ = b.receive_datagram(init, A_EP, 0.0)
    a.receive_datagram(reply, B_EP, 0.0)
    retry_at = a.deadline()
    assert retry_at is not None
    [(retry, _)] = a.tick(retry_at)
    for elsewhere in (("198.18.0.9", 51820), ("198.18.0.1", 40000), ("2001:2::1", 51820)):
        [(again, _)], _ = b.receive_datagram(retry, elsewhere, retry_at)
        assert again[0] == COOKIE_REPLY  # a new cookie for that source, no response
    assert b.counters.cookie_replies_sent == 4 and peer_of(b).next is None
    [(resp, _)], _ = b.receive_datagram(retry, A_EP, retry_at)
    assert resp[0] == 2


def test_forged_or_replayed_cookie_replies_are_ignored() -> None:
    a, b = devices(b_policy=LoadPolicy(always=True))
    [(init, _)] = a.send_packet(PING, 0.0)
    sender = parse_initiation(init).sender
    forged = CookieReply(sender, os.urandom(24), os.urandom(32)).encode()
    assert a.receive_datagram(forged, B_EP, 0.0) == ([], [])
    # A reply that b really made, but for another message (another mac1), does not open either.
    other = CookieMaker(b.static_public, os.urandom).reply(sender, os.urandom(16), b"\x01" * 6, 0.0)
    a.receive_datagram(other.encode(), B_EP, 0.0)
    # Nor one addressed to an index a does not use.
    stray = CookieMaker(b.static_public, os.urandom).reply(sender ^ 1, parse_initiation(init).mac1, b"", 0.0)
    a.receive_datagram(stray.encode(), B_EP, 0.0)
    pa = peer_of(a)
    assert pa.counters.cookies_received == 0 and pa.counters.unauthenticated == 2
    assert a.counters.unknown_peer == 1
    [(reply, _)], _ = b.receive_datagram(init, A_EP, 0.0)
    a.receive_datagram(reply, B_EP, 0.0)
    a.receive_datagram(reply, B_EP, 0.0)  # one cookie per message sent, as in the kernel
    assert pa.counters.cookies_received == 1 and pa.counters.unauthenticated == 3
    retry_at = a.deadline()
    assert retry_at is not None
    assert carry(a, b, a.tick(retry_at), retry_at) == [PING]


def test_cookie_is_used_for_115_seconds() -> None:
    kb = os.urandom(32)
    maker, jar = CookieMaker(public_of(kb), os.urandom), LatestCookie(public_of(kb))
    message = os.urandom(INITIATION_LEN)
    assert jar.stamp(message, 0.0)[-16:] == bytes(16)  # no cookie yet
    reply = maker.reply(7, message[-32:-16], b"src", 0.0)
    jar.consume(reply, 1.0)
    assert jar.stamp(message, 1.0 + COOKIE_SECRET_LIFETIME - COOKIE_LATENCY - 0.1)[-16:] != bytes(16)
    assert jar.stamp(message, 1.0 + COOKIE_SECRET_LIFETIME - COOKIE_LATENCY)[-16:] == bytes(16)


def test_under_load_while_behind_and_for_a_second_after() -> None:
    """wireguard-go's device.go (IsUnderLoad) and the kernel's receive.c: under load
    while the handshake queue holds at least 1/8 of its size (wireguard-go: 128 of
    1024), and for one second after it was last seen so; a busy responder that keeps
    up is never under load. pyref's queue is what its I/O layer read and has not yet
    handed over (``waiting``)."""
    kb = os.urandom(32)
    b = Device(kb, os.urandom, load_policy=LoadPolicy(backlog=128, hold=1.0))
    peers = [os.urandom(32) for _ in range(10)]
    for i, k in enumerate(peers):
        b.add_peer(public_of(k), [f"198.19.0.{i + 1}/32"], A_EP)
    stamp = iter(range(1_000_000, 2_000_000))  # TAI64N must grow, or b refuses a replay

    def initiation(key: bytes = peers[0]) -> bytes:
        return create_initiation(key, b.static_public, os.urandom(32), 1, next(stamp))[0].encode()

    # 400 a second from ten peers, each alone in its wakeup: busy, not behind, all answered
    # (each peer's every 25 ms, clear of the 20 ms flood check).
    for i in range(400):
        [(out, _)], _ = b.receive_datagram(initiation(peers[i % 10]), A_EP, 10.0 + i / 400)
        assert out[0] == 2
    assert not b.under_load(11.0)
    assert b.receive_datagram(initiation(), A_EP, 12.0, waiting=127)[0][0][0][0] == 2  # 127 behind: not yet
    assert not b.under_load(12.0)
    assert b.receive_datagram(initiation(), A_EP, 12.1, waiting=128)[0][0][0][0] == COOKIE_REPLY
    assert b.under_load(12.1) and b.under_load(13.09) and not b.under_load(13.1)
    # A cookie reply waiting in the queue counts as upstream's does, and so does one taken from it.
    b.receive_datagram(bytes([COOKIE_REPLY]) + bytes(63), A_EP, 20.0, waiting=128)
    assert b.under_load(20.5) and not b.under_load(21.0)
    assert b.receive_datagram(initiation(), A_EP, 21.5)[0][0][0][0] == 2  # the queue drained: off
    b.load_policy = LoadPolicy(always=True)
    assert b.under_load(30.0) and b.receive_datagram(initiation(), A_EP, 30.0)[0][0][0][0] == COOKIE_REPLY


# -- constant-time comparisons -------------------------------------------------
def _mac_like(node: ast.expr) -> bool:
    """An operand that holds a MAC or a cookie: a call of `mac`/`mac2_of`/`hmac_`,
    or a lower-case name or attribute that says mac or cookie (constants such as
    COOKIE_REPLY, message types, are upper case)."""
    if isinstance(node, ast.Call):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        return name in ("mac", "mac2_of", "hmac_")
    if isinstance(node, ast.Subscript):
        return _mac_like(node.value)
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return name.islower() and ("mac" in name or "cookie" in name)


def test_macs_and_cookies_are_compared_in_constant_time() -> None:
    """Every MAC1, MAC2 and cookie check in pyref's core goes through
    `hmac.compare_digest`, never `==`/`!=`, which stops at the first differing
    byte (the kernel's cookie.c, wg_cookie_validate_packet, uses crypto_memneq;
    wireguard-go's device/cookie.go, CheckMAC1/CheckMAC2, hmac.Equal). The
    prober (harness/probe) is a tester and is not held to this."""
    import harness.pyref as pyref

    core = Path(pyref.__file__).parent
    found = []
    for module in ("cookie.py", "noise.py", "device.py", "peer.py", "crypto.py"):
        tree = ast.parse((core / module).read_text(), module)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare) or not {type(o) for o in node.ops} & {ast.Eq, ast.NotEq}:
                continue
            if any(_mac_like(x) for x in [node.left, *node.comparators]):
                found.append(f"{module}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


# -- the rate limiter, where the kernel consults it ------------------------------
def _responder_and_signer(policy: LoadPolicy):
    """b, and a function making initiations to b, each from a new peer of b's (so the
    20 ms per-peer flood check never refuses one), with the MAC2 of a cookie b gave
    A_EP if ``cookie`` is set."""
    b = Device(os.urandom(32), os.urandom, load_policy=policy)

    def initiation(cookie: bytes | None = None) -> bytes:
        ka = os.urandom(32)
        b.add_peer(public_of(ka), [], A_EP)
        wire = create_initiation(ka, b.static_public, os.urandom(32), 1, 1_000_000)[0].encode()
        return wire if cookie is None else wire[:-16] + mac2_of(cookie, wire[:-16])

    return b, initiation


def _cookie_for(b: Device, initiation, source, now: float) -> bytes:
    first = initiation()
    [(reply, _)], _ = b.receive_datagram(first, source, now)
    return open_cookie_reply(parse_cookie_reply(reply), b.static_public, parse_initiation(first).mac1)


def test_under_load_valid_mac2_is_rate_limited_by_source_address() -> None:
    """The kernel's cookie.c (wg_cookie_validate_packet): under load, MAC1 then MAC2 then
    the rate limiter (ratelimiter.c: 20 a second, bursts of 5, by address); receive.c
    drops what it refuses, answering nothing. wireguard-go's receive.go does the same."""
    b, initiation = _responder_and_signer(LoadPolicy(always=True))
    cookie = _cookie_for(b, initiation, A_EP, 0.0)
    kinds = [[d[0] for d, _ in b.receive_datagram(initiation(cookie), A_EP, 1.0)[0]] for _ in range(7)]
    assert kinds == [[2]] * 5 + [[]] * 2 and b.counters.rate_limited == 2  # 5 responses, 2 dropped
    assert b.receive_datagram(initiation(cookie), A_EP, 1.05)[0][0][0][0] == 2  # 50 ms: one more
    # Another port of the same address shares the bucket (its own cookie: MAC2 binds the port).
    other_port = (A_EP[0], A_EP[1] + 1)
    cookie2 = _cookie_for(b, initiation, other_port, 1.05)
    assert b.receive_datagram(initiation(cookie2), other_port, 1.05) == ([], [])
    assert b.counters.rate_limited == 3
    # Without MAC2 nothing is rate limited: a cookie reply each time (they cost no Diffie-Hellman).
    replies = [b.receive_datagram(initiation(), A_EP, 1.05)[0][0][0][0] for _ in range(10)]
    assert replies == [COOKIE_REPLY] * 10 and b.counters.rate_limited == 3


def test_not_under_load_the_rate_limiter_is_not_consulted() -> None:
    b, initiation = _responder_and_signer(LoadPolicy())
    kinds = [b.receive_datagram(initiation(), A_EP, 1.0)[0][0][0][0] for _ in range(20)]
    assert kinds == [2] * 20 and b.counters.rate_limited == 0  # a bucket would have stopped at 5


def test_the_gate_decides_in_the_kernels_order() -> None:
    """`CookieChecker.check`'s `Admission` of one initiation: MAC1 first, then the load,
    MAC2, and last the rate limiter."""
    static = public_of(os.urandom(32))
    gate = CookieChecker(static, os.urandom, LoadPolicy(always=True))
    wire = create_initiation(os.urandom(32), static, os.urandom(32), 1, 1_000_000)[0].encode()
    source = source_bytes(*A_EP)
    assert gate.check(b"short", source, 0.0) is Admission.BAD_MAC1
    assert gate.check(wire[:-32] + bytes([wire[-32] ^ 1]) + wire[-31:], source, 0.0) is Admission.BAD_MAC1
    assert gate.check(wire, source, 0.0) is Admission.NEEDS_COOKIE
    cookie = open_cookie_reply(gate.reply(wire, source, 0.0), static, parse_initiation(wire).mac1)
    signed = wire[:-16] + mac2_of(cookie, wire[:-16])
    assert [gate.check(signed, source, 1.0) for _ in range(6)] == [Admission.ACCEPT] * 5 + [
        Admission.RATE_LIMITED
    ]
    assert CookieChecker(static, os.urandom, LoadPolicy()).check(wire, source, 0.0) is Admission.ACCEPT
