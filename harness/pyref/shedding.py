"""Shedding a flood before it is read, sans-IO: which sources' handshake messages
the kernel should thin out in front of pyref's socket, and by how much.

Why. Upstream reads its socket in compiled code on every core, answers a flood
of initiations with cookie replies, and drops what overflows its handshake
queue (wireguard-go's device/receive.go, the kernel's receive.c). pyref reads
its socket in Python: a few tens of thousands of datagrams a second on a small
machine, where one sender can send over a hundred thousand (issue 22). Its
socket's buffer then overflows, and the kernel drops what arrives at random: a
legitimate peer's initiation as likely as the flood's, before the cookie gate
(`cookie`) or the rate limiter (`ratelimiter`) could tell them apart.

So when pyref falls behind, it asks the kernel to keep only one in K of the
handshake messages (initiations and responses) of the source that floods it
and to drop the rest before they reach the socket (the I/O layer's socket
filter, `harness/pyref/io/sockfilter.py`); every other source, transport data
and cookie replies pass untouched. The peers' messages are read again, and the
cookie gate does the rest. This module decides the table {source: K}; the I/O
layer measures and applies it. Nothing here reads a clock or a socket.

Rules:
- a source is what the rate limiter counts: an IPv4 address, or the /64 of an
  IPv6 address (`ratelimiter.source_key`);
- the I/O layer reports each wakeup: the datagrams it read, the initiations
  and responses among them by source address (cookie replies are never
  thinned), the datagrams the kernel dropped at the socket since the last
  report (overflow and filter alike), and whether the socket was nearly full
  when it woke (``behind``: what arrives is being dropped);
- every WINDOW seconds the table is reviewed. The *capacity* is the handshake
  messages read a second in the last window that was behind (with at least
  ``minimum`` of them): what pyref manages while there is more than it manages;
- entering, only in a window that was behind and lost at least ``loss`` of
  what arrived (the drops less those the filter accounts for, on average): a
  flood of four times what pyref reads or more. Below that nothing changes:
  the cookie gate answers what is read, and what overflows is lost at random,
  as what overflows upstream's handshake queue. Then the source of the
  most handshake messages read, if it sent at least ``share`` of them and at
  least ``minimum``; its K the power of two that brings its arrivals (those
  read, scaled up by the loss) down to ``allowance`` of the capacity, at
  least 2; one source a window, at most ``max_sources``;
- a thinned source, in a window still behind, while it still sends ``minimum``
  of what is read: K doubles (at most ``max_keep_one_in``);
- in a window not behind, its rate is measured without bias (what was read
  times K): if that fits the allowance, it is lifted; if a K at least four
  times smaller would do, K becomes twice that one (the margin keeps one
  window's noise from bringing it back and forth).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from harness.pyref.ratelimiter import source_key

WINDOW = 0.25
"""Seconds between two reviews of the table."""


@dataclass(frozen=True)
class ShedPolicy:
    window: float = WINDOW
    share: float = 0.25
    """A source enters only if it sent at least this share of the handshake messages read."""
    minimum: int = 64
    """...and at least this many in the window (a source that sends few is never thinned)."""
    allowance: float = 0.5
    """The share of the capacity a thinned source is left."""
    loss: float = 0.75
    """A source enters only in a window where at least this share of the datagrams that
    arrived overflowed the socket (a quarter in a first version thinned the handshake
    suite's load steps of 6,000-16,384 a second on a busy machine, and the initiation
    after a step that should get a cookie reply was dropped instead)."""
    max_sources: int = 16
    max_keep_one_in: int = 4096

    def __post_init__(self) -> None:
        if not (self.window > 0 and all(0 < x <= 1 for x in (self.share, self.allowance, self.loss))):
            raise ValueError(f"ShedPolicy: window > 0, share, allowance and loss in (0, 1], got {self}")
        if self.minimum < 1 or self.max_sources < 1 or self.max_keep_one_in < 2:
            raise ValueError(f"ShedPolicy: minimum, max_sources >= 1, max_keep_one_in >= 2, got {self}")


DEFAULT_SHED_POLICY = ShedPolicy()


def key_of(host: str) -> bytes | None:
    """The source a datagram's host (address text, an IPv6 zone allowed) belongs to;
    None for a host that is not an IP address."""
    try:
        return source_key(ipaddress.ip_address(host.partition("%")[0]).packed)
    except ValueError:
        return None


def describe(key: bytes) -> str:
    """A source as text: an IPv4 address, or an IPv6 /64."""
    if len(key) == 4:
        return str(ipaddress.IPv4Address(key))
    return f"{ipaddress.IPv6Address(key + bytes(16 - len(key)))}/64"


def keep_one_in(rate: float, allowed: float, most: int) -> int:
    """The smallest power of two K with rate / K <= allowed (1 if it already fits), at most ``most``."""
    k = 1
    while k < most and rate > allowed * k:
        k *= 2
    return k


class Shedder:
    """The table of thinned sources, kept from what the I/O layer reports."""

    def __init__(self, policy: ShedPolicy = DEFAULT_SHED_POLICY) -> None:
        self.policy = policy
        self.table: dict[bytes, int] = {}
        """Source -> K: one in K of its handshake messages is kept (K >= 2)."""
        self.capacity: float | None = None
        """Handshake messages read a second in the last window that was behind (None: never behind)."""
        self._start: float | None = None
        self._read = 0
        self._dropped = 0
        self._behind = False
        self._by_host: dict[str, int] = {}

    def observe(
        self, read: int, by_host: Mapping[str, int], dropped: int, behind: bool, now: float
    ) -> dict[bytes, int] | None:
        """One wakeup of the I/O layer: ``read`` datagrams, the handshake messages among
        them by source host, ``dropped`` datagrams the kernel dropped at the socket since
        the last call, ``behind`` if the socket was nearly full. At the end of a
        window, the new table if it changed (else None)."""
        if self._start is None:
            self._start = now
        self._read += read
        self._dropped += dropped
        self._behind = self._behind or behind
        mine = self._by_host
        for host, n in by_host.items():
            mine[host] = mine.get(host, 0) + n
        elapsed = now - self._start
        if elapsed < self.policy.window:
            return None
        counts: dict[bytes, int] = {}
        for host, n in mine.items():
            key = key_of(host)
            if key is not None:
                counts[key] = counts.get(key, 0) + n
        before = dict(self.table)
        self._review(counts, elapsed)
        self._start, self._read, self._dropped, self._behind = now, 0, 0, False
        mine.clear()
        return dict(self.table) if self.table != before else None

    def _review(self, counts: dict[bytes, int], elapsed: float) -> None:
        p = self.policy
        handshakes = sum(counts.values())
        # What overflowed: the drops less those the filter (as it was) accounts for, on average.
        filtered = sum(counts.get(s, 0) * (k - 1) for s, k in self.table.items())
        overflow = max(0, self._dropped - filtered)
        unthinned_read = max(1, self._read - sum(counts.get(s, 0) for s in self.table))
        if self._behind and handshakes >= p.minimum:  # not a window of data with a rekey or two
            self.capacity = handshakes / elapsed
        if self.capacity is None:
            return
        allowed = p.allowance * self.capacity
        for key, k in list(self.table.items()):
            n = counts.get(key, 0)
            if self._behind:
                if n >= p.minimum:
                    self.table[key] = min(p.max_keep_one_in, k * 2)
                continue
            target = keep_one_in(n * k / elapsed, allowed, p.max_keep_one_in)
            if target == 1:
                del self.table[key]
            elif target * 4 <= k:
                self.table[key] = target * 2
        if not self._behind or len(self.table) >= p.max_sources:
            return
        candidates = [(n, key) for key, n in counts.items() if key not in self.table]
        if not candidates:
            return
        n, key = max(candidates)
        if n < p.minimum or n < p.share * handshakes:
            return
        if overflow < p.loss * (self._read + overflow):
            return
        # Its arrivals: what was read of it, scaled as the unthinned traffic overflowed.
        rate = n * (1 + overflow / unthinned_read) / elapsed
        self.table[key] = max(2, keep_one_in(rate, allowed, p.max_keep_one_in))
