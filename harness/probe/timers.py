"""Timer probes over raw UDP: what the device under test (DUT) does over time —
when it starts handshakes, how often, when it sends keepalives. Each mode
returns plain observations (times in seconds, counts); what upstream would do
and the verdict are `harness.probe.upstream`'s.

Fields every mode reads: ``target`` [address, port] of the DUT,
``responder_public`` its public key, ``identities`` the prober's private keys
(the first is used; it is a peer of the DUT), ``timeout`` seconds to wait for
an answer (default 1.0). Modes where the DUT sends to the prober first
(``dut-initiates``) also read ``port``, the UDP port to listen on (the DUT has
it as that identity's endpoint), and ``bind``, the address (default all).

Modes the harness must act during print progress lines first (`wire.announce`):
``{"event": "ready"}`` (listening), ``{"event": "up"}`` (a session is up),
``{"event": "answered"}`` (the DUT answered our initiation); the result is the
last line. Every wait is bounded by the mode's own duration fields.
"""

from __future__ import annotations

import math
import socket
import struct
import time
from dataclasses import dataclass

from harness.probe import Job, Mode
from harness.probe.core import (
    Initiator,
    ReplyError,
    check_response,
    common_fields,
    flag,
    inner_fields,
    number,
    reply_kind,
)
from harness.probe.wire import (
    Tunnel,
    announce,
    answer_initiation,
    await_response,
    handshake,
    initiation,
    is_initiation,
    is_keepalive,
    listening_socket,
    no_handshake,
    open_socket,
    receive,
)
from harness.pyref.ipv4 import checksum, echo_request
from harness.pyref.messages import RESPONSE, TRANSPORT

MAX_LISTEN = 200.0
"""The longest any wait of a timer probe may be (seconds): beyond REJECT_AFTER_TIME (180 s)."""
SETTLE = 0.5
"""Seconds after a session comes up in which what the DUT had queued arrives (not counted)."""


def _seconds(job: Job, name: str, default: float, low: float = 0.0, high: float = MAX_LISTEN) -> float:
    return number(job, name, default, minimum=low, maximum=high)


def _t(x: float) -> float:
    return round(x, 3)


def _is_transport(datagram: bytes) -> bool:
    return datagram[:1] == bytes([TRANSPORT])


def echo_reply(src: str, dst: str, ident: int, seq: int) -> bytes:
    """An ICMP echo *reply* from ``src`` to ``dst``: data a host takes in and answers
    with nothing (no ping of its own waits for it)."""
    packet = bytearray(echo_request(src, dst, ident, seq))
    packet[20] = 0  # type 0, echo reply; the checksum again, over the ICMP part with its field zeroed
    packet[22:24] = b"\x00\x00"
    packet[22:24] = struct.pack("!H", checksum(bytes(packet[20:])))
    return bytes(packet)


# -- results ------------------------------------------------------------------------
# Times are seconds (3 decimals) from the moment each mode's docstring names.
@dataclass(frozen=True)
class DutInitiatesResult:
    """``dut-initiates``."""

    listen: float
    initiations: tuple[float, ...]
    """Valid initiations from the DUT."""
    answered: tuple[float, ...]
    """Those answered with a response."""
    keepalives: tuple[float, ...]
    data: tuple[float, ...]
    keepalives_sent: int
    """Keepalives the prober sent the DUT."""


@dataclass(frozen=True)
class PeerRestartResult:
    """``peer-restart``."""

    alive: float
    answered_data: int
    initiations_while_alive: int
    dropped: int
    first_dropped: float | None
    initiation: float | None
    recovered: float | None


@dataclass(frozen=True)
class GapPair:
    """Two initiations of ``initiation-flood``."""

    gap: float
    """Seconds between them, as sent."""
    answered: tuple[bool, ...]
    """Whether each got a valid response."""


@dataclass(frozen=True)
class InitiationFloodResult:
    """``initiation-flood``: the short gap first, then the long one."""

    pairs: tuple[GapPair, ...]


@dataclass(frozen=True)
class CrossedInitiationResult:
    """``crossed-initiation``."""

    listen: float
    initiations: tuple[float, ...]
    sent_on_unconfirmed: int


@dataclass(frozen=True)
class KeepaliveRearmResult:
    """``keepalive-rearm``."""

    every: float
    window: float
    settle_keepalives: int
    keepalives_while_receiving: tuple[float, ...]
    keepalives_after: tuple[float, ...]
    other: int


