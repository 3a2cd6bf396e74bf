"""Conformance probes over raw UDP: what the device under test (DUT) does with
replayed, forged, reordered and roaming traffic. Each mode returns plain
observations (booleans, counts, times); the harness decides pass or fail.

Fields every mode but ``listen`` reads: ``target`` [address, port] of the DUT,
``responder_public`` its public key and ``identities`` the prober's private
keys (base64; each already a peer of the DUT), ``timeout`` seconds to wait for
each answer (default 1.0). Modes that ping through the tunnel also read
``inner`` {"src": the first identity's allowed IP, "dst": the DUT's own tunnel
address, which answers ICMP echo}.

The handshakes are pyref's (`noise.create_initiation`/`consume_response`, and
a whole `Peer` where the DUT may start handshakes of its own); packets are
sealed with `transport.DataCipher` so the prober chooses every counter. Echo
requests carry one random identifier per run and the sending counter as their
sequence number, so every reply says which request it answers. Traffic goes
only to ``target``; every wait is bounded.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from dataclasses import dataclass

from harness.probe import Job, JobError, Mode
from harness.probe.core import Common, address_field, common_fields, inner_fields, number
from harness.probe.wire import (
    Tunnel,
    await_response,
    handshake,
    initiation,
    listening_socket,
    no_handshake,
    open_socket,
    receive,
)
from harness.pyref.messages import INITIATION_LEN, TRANSPORT, TRANSPORT_HEADER_LEN
from harness.pyref.peer import Peer

MAC1_OFFSET = INITIATION_LEN - 32
"""Where an initiation's MAC1 starts (MAC2 is the last 16 bytes)."""
REPLAY_GAP = 0.05
"""Seconds between an initiation and its replay: past wireguard-go's 20 ms per-peer
initiation rate limit, so only the replay check can refuse it."""
LINGER = 0.2
"""Seconds to keep listening after an answer, for a second copy of it."""
MAX_LISTEN = 60.0
MAX_COUNT = 1000


# -- results --------------------------------------------------------------------
@dataclass(frozen=True)
class ReplayInitiationResult:
    """``replay-initiation``."""

    first_answered: bool
    replay_answered: bool


@dataclass(frozen=True)
class BadMac1Result:
    """``bad-mac1``."""

    answered: bool
    """The initiation with a flipped MAC1 bit got an answer."""
    control_answered: bool


@dataclass(frozen=True)
class TransportReplayResult:
    """``transport-replay``."""

    in_order_sent: int
    in_order_replies: int
    replay_replied: bool
    out_of_order_sent: int
    out_of_order_replies: int


@dataclass(frozen=True)
class ReplayWindowResult:
    """``replay-window``."""

    reorder: int
    reorder_first_delivered: bool
    reorder_sent: int
    reorder_delivered: int
    top: int
    top_delivered: bool
    offsets: tuple[int, ...]
    offsets_accepted: tuple[int, ...]


@dataclass(frozen=True)
class RoamingResult:
    """``roaming``."""

    first_reply_port_ok: bool
    reply_to_new_port: bool
    reply_to_old_port: bool


@dataclass(frozen=True)
class InnerSourceResult:
    """``inner-source``."""

    spoofed_replied: bool
    control_replied: bool
    return_path: bool
    """A second identity had the spoofed address, so a wrong answer had a way back."""


@dataclass(frozen=True)
class KeepaliveResult:
    """``keepalive``."""

    listen: float
    keepalive_times: tuple[float, ...]
    """Seconds from the session coming up."""
    intervals: tuple[float, ...]


@dataclass(frozen=True)
class ListenResult:
    """``listen``."""

    datagrams: int
    sources: tuple[str, ...]
    """Where they came from ("host:port", sorted)."""


# -- job fields (the common ones are `harness.probe.core`'s) ----------------------
def _number(job: Job, name: str, default: float, low: float, high: float) -> float:
    return number(job, name, default, minimum=low, maximum=high)


def _count(job: Job, name: str, default: int, low: int, high: int) -> int:
    return int(number(job, name, default, minimum=low, maximum=high, integer=True))


