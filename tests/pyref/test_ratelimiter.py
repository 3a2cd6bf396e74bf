"""The per-source rate limiter for handshake messages (`ratelimiter.py`) on a
simulated clock, against the numbers of the Linux kernel's
drivers/net/wireguard/ratelimiter.c (wg_ratelimiter_allow, the GC) and
wireguard-go's ratelimiter/ratelimiter.go."""

from __future__ import annotations

import ipaddress

import pytest

from harness.pyref.ratelimiter import MAX_ENTRIES, RateLimiter, source_key


def ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


V4 = ip("198.18.0.1")


def allowed(limiter: RateLimiter, address: bytes, times: list[float]) -> list[bool]:
    return [limiter.allow(address, t) for t in times]


def test_a_burst_of_five_then_twenty_a_second() -> None:
    limiter = RateLimiter()
    # Five at one instant pass (the first makes the bucket, full less one), the sixth does not.
    assert allowed(limiter, V4, [100.0] * 7) == [True] * 5 + [False] * 2
    # One message's worth (1/20 s) comes back in 50 ms: one more, not two.
    assert allowed(limiter, V4, [100.049, 100.05, 100.05]) == [False, True, False]
    # Sent as fast as possible for a second: 20 pass, one every 50 ms.
    times = [100.05 + i / 1000 for i in range(1, 1001)]
    assert sum(allowed(limiter, V4, times)) == 20
    # Quiet for a while: the bucket is full again, but holds no more than a burst of 5.
    assert allowed(limiter, V4, [200.0] * 6) == [True] * 5 + [False]


def test_a_refused_message_does_not_spend_tokens() -> None:
    limiter = RateLimiter()
    allowed(limiter, V4, [0.0] * 5)
    assert allowed(limiter, V4, [0.01, 0.02, 0.03, 0.04]) == [False] * 4  # refused: nothing taken
    assert limiter.allow(V4, 0.05)  # so the token earned since 0.0 is still there at 0.05


def test_sources_are_independent_and_the_port_does_not_count() -> None:
    limiter = RateLimiter()
    other = ip("198.18.0.2")
    assert allowed(limiter, V4, [1.0] * 6) == [True] * 5 + [False]
    assert allowed(limiter, other, [1.0] * 6) == [True] * 5 + [False]  # its own bucket
    assert source_key(V4) == V4  # an address, 4 bytes: the caller strips the port


def test_ipv6_sources_are_grouped_by_their_64() -> None:
    limiter = RateLimiter()
    same_64 = [ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff::9"), ip("2001:db8:1:2:1:2:3:4")]
    results = [limiter.allow(same_64[i % 3], 5.0) for i in range(6)]
    assert results == [True] * 5 + [False]  # one bucket for the whole /64
    assert allowed(limiter, ip("2001:db8:1:3::1"), [5.0] * 5) == [True] * 5  # the next /64: another
    assert source_key(ip("::ffff:198.18.0.1")) == V4  # an IPv4-mapped address is the IPv4 host


def test_the_table_is_bounded_and_idle_sources_expire() -> None:
    limiter = RateLimiter(max_entries=3)
    hosts = [ip(f"198.18.1.{i}") for i in range(5)]
    assert [limiter.allow(h, 10.0) for h in hosts] == [True, True, True, False, False]
    assert len(limiter) == 3  # full: a new source is refused (the kernel's max_entries)
    assert limiter.allow(hosts[0], 10.5)  # a known one still has its bucket
    # Idle for more than a second, a source is forgotten (the kernel's GC): room again.
    assert limiter.allow(hosts[3], 11.2) and len(limiter) == 2  # hosts 1 and 2 expired, 0 not yet
    assert limiter.allow(hosts[4], 11.2) and len(limiter) == 3
    assert not limiter.allow(ip("198.18.1.99"), 11.3)
    assert limiter.allow(hosts[1], 12.3) and len(limiter) == 1  # everyone else idle > 1 s
    assert MAX_ENTRIES == 65536  # 8192 slots x 8 (ratelimiter.c's wg_ratelimiter_init, > 1 GiB)
    with pytest.raises(ValueError, match="max_entries"):
        RateLimiter(max_entries=0)


def test_many_sources_keep_the_table_within_its_bound() -> None:
    limiter = RateLimiter(max_entries=100)
    for i in range(5000):
        limiter.allow(i.to_bytes(4, "big"), i * 0.0005)  # 2000 new sources a second
        assert len(limiter) <= 100