@dataclass(frozen=True)
class PassiveKeepaliveResult:
    """``passive-keepalive``."""

    listen: float
    second: float
    settle_packets: int
    keepalives: tuple[float, ...]
    other: tuple[float, ...]


# -- the DUT starts the handshake ---------------------------------------------------
def dut_initiates(job: Job) -> DutInitiatesResult:
    """Listen on ``port`` for ``listen`` seconds as the DUT's peer, timing everything it
    sends from the ``ready`` event on: initiations (valid ones, from the DUT's key),
    keepalives and data on the sessions they make. ``answer`` (default true): answer
    each initiation with a response, else drop it. ``keepalive_every`` (seconds, 0 =
    never, the default): once a session is up, send the DUT an authenticated
    keepalive on it at once and then every that many seconds.

    The harness makes the DUT send: it sets the identity's endpoint to this port and
    then a persistent keepalive, or sends data to the identity's address."""
    c = common_fields(job)
    port = int(number(job, "port", minimum=1, maximum=65535, integer=True))
    listen = _seconds(job, "listen", 5.0, 0.1)
    answer = flag(job, "answer", True)
    every = _seconds(job, "keepalive_every", 0.0, 0.0, 60.0)
    initiations: list[float] = []
    answered: list[float] = []
    keepalives: list[float] = []
    data: list[float] = []
    sent = 0
    tunnels: list[Tunnel] = []
    last_stamp = b""
    next_keepalive = math.inf
    with listening_socket(port, c.bind or "0.0.0.0") as sock:
        start = time.monotonic()
        announce("ready", port=port)
        end = start + listen
        while (now := time.monotonic()) < end:
            if now >= next_keepalive:
                sock.sendto(tunnels[-1].keepalive(), c.target)
                sent += 1
                next_keepalive += every
                continue
            got = receive([sock], c.target, min(end, next_keepalive))
            if got is None:
                continue
            at, datagram = time.monotonic() - start, got[1]
            if is_initiation(datagram):
                reply = answer_initiation(c.identities[0], c.responder_public, datagram, last_stamp)
                if reply is None:
                    continue
                last_stamp = reply.timestamp
                initiations.append(_t(at))
                if answer:
                    sock.sendto(reply.response, c.target)
                    answered.append(_t(at))
                    tunnels.append(reply.tunnel)
                    if every > 0:
                        next_keepalive = time.monotonic()
            elif _is_transport(datagram):
                plain = next((p for t in reversed(tunnels) if (p := t.open(datagram)) is not None), None)
                if plain is not None:
                    (keepalives if is_keepalive(plain) else data).append(_t(at))
    return DutInitiatesResult(
        listen=listen,
        initiations=tuple(initiations),
        answered=tuple(answered),
        keepalives=tuple(keepalives),
        data=tuple(data),
        keepalives_sent=sent,
    )


# -- the peer restarts ------------------------------------------------------------------
def peer_restart(job: Job) -> PeerRestartResult:
    """A session (we initiate), announced ``up``; for ``alive`` seconds (default 3)
    every transport packet from the DUT is answered with a keepalive; then the
    prober forgets the session, as a restarted peer does, and drops what comes on
    it. Timed from that moment: the first transport packet dropped (the DUT's first
    unanswered data), the DUT's next initiation (answered, as the restarted peer
    would), and the first packet on the session that makes (recovery). Waits at
    most ``wait`` seconds (default 25) after forgetting.

    The harness keeps the DUT sending data to the identity's address meanwhile."""
    c = common_fields(job)
    alive = _seconds(job, "alive", 3.0, 0.1, 60.0)
    wait = _seconds(job, "wait", 25.0, 1.0)
    answered_data = 0
    early_initiations = 0
    first_dropped: float | None = None
    initiation_at: float | None = None
    recovered_at: float | None = None
    dropped = 0
    with open_socket(c.target) as sock:
        tunnel = handshake(sock, c, c.identities[0])
        if tunnel is None:
            raise no_handshake("peer-restart")
        announce("up")
        end_alive = time.monotonic() + alive
        while (got := receive([sock], c.target, end_alive)) is not None:
            plain = tunnel.open(got[1])
            if plain is not None:
                sock.sendto(tunnel.keepalive(), c.target)
                answered_data += 0 if is_keepalive(plain) else 1
            elif is_initiation(got[1]):
                early_initiations += 1
        forgot = time.monotonic()
        deadline = forgot + wait
        fresh: Tunnel | None = None
        while (got := receive([sock], c.target, deadline)) is not None:
            at, datagram = time.monotonic() - forgot, got[1]
            if fresh is None and is_initiation(datagram):
                reply = answer_initiation(c.identities[0], c.responder_public, datagram)
                if reply is not None:  # a restarted peer remembers no timestamp
                    sock.sendto(reply.response, c.target)
                    initiation_at, fresh = _t(at), reply.tunnel
                    deadline = min(deadline, time.monotonic() + max(c.timeout, 2.0))
            elif fresh is not None and fresh.open(datagram) is not None:
                recovered_at = _t(at)
                break
            elif _is_transport(datagram):
                dropped += 1
                if first_dropped is None:
                    first_dropped = _t(at)
    return PeerRestartResult(
        alive=alive,
        answered_data=answered_data,
        initiations_while_alive=early_initiations,
        dropped=dropped,
        first_dropped=first_dropped,
        initiation=initiation_at,
        recovered=recovered_at,
    )