def _collect_replies(
    socks: dict[socket.socket, Tunnel],
    c: Common,
    src: str,
    dst: str,
    wanted: set[int] | None,
    deadline: float,
) -> dict[int, list[socket.socket]]:
    """Echo replies to ``src`` by sequence number (and the sockets they came in on),
    until every one of ``wanted`` came (None: all until) the deadline."""
    seen: dict[int, list[socket.socket]] = {}
    while wanted is None or not wanted <= seen.keys():
        got = receive(socks, c.target, deadline)
        if got is None:
            break
        seq = socks[got[0]].echo_seq(got[1], src, dst)
        if seq is not None:
            seen.setdefault(seq, []).append(got[0])
    return seen


# -- the modes ------------------------------------------------------------------
def replay_initiation(job: Job) -> ReplayInitiationResult:
    """An initiation, then the very same bytes again: a conformant DUT answers only the first."""
    c = common_fields(job)
    with open_socket(c.target) as sock:
        wire, finish = initiation(c.identities[0], c.responder_public)
        sock.sendto(wire, c.target)
        first = await_response(sock, c.target, finish, time.monotonic() + c.timeout)
        time.sleep(REPLAY_GAP)
        sock.sendto(wire, c.target)
        replay = receive([sock], c.target, time.monotonic() + c.timeout)
    return ReplayInitiationResult(first_answered=first is not None, replay_answered=replay is not None)


def bad_mac1(job: Job) -> BadMac1Result:
    """An initiation with one bit of MAC1 flipped; then the same initiation with MAC1
    intact (the control: the DUT answers, and the flipped one was all that differed)."""
    c = common_fields(job)
    with open_socket(c.target) as sock:
        wire, finish = initiation(c.identities[0], c.responder_public)
        forged = bytearray(wire)
        forged[MAC1_OFFSET] ^= 0x01
        sock.sendto(bytes(forged), c.target)
        answered = receive([sock], c.target, time.monotonic() + c.timeout)
        sock.sendto(wire, c.target)
        control = await_response(sock, c.target, finish, time.monotonic() + c.timeout)
    return BadMac1Result(answered=answered is not None, control_answered=control is not None)


def transport_replay(job: Job) -> TransportReplayResult:
    """Echo requests with counters 1..N in order (after the confirming keepalive, counter
    0); then a new echo request under an already used counter; then counters N+10, N+7,
    N+9, N+8 (out of order, inside any replay window). Each request's sequence number
    is its counter, the replayed one's is 60000."""
    c = common_fields(job)
    src, dst = inner_fields(job)
    n = _count(job, "count", 10, 1, MAX_COUNT)
    with open_socket(c.target) as sock:
        tunnel = handshake(sock, c, c.identities[0])
        if tunnel is None:
            raise no_handshake("transport-replay")
        socks = {sock: tunnel}
        for counter in range(1, n + 1):
            sock.sendto(tunnel.echo(src, dst, counter, counter), c.target)
        in_order = _collect_replies(socks, c, src, dst, set(range(1, n + 1)), time.monotonic() + c.timeout)
        replay_seq = 60000
        sock.sendto(tunnel.echo(src, dst, replay_seq, counter=1), c.target)
        replayed = _collect_replies(socks, c, src, dst, {replay_seq}, time.monotonic() + c.timeout)
        batch = [n + 10, n + 7, n + 9, n + 8]
        for counter in batch:
            sock.sendto(tunnel.echo(src, dst, counter, counter), c.target)
        out_of_order = _collect_replies(socks, c, src, dst, set(batch), time.monotonic() + c.timeout)
    return TransportReplayResult(
        in_order_sent=n,
        in_order_replies=len(in_order.keys() & set(range(1, n + 1))),
        replay_replied=replay_seq in replayed,
        out_of_order_sent=len(batch),
        out_of_order_replies=len(out_of_order.keys() & set(batch)),
    )


WINDOW_OFFSETS = (1024, 2047, 2048, 4096, 8000, 8064, 8127, 8128, 8129, 8191, 8192, 8193)
"""Offsets below the highest counter tried by ``replay-window``: around the kernel's and
wireguard-go's window of 8,128 (8,192 bits less one word), and smaller ones, so a
smaller window is measured too."""
EMPTY_CHUNKS = 3
"""Reordering stops after this many chunks in a row with no reply: the counters go
down, so once they are behind the window all the rest are too."""


def _offsets(job: Job) -> list[int]:
    value = job.get("offsets", list(WINDOW_OFFSETS))
    if not isinstance(value, list) or not value or len(value) > 64:
        raise JobError("offsets: expected a list of 1 to 64 counter offsets")
    return sorted(
        {int(number({"offsets": k}, "offsets", minimum=1, maximum=30000, integer=True)) for k in value}
    )


