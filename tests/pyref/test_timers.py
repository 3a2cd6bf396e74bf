"""pyref's timers against upstream's, on a simulated clock.

Each test drives two in-memory peers (or devices) through minutes of protocol time
and checks one behaviour of the Linux module (drivers/net/wireguard, read here from
wireguard-linux-compat's src/, the same code) and of wireguard-go (device/), named in
its docstring. The sans-IO core takes ``now``: nothing here sleeps.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from harness.pyref.crypto import public_of
from harness.pyref.device import Device
from harness.pyref.ipv4 import echo_request
from harness.pyref.messages import INITIATION, RESPONSE, TRANSPORT
from harness.pyref.peer import MAX_TIMER_HANDSHAKES, Peer
from harness.pyref.transport import (
    KEEPALIVE_TIMEOUT,
    REJECT_AFTER_TIME,
    REKEY_AFTER_MESSAGES,
    REKEY_AFTER_TIME,
    REKEY_TIMEOUT,
)

PING = echo_request("198.19.0.1", "198.19.0.2", 1, 1)
PONG = echo_request("198.19.0.2", "198.19.0.1", 1, 1, b"reply")
JITTER = 1 / 3


def pair(a_kw: dict[str, float] | None = None, b_kw: dict[str, float] | None = None) -> tuple[Peer, Peer]:
    ka, kb = os.urandom(32), os.urandom(32)
    a = Peer(ka, public_of(kb), os.urandom, **(a_kw or {}))  # type: ignore[arg-type]
    b = Peer(kb, public_of(ka), os.urandom, **(b_kw or {}))  # type: ignore[arg-type]
    return a, b


class Wire:
    """Two peers on one simulated clock: `run` moves time from timer to timer (and to the
    times the test asks for), carrying every datagram at once unless ``drop`` says no."""

    def __init__(self, a: Peer, b: Peer, drop: Callable[[Peer, bytes, float], bool] | None = None) -> None:
        self.a, self.b = a, b
        self.drop = drop or (lambda _src, _d, _t: False)
        self.now = 0.0
        self.sent: list[tuple[float, str, int]] = []
        """(time, "a" or "b", message type) of every datagram either side sent."""
        self.delivered: list[tuple[float, str, bytes]] = []

    def _name(self, p: Peer) -> str:
        return "a" if p is self.a else "b"

    def carry(self, src: Peer, datagrams: list[bytes]) -> None:
        flights = [(src, d) for d in datagrams]
        while flights:
            frm, d = flights.pop(0)
            self.sent.append((self.now, self._name(frm), d[0]))
            if self.drop(frm, d, self.now):
                continue
            to = self.b if frm is self.a else self.a
            out, packets = to.receive(d, self.now)
            self.delivered += [(self.now, self._name(to), p) for p in packets]
            flights += [(to, o) for o in out]

    def send(self, src: Peer, packet: bytes) -> None:
        self.carry(src, src.send(packet, self.now))

    def run(self, until: float, every: float | None = None, action: Callable[[], None] | None = None) -> None:
        """Fire every timer up to ``until``; with ``every``, call ``action`` at those intervals too."""
        next_action = self.now + every if every else None
        for _ in range(1_000_000):  # bounded: a timer that never moves on fails, not hangs
            times = [t for t in (self.a.deadline(), self.b.deadline(), next_action) if t is not None]
            t = min(times) if times else until
            if t > until:
                self.now = until
                return
            self.now = max(self.now, t)
            if next_action is not None and self.now >= next_action and action is not None:
                next_action += every  # type: ignore[operator]
                action()
            for p in (self.a, self.b):
                due = p.deadline()
                if due is not None and due <= self.now:
                    self.carry(p, p.tick(self.now))
        raise AssertionError(f"timers stuck at {self.now}")

    def times(self, who: str, kind: int, start: float = 0.0, end: float = float("inf")) -> list[float]:
        return [t for t, w, k in self.sent if w == who and k == kind and start <= t <= end]


def connected(a_kw: dict[str, float] | None = None, b_kw: dict[str, float] | None = None) -> Wire:
    """a initiated a session at t=0 and b confirmed it with a reply."""
    w = Wire(*pair(a_kw, b_kw))
    w.send(w.a, PING)
    w.send(w.b, PONG)
    assert w.a.current is not None and w.b.current is not None
    return w


def test_persistent_keepalive_alone_keeps_the_tunnel_up_by_rekeying() -> None:
    """Upstream rekeys from the keepalive path: a keepalive goes through
    wg_packet_send_staged_packets like data, and wg_packet_create_data_done calls
    keep_key_fresh, which starts a handshake when the initiator's keypair is older than
    REKEY_AFTER_TIME (drivers/net/wireguard/send.c; wireguard-go device/send.go,
    keepKeyFreshSending after every send). So a tunnel kept up only by persistent
    keepalives rekeys at the first keepalive after 120 s, and never goes silent."""
    w = connected({"persistent_keepalive": 25.0})
    first = w.a.current
    w.run(600.0)
    handshakes = w.times("a", INITIATION, start=1.0)
    assert handshakes, "no rekey in 10 minutes of keepalives"
    assert REKEY_AFTER_TIME <= handshakes[0] <= REKEY_AFTER_TIME + 25.0
    assert w.a.current is not first
    assert w.times("a", TRANSPORT, start=590.0 - 25.0), "the keepalives stopped"
    assert w.a.current is not None and w.now - w.a.current.created < REJECT_AFTER_TIME


def test_persistent_keepalive_starts_a_handshake_when_there_is_no_session() -> None:
    """The persistent-keepalive timer sends a keepalive (timers.c,
    wg_expired_send_persistent_keepalive; timers.go, expiredPersistentKeepalive); with no
    keypair, wg_packet_send_staged_packets starts a handshake instead (send.c, out_nokey;
    wireguard-go SendStagedPackets). The initiation is an authenticated send, so it re-arms
    the timer (wg_timers_any_authenticated_packet_traversal): a peer that never answers
    still gets an initiation every interval, long after the 20 retries gave up."""
    a, b = pair()
    w = Wire(a, b, drop=lambda src, _d, _t: src is a)  # a's datagrams are all lost
    a.set_persistent_keepalive(25.0, 0.0)
    w.run(400.0)
    initiations = w.times("a", INITIATION)
    assert initiations and initiations[0] == 0.0
    late = [t for t in initiations if t > 150.0]
    assert late, "initiations stopped once the retries gave up"
    assert all(y - x <= 25.0 + REKEY_TIMEOUT + 1 for x, y in zip(late, late[1:], strict=False))


def test_responder_rekeys_on_the_receive_path_before_the_keypair_expires() -> None:
    """receive.c keep_key_fresh (wireguard-go receive.go keepKeyFreshReceiving): when an
    authenticated packet arrives on a keypair this side initiated that is older than
    REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT (165 s), start a handshake, once
    (sent_lastminute_handshake). Here a only receives b's persistent keepalives and sends
    nothing of its own, so only the receive path can rekey."""
    w = connected(b_kw={"persistent_keepalive": 10.0})
    w.run(200.0)
    first = w.times("a", INITIATION, start=1.0)
    limit = REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
    assert first and limit <= first[0] <= limit + 10.0
    assert w.a.current is not None and w.a.current.created == first[0]


def test_a_sent_response_holds_back_our_own_initiation() -> None:
    """send.c wg_packet_send_handshake_initiation (wireguard-go SendHandshakeInitiation)
    sends nothing within REKEY_TIMEOUT of last_sent_handshake, and sending a response sets
    it too (wg_packet_send_handshake_response; SendHandshakeResponse). So the responder,
    with data of its own before the confirmation arrives, does not cross the handshake
    with an initiation: its data waits and goes out once the initiator confirms."""
    a, b = pair()
    [init] = a.send(PING, 0.0)
    [resp] = b.receive(init, 0.0)[0]
    assert b.send(PONG, 0.01) == []  # queued: no crossed initiation
    out, _ = a.receive(resp, 0.02)
    [confirm] = out
    replies, packets = b.receive(confirm, 0.03)
    assert packets == [PING] and [r[0] for r in replies] == [TRANSPORT]
    assert a.receive(replies[0], 0.03)[1] == [PONG]


def test_initiations_at_most_one_per_rekey_timeout() -> None:
    """The same rate limit (send.c, last_sent_handshake; device/send.go): data pushed every
    50 ms into a tunnel whose handshakes never complete makes at most one initiation per
    REKEY_TIMEOUT, whatever starts it (the send path, the retransmit timer)."""
    a, b = pair()
    w = Wire(a, b, drop=lambda src, _d, _t: src is b)  # every response lost
    w.run(60.0, every=0.05, action=lambda: w.send(a, PING))
    initiations = w.times("a", INITIATION)
    assert len(initiations) >= 10
    assert all(y - x >= REKEY_TIMEOUT for x, y in zip(initiations, initiations[1:], strict=False))


def test_initiations_from_one_peer_closer_than_20_ms_are_refused() -> None:
    """noise.c wg_noise_handshake_consume_initiation refuses an initiation that arrives
    within 1 s / INITIATIONS_PER_SECOND (20 ms) of the last one consumed from that peer
    (flood_attack), even with a newer timestamp (wireguard-go noise-protocol.go,
    HandshakeInitationRate)."""
    ka, kb = os.urandom(32), os.urandom(32)
    b = Peer(kb, public_of(ka), os.urandom)
    inits = []
    for offset in (0.0, 1.0, 2.0):  # three restarts of a: each initiation has a newer timestamp
        a = Peer(ka, public_of(kb), os.urandom)
        a.wall_offset = 1_700_000_000.0 + offset
        inits.append(a.send(PING, 0.0)[0])
    assert len(b.receive(inits[0], 10.000)[0]) == 1
    assert b.receive(inits[1], 10.005)[0] == [] and b.counters.flooded == 1
    assert len(b.receive(inits[2], 10.030)[0]) == 1


def test_persistent_keepalive_is_rearmed_by_received_packets() -> None:
    """timers.c wg_timers_any_authenticated_packet_traversal is called after every
    authenticated packet received too (receive.c, wg_packet_consume_data_done; wireguard-go
    timersAnyAuthenticatedPacketTraversal in RoutineSequentialReceiver): a side that hears
    from its peer more often than its persistent-keepalive interval sends no keepalive."""
    w = connected({"persistent_keepalive": 25.0}, {"persistent_keepalive": 10.0})
    w.run(100.0)
    assert w.times("b", TRANSPORT, start=1.0), "b's keepalives are the traffic here"
    # a's one keepalive at 10 s answers b's data at 0 (wg_timers_data_received); after that, nothing
    assert w.times("a", TRANSPORT, start=1.0) == [KEEPALIVE_TIMEOUT]


def test_passive_keepalive_once_however_much_data_came() -> None:
    """timers.c wg_timers_data_received: the first data packet arms a keepalive in
    KEEPALIVE_TIMEOUT, and data arriving while it is pending does not push it back (it
    sets need_another_keepalive). wg_expired_send_keepalive re-arms for that after
    queueing the keepalive, but the keepalive's send, completed after it (send.c
    wg_packet_create_data_done, wg_timers_any_authenticated_packet_sent; wireguard-go's
    RoutineSequentialSender), deletes the timer again: b, receiving data at 0 and 5 s and
    sending nothing, sends one keepalive at 10 s, as the passive-keepalive probe saw the
    kernel and wireguard-go do (docs/suites.md)."""
    a, b = pair()
    w = Wire(a, b)
    w.send(a, PING)
    w.now = 5.0
    w.send(a, PING)
    w.run(60.0)
    assert w.times("b", TRANSPORT) == [KEEPALIVE_TIMEOUT]


def test_handshake_attempts_as_upstream() -> None:
    """timers.c wg_expired_retransmit_handshake (timers.go expiredRetransmitHandshake):
    each REKEY_TIMEOUT + jitter an unanswered initiation is sent again, counted; once
    the count exceeds MAX_TIMER_HANDSHAKES (90 / REKEY_TIMEOUT = 18, messages.h) the
    staged packets are dropped and no more are sent: MAX_TIMER_HANDSHAKES + 2 = 20
    initiations, giving up about 100 s after the first."""
    a, b = pair()
    w = Wire(a, b, drop=lambda _src, _d, _t: True)
    w.send(a, PING)
    w.run(400.0)
    initiations = w.times("a", INITIATION)
    assert len(initiations) == MAX_TIMER_HANDSHAKES + 2 == 20
    assert 19 * REKEY_TIMEOUT <= initiations[-1] <= 19 * (REKEY_TIMEOUT + JITTER)
    assert a.queue == [] and a.counters.queue_dropped == 1


def test_rekey_after_messages_applies_to_the_responder_too() -> None:
    """send.c keep_key_fresh: sending_counter > REKEY_AFTER_MESSAGES starts a handshake
    whichever side initiated the keypair (only REKEY_AFTER_TIME is the initiator's;
    wireguard-go keepKeyFreshSending the same)."""
    w = connected()
    assert w.b.current is not None and not w.b.current.initiator
    w.b.current.send_counter = REKEY_AFTER_MESSAGES + 1
    w.now = REKEY_TIMEOUT + 1  # past the rate limit its response at 0 set
    w.send(w.b, PONG)
    assert w.times("b", INITIATION) == [w.now]


def test_keypair_slots_rotate_as_noise_c() -> None:
    """noise.c add_new_keypair: a responder's new keypair goes to *next* and the previous
    keypair is dropped; an initiator's new keypair becomes *current*, and a pending *next*
    (not the old current) becomes *previous*."""
    w = connected()
    a, b = w.a, w.b
    k1 = a.current
    w.now = 130.0
    w.send(a, PING)  # a rekeys (initiator, after REKEY_AFTER_TIME): k2
    assert a.previous is k1 and a.current is not k1
    # b initiates towards a (6 s after its last response); a answers: its new keypair
    # waits in next, and previous is gone
    [init] = b.initiate(136.0)
    [resp] = a.receive(init, 136.0)[0]
    assert resp[0] == RESPONSE and a.next is not None and a.previous is None
    pending = a.next
    # a's own initiation completes before b confirms: the pending next becomes previous
    [init2] = a.initiate(142.0)
    [resp2] = b.receive(init2, 142.0)[0]
    a.receive(resp2, 142.0)
    assert a.previous is pending and a.next is None and a.current is not None
    assert a.current.created == 142.0


def test_receiver_indices_are_unique_on_a_device() -> None:
    """peerlookup.c wg_index_hashtable_insert draws random indices until one is unused
    (wireguard-go indextable.go NewIndexForHandshake): two peers never share one, even
    when the random source repeats itself."""
    script = [b"\x07\x00\x00\x00", b"\x07\x00\x00\x00", b"\x08\x00\x00\x00"]

    def random(n: int) -> bytes:
        return script.pop(0) if n == 4 and script else os.urandom(n)

    dev = Device(os.urandom(32), random)
    dev.add_peer(public_of(os.urandom(32)), ["198.19.0.2/32"], ("198.18.0.2", 1))
    dev.add_peer(public_of(os.urandom(32)), ["198.19.0.3/32"], ("198.18.0.3", 1))
    to_b = echo_request("198.19.0.1", "198.19.0.2", 1, 1)
    to_c = echo_request("198.19.0.1", "198.19.0.3", 1, 1)
    [(i1, _)] = dev.send_packet(to_b, 0.0)
    [(i2, _)] = dev.send_packet(to_c, 0.0)
    assert i1[0] == i2[0] == INITIATION
    assert i1[4:8] != i2[4:8]


def test_zeroing_the_keys_also_forgets_the_pending_handshake() -> None:
    """timers.c wg_queued_expired_zero_key_material clears the handshake as well as the
    keypairs (wg_noise_handshake_clear, wg_noise_keypairs_clear), 3 x REJECT_AFTER_TIME
    after the last session was derived: a response to an initiation sent just before
    is then refused."""
    a, b = pair()
    w = Wire(a, b)
    w.send(a, PING)
    w.send(b, PONG)
    w.now = 3 * REJECT_AFTER_TIME - 5.0
    [init] = a.send(PING, w.now)
    assert init[0] == INITIATION
    [resp] = b.receive(init, w.now)[0]
    assert resp[0] == RESPONSE
    a.tick(3 * REJECT_AFTER_TIME)
    assert a.current is None and a.next is None and a.previous is None
    assert a.receive(resp, 3 * REJECT_AFTER_TIME + 1.0) == ([], [])
    assert a.current is None