# -- initiations close together ------------------------------------------------------------
def initiation_flood(job: Job) -> InitiationFloodResult:
    """Two valid initiations from one identity ``short_gap`` seconds apart (default
    0.005), timestamps growing; a pause; then two ``long_gap`` apart (default 0.05).
    Which were answered (a valid response to each), and the gaps as sent."""
    c = common_fields(job)
    gaps = (_seconds(job, "short_gap", 0.005, 0.0, 1.0), _seconds(job, "long_gap", 0.05, 0.0, 1.0))
    initiator = Initiator([c.identities[0]], c.responder_public)
    pairs: list[GapPair] = []
    with open_socket(c.target) as sock:
        for gap in gaps:
            first = initiator.initiation(0, time.time())
            second = initiator.initiation(0, time.time() + gap)  # both built before the clock starts
            sock.sendto(first.message, c.target)
            t0 = time.monotonic()
            time.sleep(max(0.0, t0 + gap - time.monotonic()))
            sock.sendto(second.message, c.target)
            sent_gap = time.monotonic() - t0
            pending = {first.index: first, second.index: second}
            answered: set[int] = set()
            deadline = time.monotonic() + c.timeout
            while pending.keys() - answered and (got := receive([sock], c.target, deadline)) is not None:
                kind = reply_kind(got[1])
                if kind is None or kind[0] != RESPONSE or kind[1] not in pending:
                    continue
                try:
                    check_response(initiator, pending[kind[1]], got[1])
                    answered.add(kind[1])
                except ReplyError:
                    continue
            pairs.append(GapPair(round(sent_gap, 4), (first.index in answered, second.index in answered)))
            time.sleep(0.3)  # well past any per-peer limit before the next pair
    return InitiationFloodResult(tuple(pairs))


def crossed_initiation(job: Job) -> CrossedInitiationResult:
    """We initiate and the DUT answers (announced ``answered``); we never confirm.
    Then for ``listen`` seconds (default 7), timed from the response: the DUT's
    initiations to us, and transport packets it sends on the session we did not
    confirm. The harness makes the DUT have data for us meanwhile."""
    c = common_fields(job)
    listen = _seconds(job, "listen", 7.0, 0.5, 60.0)
    initiations: list[float] = []
    unconfirmed = 0
    with open_socket(c.target) as sock:
        wire, finish = initiation(c.identities[0], c.responder_public)
        sock.sendto(wire, c.target)
        keys = await_response(sock, c.target, finish, time.monotonic() + c.timeout)
        if keys is None:
            raise no_handshake("crossed-initiation")
        answered = time.monotonic()
        announce("answered")
        tunnel, last_stamp = Tunnel(keys), b""
        while (got := receive([sock], c.target, answered + listen)) is not None:
            at, datagram = time.monotonic() - answered, got[1]
            if is_initiation(datagram):
                seen = answer_initiation(c.identities[0], c.responder_public, datagram, last_stamp)
                if seen is not None:  # a valid one (not answered)
                    last_stamp = seen.timestamp
                    initiations.append(_t(at))
            elif tunnel.open(datagram) is not None:
                unconfirmed += 1
    return CrossedInitiationResult(listen, tuple(initiations), unconfirmed)


