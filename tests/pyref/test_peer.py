"""Two pyref peers wired together in memory, on a clock the test moves."""

from __future__ import annotations

import os

from harness.pyref.crypto import public_of
from harness.pyref.ipv4 import echo_request
from harness.pyref.peer import Peer
from harness.pyref.transport import REJECT_AFTER_TIME, REKEY_AFTER_TIME

PING = echo_request("198.19.0.1", "198.19.0.2", 1, 1)
PONG = echo_request("198.19.0.2", "198.19.0.1", 1, 1, b"reply")


def pair(**kw: object) -> tuple[Peer, Peer]:
    a, b = os.urandom(32), os.urandom(32)
    return Peer(a, public_of(b), os.urandom, **kw), Peer(b, public_of(a), os.urandom)  # type: ignore[arg-type]


def deliver(src: Peer, dst: Peer, datagrams: list[bytes], now: float) -> list[bytes]:
    """Carry datagrams back and forth until quiet; the packets delivered at dst or src."""
    delivered: list[bytes] = []
    flights = [(src, dst, d) for d in datagrams]
    while flights:
        frm, to, d = flights.pop(0)
        out, packets = to.receive(d, now)
        delivered += packets
        flights += [(to, frm, o) for o in out]
    return delivered


def test_handshake_then_data_both_ways() -> None:
    a, b = pair()
    out = a.send(PING, now=0.0)
    assert len(out) == 1 and out[0][0] == 1  # no session yet: an initiation, the ping is queued
    assert deliver(a, b, out, 0.0) == [PING]  # response, then the queued ping under the new keys
    assert b.current is not None and b.next is None  # confirmed by that ping
    assert deliver(b, a, b.send(PONG, 0.1), 0.1) == [PONG]
    assert a.counters.unauthenticated == b.counters.unauthenticated == 0


def test_replayed_data_and_initiation_are_rejected() -> None:
    a, b = pair()
    deliver(a, b, a.send(PING, 0.0), 0.0)
    [data] = a.send(PING, 1.0)
    assert b.receive(data, 1.0)[1] == [PING]
    assert b.receive(data, 1.1)[1] == [] and b.counters.replayed == 1
    garbage = bytes([4, 0, 0, 0]) + os.urandom(40)
    assert b.receive(garbage, 1.2) == ([], []) and b.counters.no_session == 1
    assert b.receive(b"\x09junk", 1.2) == ([], []) and b.counters.malformed == 1


def test_out_of_order_within_the_window_is_delivered() -> None:
    a, b = pair()
    deliver(a, b, a.send(PING, 0.0), 0.0)
    sent = [a.send(PING, 1.0)[0] for _ in range(50)]
    got = [b.receive(d, 1.0)[1] for d in reversed(sent)]
    assert all(g == [PING] for g in got)


def test_rekey_after_time_and_old_keys_still_accepted_briefly() -> None:
    a, b = pair()
    deliver(a, b, a.send(PING, 0.0), 0.0)
    first = a.current
    out = a.send(PING, REKEY_AFTER_TIME + 1)
    assert [d[0] for d in out] == [4, 1]  # the data still goes out, and a new handshake starts
    assert deliver(a, b, out, REKEY_AFTER_TIME + 1) == [PING]
    assert a.current is not first and a.previous is first


def test_lost_initiation_is_retried() -> None:
    a, b = pair()
    a.send(PING, 0.0)  # the initiation is lost
    deadline = a.deadline()
    assert deadline is not None and 5.0 <= deadline <= 5.34
    assert a.tick(4.0) == []
    retry = a.tick(deadline)
    assert len(retry) == 1 and retry[0][0] == 1
    assert deliver(a, b, retry, deadline) == [PING]
    # giving up: tests/pyref/test_timers.py, test_handshake_attempts_as_upstream


def test_keepalive_after_receiving_and_keys_zeroed_later() -> None:
    a, b = pair()
    deliver(a, b, a.send(PING, 0.0), 0.0)
    assert b.deadline() == 10.0  # b received data and has sent nothing back
    [keepalive] = b.tick(10.0)
    assert a.receive(keepalive, 10.0) == ([], [])
    assert b.tick(11.0) == []
    assert b.deadline() == 3 * REJECT_AFTER_TIME
    b.tick(3 * REJECT_AFTER_TIME)
    assert b.current is None and b.previous is None and b.next is None
    # a's session expired too: it starts a fresh handshake, and traffic resumes.
    out = a.send(PING, 600.0)
    assert [d[0] for d in out] == [1]
    assert deliver(a, b, out, 600.0) == [PING]


def test_persistent_keepalive() -> None:
    a, b = pair(persistent_keepalive=25)
    deliver(a, b, a.send(PING, 0.0), 0.0)
    deliver(b, a, b.send(b"", 0.0), 0.0)  # a keepalive back: no new-handshake timer pending on a
    assert a.deadline() == 25.0
    [ka] = a.tick(25.0)
    assert ka[0] == 4 and b.receive(ka, 25.0) == ([], [])


def test_replayed_initiation_gets_no_second_response() -> None:
    a, b = pair()
    [init] = a.send(PING, 0.0)
    first, _ = b.receive(init, 0.0)
    assert len(first) == 1 and first[0][0] == 2
    assert b.receive(init, 0.5) == ([], []) and b.counters.replayed == 1


def test_new_handshake_when_sent_data_goes_unanswered() -> None:
    """Upstream (drivers/net/wireguard/timers.c: wg_timers_data_sent arms timer_new_handshake
    for KEEPALIVE_TIMEOUT + REKEY_TIMEOUT plus up to 1/3 s of jitter, unless it is already
    pending; wg_timers_any_authenticated_packet_received disarms it; wg_expired_new_handshake
    sends an initiation; wireguard-go device/timers.go the same): after a peer restart,
    the side that keeps sending starts a new handshake 15 to 15.33 s after its first
    unanswered data packet, and recovers without the other side's help."""
    a, b = pair()
    deliver(a, b, a.send(PING, 0.0), 0.0)  # a session both ways
    deliver(b, a, b.send(PONG, 0.5), 0.5)  # a hears back: nothing unanswered before the restart
    b_restarted = Peer(b.static_private, b.peer_public, os.urandom)  # b forgets its sessions
    now, first_unanswered = 1.0, None
    initiation_at = None
    while now < 40.0:
        out = a.send(PING, now) + a.tick(now)
        for d in out:
            if d[0] == 1:
                initiation_at = now
            elif first_unanswered is None:
                first_unanswered = now
            b_restarted.receive(d, now)  # transport from before the restart: dropped, no answer
        if initiation_at is not None:
            break
        now = round(now + 0.05, 2)
    assert first_unanswered == 1.0 and initiation_at is not None
    assert 15.0 <= initiation_at - first_unanswered <= 15.34 + 0.05


def test_answered_data_never_starts_a_new_handshake() -> None:
    """The same timer is disarmed by every authenticated packet that comes back (timers.c,
    wg_timers_any_authenticated_packet_received): pings answered for 100 s, no initiation."""
    a, b = pair()
    deliver(a, b, a.send(PING, 0.0), 0.0)
    now = 1.0
    while now < 100.0:
        out = a.send(PING, now) + a.tick(now)
        assert all(d[0] != 1 for d in out), now
        for d in out:
            replies, _ = b.receive(d, now)
            assert not replies
            for r in b.send(PONG, now):
                a.receive(r, now)
        now += 1.0