def _echo_batch(
    sock: socket.socket, tunnel: Tunnel, c: Common, src: str, dst: str, counters: list[int]
) -> set[int]:
    """Echo requests sealed with ``counters`` (each its own sequence number), in that
    order; the counters whose replies came back within the timeout."""
    for counter in counters:
        sock.sendto(tunnel.echo(src, dst, counter, counter), c.target)
    got = _collect_replies({sock: tunnel}, c, src, dst, set(counters), time.monotonic() + c.timeout)
    return got.keys() & set(counters)


def replay_window(job: Job) -> ReplayWindowResult:
    """How far back the DUT's replay window reaches, and a long reordering. Counter
    ``reorder`` + 1 first (default 8000 + 1), then ``reorder`` down to 1, ``chunk`` at a
    time (default 100; each chunk's replies awaited, so nothing is lost to queues):
    all inside an 8,128 window (it stops after EMPTY_CHUNKS chunks in a row got no
    reply: ``reorder_sent`` counts what went, the first one included). Then counter ``top`` (past everything sent), then
    counters ``top`` - k for each offset k in ``offsets`` (none seen before, so only
    the window decides). Every request's sequence number is its counter."""
    c = common_fields(job)
    src, dst = inner_fields(job)
    reorder = _count(job, "reorder", 8000, 1, 30000)
    chunk = _count(job, "chunk", 100, 1, 2000)
    offsets = _offsets(job)
    top = reorder + 2 + max(offsets)  # at most 60,002: every counter is also a 16-bit sequence number
    with open_socket(c.target) as sock:
        tunnel = handshake(sock, c, c.identities[0])
        if tunnel is None:
            raise no_handshake("replay-window")
        first = _echo_batch(sock, tunnel, c, src, dst, [reorder + 1])
        delivered, sent, empty = len(first), 1, 0
        for high in range(reorder, 0, -chunk):
            if empty >= EMPTY_CHUNKS:
                break
            counters = list(range(high, max(0, high - chunk), -1))
            got = len(_echo_batch(sock, tunnel, c, src, dst, counters))
            delivered, sent, empty = delivered + got, sent + len(counters), 0 if got else empty + 1
        top_ok = _echo_batch(sock, tunnel, c, src, dst, [top])
        behind = _echo_batch(sock, tunnel, c, src, dst, [top - k for k in offsets])
    return ReplayWindowResult(
        reorder=reorder,
        reorder_first_delivered=bool(first),
        reorder_sent=sent,
        reorder_delivered=delivered,
        top=top,
        top_delivered=bool(top_ok),
        offsets=tuple(offsets),
        offsets_accepted=tuple(k for k in offsets if top - k in behind),
    )


def roaming(job: Job) -> RoamingResult:
    """A handshake and a ping from one UDP port, then a ping under the same keys from a
    second socket (another port): where do the replies go?"""
    c = common_fields(job)
    src, dst = inner_fields(job)
    with open_socket(c.target) as old, open_socket(c.target) as new:
        tunnel = handshake(old, c, c.identities[0])
        if tunnel is None:
            raise no_handshake("roaming")
        socks = {old: tunnel, new: tunnel}
        old.sendto(tunnel.echo(src, dst, 1), c.target)
        first = _collect_replies(socks, c, src, dst, {1}, time.monotonic() + c.timeout)
        new.sendto(tunnel.echo(src, dst, 2), c.target)
        second = _collect_replies(socks, c, src, dst, {2}, time.monotonic() + c.timeout)
        # a copy to the old port as well would come at about the same time
        more = _collect_replies(socks, c, src, dst, None, time.monotonic() + min(LINGER, c.timeout))
        second.setdefault(2, []).extend(more.get(2, []))
    return RoamingResult(
        first_reply_port_ok=first.get(1) == [old],
        reply_to_new_port=new in second.get(2, []),
        reply_to_old_port=old in second.get(2, []),
    )


