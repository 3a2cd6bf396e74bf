"""A token bucket per source address for handshake messages, sans-IO.

Rules (the Linux kernel's drivers/net/wireguard/ratelimiter.c,
wg_ratelimiter_allow and wg_ratelimiter_gc_entries; wireguard-go's
ratelimiter/ratelimiter.go; read to learn, no code copied):
- a source is its IPv4 address, or the /64 its IPv6 address is in (the port
  does not count), so one host cannot get a fresh bucket per port, nor an IPv6
  host one per address of its subnet;
- each source earns one token a nanosecond and a handshake message costs
  1/PACKETS_PER_SECOND s of them; a bucket holds at most PACKETS_BURSTABLE
  messages' worth, and a new source starts full less the message that made it:
  a burst of 5, then 20 a second;
- a source idle for more than a second is forgotten (the kernel's GC, every
  second; a bucket refills in 0.25 s, so forgetting it changes no decision);
- the table is bounded (MAX_ENTRIES): when it is full, a new source is refused
  until entries expire, as the kernel refuses past max_entries.

Where it is consulted (the kernel's cookie.c, wg_cookie_validate_packet, and
wireguard-go's receive.go, RoutineHandshake): only under load, and only for a
handshake message whose MAC1 and MAC2 are valid (`cookie.CookieChecker`); a
refused one is dropped, not answered.

Time comes in as ``now`` (seconds on a monotonic clock); buckets count whole
nanoseconds, as the kernel's do.
"""

from __future__ import annotations

from collections import OrderedDict

PACKETS_PER_SECOND = 20  # ratelimiter.c (and ratelimiter.go's packetsPerSecond)
PACKETS_BURSTABLE = 5  # ratelimiter.c (and ratelimiter.go's packetsBurstable)
PACKET_COST_NS = 10**9 // PACKETS_PER_SECOND
TOKEN_MAX_NS = PACKET_COST_NS * PACKETS_BURSTABLE
IDLE_EXPIRY_NS = 10**9
"""A bucket unused for longer than this is dropped (ratelimiter.c's GC: NSEC_PER_SEC)."""
MAX_ENTRIES = 8192 * 8
"""Sources kept at most: the kernel's max_entries, 8 per slot of its table, whose 8192
slots are for a machine with more than 1 GiB of memory (wg_ratelimiter_init)."""
_V4_MAPPED = bytes(10) + b"\xff\xff"


def source_key(address: bytes) -> bytes:
    """What a bucket belongs to: an IPv4 address (4 bytes, or an IPv4-mapped IPv6
    address, which is the same host), an IPv6 address's first 64 bits, or any
    other address (a caller's own transport) whole."""
    if len(address) == 16:
        return address[12:] if address[:12] == _V4_MAPPED else address[:8]
    return address


class RateLimiter:
    """Token buckets by source; `allow` says whether one more handshake message from
    a source may go on to Diffie-Hellman now."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError(f"RateLimiter: max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        # source -> [tokens, last use], both in nanoseconds; least recently used first
        self._buckets: OrderedDict[bytes, list[int]] = OrderedDict()

    def __len__(self) -> int:
        """Sources remembered now (at most ``max_entries``)."""
        return len(self._buckets)

    def _expire(self, now_ns: int) -> None:
        buckets = self._buckets
        while buckets:
            key, bucket = next(iter(buckets.items()))
            if now_ns - bucket[1] <= IDLE_EXPIRY_NS:
                return
            del buckets[key]

    def allow(self, address: bytes, now: float) -> bool:
        """``address``: the source's IP address bytes (4 or 16), without the port."""
        now_ns = round(now * 1e9)
        self._expire(now_ns)
        key = source_key(address)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_entries:
                return False
            self._buckets[key] = [TOKEN_MAX_NS - PACKET_COST_NS, now_ns]
            return True
        self._buckets.move_to_end(key)
        tokens = min(TOKEN_MAX_NS, bucket[0] + max(0, now_ns - bucket[1]))
        bucket[1] = now_ns
        allowed = tokens >= PACKET_COST_NS  # the kernel's test; wireguard-go's is strictly greater
        bucket[0] = tokens - PACKET_COST_NS if allowed else tokens
        return allowed