# -- keepalives ------------------------------------------------------------------------------
def _keepalives_until(
    sock: socket.socket,
    target: tuple[str, int],
    tunnel: Tunnel,
    deadline: float,
    origin: float,
    keepalives: list[float],
    other: list[float],
) -> None:
    """Sort what the DUT sends on ``tunnel`` until ``deadline`` into keepalives and
    other packets, timed from ``origin``."""
    while (got := receive([sock], target, deadline)) is not None:
        plain = tunnel.open(got[1])
        if plain is not None:
            (keepalives if is_keepalive(plain) else other).append(_t(time.monotonic() - origin))


def keepalive_rearm(job: Job) -> KeepaliveRearmResult:
    """The DUT has a persistent keepalive for us (set by the harness). A session (we
    initiate and confirm); SETTLE seconds for what it had queued; then for
    ``window`` seconds (default 8) we send it an authenticated keepalive every
    ``every`` seconds (default 1) and time the keepalives it sends; then we stop and
    for ``control`` seconds (default 3.5) time its keepalives from our last one."""
    c = common_fields(job)
    every = _seconds(job, "every", 1.0, 0.05, 60.0)
    window = _seconds(job, "window", 8.0, 0.5, 60.0)
    control = _seconds(job, "control", 3.5, 0.5, 60.0)
    settle: list[float] = []
    during: list[float] = []
    after: list[float] = []
    other: list[float] = []
    with open_socket(c.target) as sock:
        tunnel = handshake(sock, c, c.identities[0])
        if tunnel is None:
            raise no_handshake("keepalive-rearm")
        up = time.monotonic()
        _keepalives_until(sock, c.target, tunnel, up + SETTLE, up, settle, other)
        start = time.monotonic()
        last_sent, next_send, end = start, start, start + window
        while (now := time.monotonic()) < end:
            if now >= next_send:
                sock.sendto(tunnel.keepalive(), c.target)
                last_sent, next_send = now, next_send + every
            _keepalives_until(sock, c.target, tunnel, min(next_send, end), start, during, other)
        _keepalives_until(sock, c.target, tunnel, last_sent + control, last_sent, after, other)
    return KeepaliveRearmResult(
        every=every,
        window=window,
        settle_keepalives=len(settle),
        keepalives_while_receiving=tuple(during),
        keepalives_after=tuple(after),
        other=len(other),
    )


def passive_keepalive(job: Job) -> PassiveKeepaliveResult:
    """A session (we initiate and confirm), then one data packet the DUT takes in and
    answers with nothing (an ICMP echo reply to its tunnel address, from ours:
    ``inner``); a second one ``second`` seconds later (default 3; 0: none); for
    ``listen`` seconds (default 21) from the first, the times of the DUT's
    keepalives and of anything else it sends on the session."""
    c = common_fields(job)
    src, dst = inner_fields(job)
    second = _seconds(job, "second", 3.0, 0.0, 60.0)
    listen = _seconds(job, "listen", 21.0, 1.0, 60.0)
    keepalives: list[float] = []
    other: list[float] = []
    with open_socket(c.target) as sock:
        tunnel = handshake(sock, c, c.identities[0])
        if tunnel is None:
            raise no_handshake("passive-keepalive")
        settle: list[float] = []
        up = time.monotonic()
        _keepalives_until(sock, c.target, tunnel, up + SETTLE, up, settle, settle)
        sock.sendto(tunnel.seal(echo_reply(src, dst, tunnel.ident, 1)), c.target)
        start = time.monotonic()
        end = start + listen
        if second > 0:
            _keepalives_until(sock, c.target, tunnel, start + second, start, keepalives, other)
            sock.sendto(tunnel.seal(echo_reply(src, dst, tunnel.ident, 2)), c.target)
        _keepalives_until(sock, c.target, tunnel, end, start, keepalives, other)
    return PassiveKeepaliveResult(
        listen=listen,
        second=second,
        settle_packets=len(settle),
        keepalives=tuple(keepalives),
        other=tuple(other),
    )


MODES: dict[str, Mode] = {
    "dut-initiates": dut_initiates,
    "peer-restart": peer_restart,
    "initiation-flood": initiation_flood,
    "crossed-initiation": crossed_initiation,
    "keepalive-rearm": keepalive_rearm,
    "passive-keepalive": passive_keepalive,
}