def inner_source(job: Job) -> InnerSourceResult:
    """An echo request whose inner source is ``spoof_src`` (not the identity's allowed
    IP), then one from ``inner.src``. A reply can only come back if the DUT routes the
    spoofed address to a peer it can reach: give a second identity whose allowed IP is
    ``spoof_src`` and it is handshaken first, so a DUT that delivered the spoofed
    packet is caught by its reply (``return_path`` says whether that was so)."""
    c = common_fields(job)
    src, dst = inner_fields(job)
    spoof = address_field(job.get("spoof_src"), "spoof_src")
    if spoof == src:
        raise JobError("spoof_src: must differ from inner.src")
    with open_socket(c.target) as sock, open_socket(c.target) as other:
        tunnel = handshake(sock, c, c.identities[0])
        if tunnel is None:
            raise no_handshake("inner-source")
        socks = {sock: tunnel}
        back = handshake(other, c, c.identities[1]) if len(c.identities) > 1 else None
        if back is not None:
            back.ident = tunnel.ident
            socks[other] = back
        sock.sendto(tunnel.echo(spoof, dst, 1), c.target)
        spoofed = _collect_replies(socks, c, spoof, dst, {1}, time.monotonic() + c.timeout)
        sock.sendto(tunnel.echo(src, dst, 2), c.target)
        control = _collect_replies(socks, c, src, dst, {2}, time.monotonic() + c.timeout)
    return InnerSourceResult(
        spoofed_replied=1 in spoofed, control_replied=2 in control, return_path=back is not None
    )


def keepalive(job: Job) -> KeepaliveResult:
    """A handshake, then ``listen`` seconds of keepalives from the DUT (empty transport
    packets that authenticate), timed from when the session came up. A pyref `Peer`
    keeps the session: it answers handshakes the DUT starts and sends nothing else."""
    c = common_fields(job)
    listen = _number(job, "listen", 5.0, 0.1, MAX_LISTEN)
    peer = Peer(c.identities[0], c.responder_public, os.urandom)
    peer.wall_offset = time.time() - time.monotonic()
    times: list[float] = []
    with open_socket(c.target) as sock:
        start = time.monotonic()
        for d in peer.send(b"", start):  # queued behind a handshake: confirms the session
            sock.sendto(d, c.target)
        up: float | None = None
        end = start + c.timeout
        while (now := time.monotonic()) < end:
            due = peer.deadline()
            if due is not None and due <= now:
                out = peer.tick(now)
            else:
                got = receive([sock], c.target, min(end, due) if due is not None else end)
                if got is None:
                    continue
                out, is_keepalive = _peer_receive(peer, got[1], time.monotonic())
                if is_keepalive and up is not None:
                    times.append(time.monotonic() - up)
            for d in out:
                sock.sendto(d, c.target)
            if up is None and (peer.current is not None or peer.next is not None):
                up = time.monotonic()
                end = up + listen
    if up is None:
        raise no_handshake("keepalive")
    return KeepaliveResult(
        listen=listen,
        keepalive_times=tuple(round(t, 3) for t in times),
        intervals=tuple(round(b - a, 3) for a, b in zip(times, times[1:], strict=False)),
    )


def _peer_receive(peer: Peer, datagram: bytes, now: float) -> tuple[list[bytes], bool]:
    """(datagrams to send, whether this was a keepalive) for one datagram from the DUT."""
    if datagram[:1] == bytes([TRANSPORT]) and len(datagram) >= TRANSPORT_HEADER_LEN:
        receiver, counter = struct.unpack_from("<IQ", datagram, 4)
        out, packet, ok = peer.receive_transport(receiver, counter, datagram, now)
        return out, ok and packet is None
    out, _ = peer.receive(datagram, now)
    return out, False


def listen(job: Job) -> ListenResult:
    """Bind ``port`` (on ``bind``, default all addresses) and count every datagram for
    ``listen`` seconds (the low-order-key probe: a conformant DUT sends nothing)."""
    port = _count(job, "port", 0, 1, 65535)
    seconds = _number(job, "listen", 3.0, 0.1, MAX_LISTEN)
    address = job.get("bind", "0.0.0.0")
    if not isinstance(address, str):
        raise JobError("bind: expected an address")
    sources: set[str] = set()
    count = 0
    with listening_socket(port, address) as sock:
        deadline = time.monotonic() + seconds
        while (got := receive([sock], None, deadline)) is not None:
            count += 1
            host, sport = str(got[2][0]), got[2][1]
            sources.add(f"[{host}]:{sport}" if ":" in host else f"{host}:{sport}")
    return ListenResult(datagrams=count, sources=tuple(sorted(sources)))


MODES: dict[str, Mode] = {
    "replay-initiation": replay_initiation,
    "bad-mac1": bad_mac1,
    "transport-replay": transport_replay,
    "replay-window": replay_window,
    "roaming": roaming,
    "keepalive": keepalive,
    "inner-source": inner_source,
    "listen": listen,
}
