"""The relay process itself: two UDP sockets, one selector loop and a heap of
datagrams waiting for their time.

Leg A's socket receives what peer A sends; each datagram is impaired and sent
from leg B's socket to B's forward address, so peer B sees the relay's leg B as
its peer. The other way round likewise. Started as ``python -m harness.impair.relay``
(`harness.impair.relay` builds and parses that command line), it prints one JSON line
once both sockets are bound and one JSON line of statistics when SIGTERM or
SIGINT ends it, then exits 0.

One thread, no asyncio: on this machine a selector loop forwarded two to eight
times as many datagrams a second as asyncio's datagram endpoints, as many as a
thread per direction without a delay and mostly more with one
(docs/impairments.md, "Why a selector loop"). Only the standard library is
used, so the relay runs from the harness's bundle on any Linux host.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import json
import os
import random
import selectors
import signal
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from harness.impair.model import Impairment

Address = tuple[str, int]
BATCH = 64
"""Datagrams read from one socket before the loop looks at the other one and the heap."""
BUFFER_BYTES = 4 << 20
"""Socket buffers: bursts wait here rather than being dropped by the kernel."""
MAX_DATAGRAM = 65535
COUNTERS = (
    "received", "forwarded", "dropped", "duplicated", "reordered", "bytes", "send_errors", "unsent", "overflow",
)  # fmt: skip
_FORCE = {socket.SO_RCVBUF: 33, socket.SO_SNDBUF: 32}
"""Linux's SO_RCVBUFFORCE and SO_SNDBUFFORCE (root may exceed net.core.rmem_max)."""


class OneWay:
    """One way through the relay: read from ``rx``, impaired, sent from ``tx`` to ``dest``.

    Counters (``received + duplicated == forwarded + dropped + send_errors + unsent``):
    ``received`` datagrams read, ``forwarded`` sent (duplicates included), ``dropped`` by
    the configured loss, ``duplicated`` extra copies made, ``reordered`` sent at once
    past the delay, ``bytes`` of the forwarded ones, ``send_errors`` refused by the
    kernel on sending, ``unsent`` still waiting for their time at the end,
    ``overflow`` dropped by the kernel before the relay read them (its receive
    buffer was full: the relay itself was too slow).
    """

    def __init__(
        self,
        name: str,
        rx: socket.socket,
        tx: socket.socket,
        dest: Address,
        imp: Impairment,
        rng: random.Random,
    ) -> None:
        self.name = name
        self.rx = rx
        self.tx = tx
        self.dest = dest
        self.imp = imp
        self.rng = rng
        self.counts = dict.fromkeys(COUNTERS, 0)

    def send(self, data: bytes) -> None:
        try:
            self.tx.sendto(data, self.dest)
        except OSError:
            self.counts["send_errors"] += 1
            return
        self.counts["forwarded"] += 1
        self.counts["bytes"] += len(data)

    def drain(self, heap: list[Any], order: Iterator[int]) -> None:
        """Read up to `BATCH` datagrams; send them, drop them or put them on ``heap``."""
        if not self.imp.active:
            self._forward_batch()
            return
        recv, random_, send, clock = self.rx.recv, self.rng.random, self.send, time.monotonic
        imp = self.imp
        loss, dup, reorder = imp.loss_pct / 100, imp.duplicate_pct / 100, imp.reorder_pct / 100
        delay, jitter = imp.delay_ms / 1000, imp.jitter_ms / 1000
        received = dropped = duplicated = reordered = 0
        for _ in range(BATCH):
            try:
                data = recv(MAX_DATAGRAM)
            except BlockingIOError:
                break
            except OSError:
                continue  # an ICMP error reported on the socket; the next read goes on
            received += 1
            # The draws, in this order, make a seed repeat a run: loss, duplicate,
            # then for each copy reorder and jitter (each only where configured).
            if loss and random_() < loss:
                dropped += 1
                continue
            copies = 1
            if dup and random_() < dup:
                copies = 2
                duplicated += 1
            for _copy in range(copies):
                if reorder and random_() < reorder:
                    reordered += 1
                    send(data)
                elif delay:
                    due = clock() + delay + (jitter * (2 * random_() - 1) if jitter else 0.0)
                    heapq.heappush(heap, (due, next(order), self, data))
                else:
                    send(data)
        counts = self.counts
        counts["received"] += received
        counts["dropped"] += dropped
        counts["duplicated"] += duplicated
        counts["reordered"] += reordered

    def _forward_batch(self) -> None:
        """The path without impairment: read and send, nothing else."""
        recv, sendto, dest = self.rx.recv, self.tx.sendto, self.dest
        received = forwarded = nbytes = errors = 0
        for _ in range(BATCH):
            try:
                data = recv(MAX_DATAGRAM)
            except BlockingIOError:
                break
            except OSError:
                continue
            received += 1
            try:
                sendto(data, dest)
            except OSError:
                errors += 1
                continue
            forwarded += 1
            nbytes += len(data)
        counts = self.counts
        counts["received"] += received
        counts["forwarded"] += forwarded
        counts["bytes"] += nbytes
        counts["send_errors"] += errors


