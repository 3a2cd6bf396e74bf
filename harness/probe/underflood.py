"""A legitimate peer's handshake while another address floods the device under
test (DUT) with initiations: how long until the peer gets its response.

One mode, ``handshake-under-flood``. Fields besides the common ones
(`harness/probe/__main__.py`; the first identity is the legitimate peer, a peer
of the DUT, sending from ``bind``):

- ``flood_from``: the address the flood is sent from (on this host, not
  ``bind``: upstream limits handshakes per source address);
- ``rate``: flood initiations a second (0, the default: as fast as this
  sender goes);
- ``warmup``: seconds of flood before the peer's first initiation (1 s: the
  DUT has met the flood by then; the handshake suite gives it 2);
- ``give_up``: seconds after the first initiation the peer waits for its
  handshake at most (30 s).

The flood: ``pool`` (4,096) distinct 148-byte initiations with random contents
and a valid MAC1 for the DUT's key (no identity of the DUT's, so past MAC1 each
costs it a Diffie-Hellman that fails, or, under load, a cookie reply), sent
round-robin from one socket by a process of its own (as another host's flood
would be: the peer's datagrams meet it wherever it is, not in the pauses of a
loop they share). What comes back to the flood is counted by kind.

The peer is pyref's own `Peer` (sans-IO) acting as initiator, with the
kernel's timers: its initiation, a cookie reply taken and nothing sent at once,
the retry REKEY_TIMEOUT plus up to 1/3 s later with the cookie's MAC2, and on
the response the handshake is complete (the keepalive that confirms it is sent
too). The flood stops when the handshake completes or the peer gives up.

Result `FloodHandshakeResult`. Traffic goes to ``target`` only.
"""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event

from harness.probe import Job, Mode
from harness.probe.core import address_field, common_fields, number
from harness.pyref.cookie import MACS_LEN
from harness.pyref.crypto import mac
from harness.pyref.messages import COOKIE_REPLY, INITIATION, INITIATION_LEN
from harness.pyref.noise import mac1_key
from harness.pyref.peer import Peer

CHUNK = 64
"""Flood datagrams sent between two looks at what came back (well under a millisecond)."""
MAX_GIVE_UP = 120.0
REPLY_READS = 64
"""Replies to the flood read (and counted) at most per chunk sent."""
FLOOD_STOP = 10.0
"""Seconds the flood's process has to stop and report once told."""


# -- the flood (sans-IO) -----------------------------------------------------------
def flood_pool(responder_public: bytes, count: int, random: Callable[[int], bytes]) -> list[bytes]:
    """``count`` initiations with random contents (sender index, ephemeral key, the
    encrypted fields) and a valid MAC1 for ``responder_public``; MAC2 zeros."""
    key = mac1_key(responder_public)
    head = bytes((INITIATION, 0, 0, 0))
    body_len = INITIATION_LEN - MACS_LEN - len(head)
    pool = []
    for _ in range(count):
        covered = head + random(body_len)
        pool.append(covered + mac(key, covered) + bytes(16))
    return pool


# -- results -------------------------------------------------------------------------
@dataclass(frozen=True)
class FloodHandshakeResult:
    """``handshake-under-flood``: the peer's handshake, and the flood it went through."""

    completed: bool
    """The peer got a valid response within ``give_up``."""
    seconds: float | None
    """From the peer's first initiation to its response consumed (None if not completed)."""
    initiations: int
    """Initiations the peer sent (its first and the retries)."""
    cookie_replies: int
    """Cookie replies the peer got (and took)."""
    flood_sent: int
    """Flood initiations sent."""
    flood_seconds: float
    """How long the flood ran (warmup included)."""
    flood_rate: float
    """Flood initiations a second actually sent."""
    flood_cookie_replies: int
    """Cookie replies that came back to the flood."""
    flood_responses: int
    """Other replies that came back to the flood (responses: there should be none)."""


# -- I/O -------------------------------------------------------------------------------
def _udp(target: tuple[str, int], bind: str | None) -> socket.socket:
    """A non-blocking UDP socket from ``bind`` (any port) connected to ``target``."""
    family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if bind is not None:
            sock.bind((bind, 0))
        sock.connect(target)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _send_all(sock: socket.socket, datagrams: list[bytes]) -> None:
    send = sock.send
    for datagram in datagrams:
        try:
            send(datagram)
        except (BlockingIOError, ConnectionRefusedError):
            pass
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise


class _Peer:
    """The legitimate peer: pyref's `Peer` as initiator on its own socket."""

    def __init__(self, sock: socket.socket, private: bytes, responder_public: bytes) -> None:
        self.sock = sock
        self.peer = Peer(private, responder_public, os.urandom)
        self.peer.wall_offset = time.time() - time.monotonic()
        self.started: float | None = None
        self.initiations = 0

    def start(self, now: float) -> None:
        self.started = now
        self._send(self.peer.initiate(now))

    def _send(self, datagrams: list[bytes]) -> None:
        self.initiations += sum(1 for d in datagrams if d[0] == INITIATION)
        _send_all(self.sock, datagrams)

    def step(self, now: float) -> None:
        """Read what arrived, act on due timers."""
        while True:
            try:
                data = self.sock.recv(2048)
            except (BlockingIOError, ConnectionRefusedError):
                break
            out, _ = self.peer.receive(data, now)
            self._send(out)
        due = self.peer.deadline()
        if due is not None and due <= now:
            self._send(self.peer.tick(now))

    @property
    def done_at(self) -> float | None:
        return self.peer.handshake_completed


@dataclass(frozen=True)
class _FloodTally:
    sent: int
    seconds: float
    cookie_replies: int
    others: int


def _flood(sock: socket.socket, pool: list[bytes], rate: float, stop: Event, out: Connection) -> None:
    """The flood, in a process of its own: ``pool`` round-robin (CHUNK at a time) at
    ``rate`` a second (0: as fast as it goes) until ``stop`` is set; what came back
    counted between chunks. Its `_FloodTally` goes to ``out``."""
    chunks = [pool[i : i + CHUNK] for i in range(0, len(pool) - len(pool) % CHUNK, CHUNK)]
    buf = bytearray(2048)
    counts = [0, 0]
    sent = 0
    start = time.monotonic()
    while not stop.is_set():
        _send_all(sock, chunks[(sent // CHUNK) % len(chunks)])
        sent += CHUNK
        for _ in range(REPLY_READS):
            try:
                n = sock.recv_into(buf)
            except (BlockingIOError, ConnectionRefusedError):
                break
            counts[0 if n and buf[0] == COOKIE_REPLY else 1] += 1
        if rate and (ahead := start + sent / rate - time.monotonic()) > 0:
            stop.wait(ahead)
    out.send(_FloodTally(sent, time.monotonic() - start, counts[0], counts[1]))


def _initiate(legit: _Peer, give_up: float) -> None:
    """The peer's first initiation now, then its timers and replies until the handshake
    completes or ``give_up`` seconds pass."""
    legit.start(time.monotonic())
    end = time.monotonic() + give_up
    while legit.done_at is None and (now := time.monotonic()) < end:
        due = legit.peer.deadline()
        select.select([legit.sock], [], [], max(0.0, min(end, due if due is not None else end) - now))
        legit.step(time.monotonic())


def handshake_under_flood(job: Job) -> FloodHandshakeResult:
    common = common_fields(job)
    flood_from = address_field(job.get("flood_from"), "flood_from")
    rate = number(job, "rate", 0.0, minimum=0.0, maximum=10_000_000.0)
    warmup = number(job, "warmup", 1.0, minimum=0.0, maximum=60.0)
    give_up = number(job, "give_up", 30.0, minimum=0.1, maximum=MAX_GIVE_UP)
    pool_size = int(number(job, "pool", 4096, minimum=CHUNK, maximum=1_000_000, integer=True))
    pool = flood_pool(common.responder_public, pool_size, os.urandom)
    with contextlib.ExitStack() as stack:
        flood = stack.enter_context(_udp(common.target, flood_from))
        legit = _Peer(stack.enter_context(_udp(common.target, common.bind)), common.identities[0],
                      common.responder_public)  # fmt: skip
        # The flood runs in a process of its own, as another host's would: the peer's
        # datagrams then meet the flood where it happens to be, not in its pauses.
        ctx = multiprocessing.get_context("fork")
        stop = ctx.Event()
        tally_in, tally_out = ctx.Pipe(duplex=False)
        flooder = ctx.Process(target=_flood, args=(flood, pool, rate, stop, tally_out), daemon=True)
        flooder.start()
        try:
            time.sleep(warmup)
            _initiate(legit, give_up)
        finally:
            stop.set()
            tally = tally_in.recv() if tally_in.poll(FLOOD_STOP) else None
            flooder.join(FLOOD_STOP)
            if flooder.is_alive():
                flooder.kill()
                flooder.join()
    if not isinstance(tally, _FloodTally):
        raise OSError(f"the flood's process ended without its count (exit {flooder.exitcode})")
    done, began = legit.done_at, legit.started
    return FloodHandshakeResult(
        completed=done is not None,
        seconds=round(done - began, 4) if done is not None and began is not None else None,
        initiations=legit.initiations,
        cookie_replies=legit.peer.counters.cookies_received,
        flood_sent=tally.sent,
        flood_seconds=round(tally.seconds, 4),
        flood_rate=round(tally.sent / tally.seconds, 1) if tally.seconds > 0 else 0.0,
        flood_cookie_replies=tally.cookie_replies,
        flood_responses=tally.others,
    )


MODES: dict[str, Mode] = {"handshake-under-flood": handshake_under_flood}