def open_socket(bind: Address) -> socket.socket:
    family = socket.AF_INET6 if ":" in bind[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, _FORCE[option], BUFFER_BYTES)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, option, BUFFER_BYTES)
        sock.bind(bind)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def kernel_drops(sock: socket.socket) -> int:
    """Datagrams the kernel dropped for ``sock`` (its receive buffer was full), from
    the ``drops`` column of /proc/net/udp; 0 where that cannot be read."""
    inode = str(os.fstat(sock.fileno()).st_ino)
    for table in ("/proc/self/net/udp", "/proc/self/net/udp6"):
        try:
            with open(table) as f:
                rows = [line.split() for line in f.readlines()[1:]]
        except OSError:
            continue
        for row in rows:
            if len(row) >= 13 and row[9] == inode:
                return int(row[12])
    return 0


def _address(sock: socket.socket) -> list[Any]:
    host, port = sock.getsockname()[:2]
    return [host, port]


def serve(
    a_bind: Address, a_to: Address, b_bind: Address, b_to: Address, imp: Impairment, out: TextIO = sys.stdout
) -> int:
    """Run the relay until SIGTERM or SIGINT; the exit status."""
    stop: list[int] = []
    wake_r, wake_w = socket.socketpair()
    for s in (wake_r, wake_w):
        s.setblocking(False)
    # The handler only notes the signal; the byte the interpreter writes to the wakeup
    # socket makes the selector return, and the loop ends at its next turn.
    signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda n, _frame: stop.append(n))
    sockets: list[socket.socket] = []
    for leg, bind in (("A", a_bind), ("B", b_bind)):
        try:
            sockets.append(open_socket(bind))
        except OSError as exc:
            print(
                f"relay: cannot bind leg {leg} to {show_address(bind)}: {exc.strerror or exc}",
                file=sys.stderr,
            )
            return 2
    sock_a, sock_b = sockets
    seed = imp.seed if imp.seed is not None else int.from_bytes(os.urandom(4), "big")
    # One generator per direction, so what happens to one direction's datagrams does
    # not depend on how the two directions' arrivals interleave.
    a_to_b = OneWay("a_to_b", sock_a, sock_b, b_to, imp, random.Random(f"{seed}/a_to_b"))
    b_to_a = OneWay("b_to_a", sock_b, sock_a, a_to, imp, random.Random(f"{seed}/b_to_a"))
    selector = selectors.DefaultSelector()
    selector.register(sock_a, selectors.EVENT_READ, a_to_b)
    selector.register(sock_b, selectors.EVENT_READ, b_to_a)
    selector.register(wake_r, selectors.EVENT_READ, None)
    ready = {"event": "ready", "a": _address(sock_a), "b": _address(sock_b), "seed": seed, "pid": os.getpid()}
    _say(out, ready)

    heap: list[Any] = []
    order = itertools.count()
    clock, heappop = time.monotonic, heapq.heappop
    while not stop:
        timeout = max(0.0, heap[0][0] - clock()) if heap else None
        for key, _events in selector.select(timeout):
            if key.data is None:
                _empty(wake_r)
            else:
                key.data.drain(heap, order)
        if heap:
            now = clock()
            while heap and heap[0][0] <= now:
                _due, _n, way, data = heappop(heap)
                way.send(data)

    for _due, _n, way, _data in heap:
        way.counts["unsent"] += 1
    a_to_b.counts["overflow"] = kernel_drops(sock_a)
    b_to_a.counts["overflow"] = kernel_drops(sock_b)
    stats = {"event": "stats", "a_to_b": a_to_b.counts, "b_to_a": b_to_a.counts, "seed": seed}
    _say(out, stats)
    for s in (*sockets, wake_r, wake_w):
        s.close()
    return 0


def _say(out: TextIO, line: dict[str, Any]) -> None:
    """One JSON line in one write, so a reader never sees half of it (print writes the
    newline on its own when Python's output is unbuffered)."""
    out.write(json.dumps(line) + "\n")
    out.flush()


def _empty(sock: socket.socket) -> None:
    try:
        while sock.recv(512):
            pass
    except BlockingIOError:
        pass


def show_address(address: Address) -> str:
    """``ADDR:PORT``, or ``[ADDR6]:PORT``."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def read_address(text: str) -> Address:
    """The reverse of `show_address`; ValueError if ``text`` is not one."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{text!r} is not ADDR:PORT")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    ipaddress.ip_address(host)
    return host, int(port)
