"""The shedder (`harness/pyref/shedding.py`) on a test clock: which sources the
kernel is asked to thin out, by how much, and when that ends."""

from __future__ import annotations

import pytest

from harness.pyref.shedding import WINDOW, Shedder, ShedPolicy, describe, keep_one_in, key_of

FLOOD, PEER = "198.18.0.201", "198.18.0.1"
FLOOD_KEY = bytes([198, 18, 0, 201])


def window(
    shedder: Shedder, start: float, *, read: int, by_host: dict[str, int], dropped: int = 0, behind: bool
) -> dict[bytes, int] | None:
    """One window's worth of reports: everything in one wakeup at ``start``, then an
    empty wakeup as the window ends; what the second returned."""
    assert shedder.observe(read, by_host, dropped, behind, start) is None
    return shedder.observe(0, {}, 0, False, start + WINDOW)


def test_sources_are_what_the_rate_limiter_counts() -> None:
    assert key_of("198.18.0.201") == FLOOD_KEY
    assert key_of("2001:db8:1:2:aaaa::1") == key_of("2001:db8:1:2::ffff") == bytes.fromhex("20010db800010002")
    assert key_of("fe80::1%eth0") == bytes.fromhex("fe80000000000000")
    assert key_of("::ffff:198.18.0.201") == FLOOD_KEY  # an IPv4-mapped address is the IPv4 host
    assert key_of("not an address") is None
    assert describe(FLOOD_KEY) == FLOOD and describe(bytes.fromhex("20010db800010002")) == "2001:db8:1:2::/64"


def test_keep_one_in_is_the_smallest_power_of_two_that_fits() -> None:
    assert keep_one_in(100, 100, 4096) == 1
    assert keep_one_in(101, 100, 4096) == 2
    assert keep_one_in(150_000, 15_000, 4096) == 16
    assert keep_one_in(1e12, 1, 4096) == 4096


def test_nothing_is_thinned_while_pyref_keeps_up() -> None:
    """Not behind, however many handshake messages one source sends: the responder rate
    and the load steps of the handshake suite are measured as before."""
    s = Shedder()
    assert window(s, 0.0, read=5000, by_host={FLOOD: 5000}, behind=False) is None
    assert s.table == {} and s.capacity is None
    # behind on data alone (a rekey or two among it): no capacity is taken from that
    assert window(s, WINDOW, read=5000, by_host={PEER: 2}, dropped=50_000, behind=True) is None
    assert s.table == {} and s.capacity is None


def test_a_flood_that_overflows_the_socket_is_thinned_to_half_what_pyref_reads() -> None:
    """Behind, one source sent all it read: its arrivals are what was read scaled by the
    overflow (1,000 read, 9,000 dropped: 40,000 a second), pyref's capacity is what it
    read (4,000 a second), so one in 2**ceil(log2(40,000 / 2,000)) = 32 is kept."""
    s = Shedder()
    table = window(s, 0.0, read=1000, by_host={FLOOD: 990, PEER: 10}, dropped=9000, behind=True)
    assert s.capacity == pytest.approx(4000)
    assert table == {FLOOD_KEY: 32}


def test_a_load_pyref_mostly_answers_is_not_thinned() -> None:
    """Behind, losing under three quarters of what arrived (a load under four times
    what pyref reads, as the handshake suite's load steps on a busy machine): nothing
    is thinned, pyref answers what it reads as before."""
    s = Shedder()
    assert window(s, 0.0, read=4000, by_host={FLOOD: 4000}, dropped=10_000, behind=True) is None
    assert s.table == {} and s.capacity == pytest.approx(16000)
    # losing more: 4,000 read and 14,000 dropped is 72,000 a second against 8,000 allowed
    assert window(s, WINDOW, read=4000, by_host={FLOOD: 4000}, dropped=14_000, behind=True) == {FLOOD_KEY: 16}


def test_a_source_with_a_small_share_or_count_is_not_thinned() -> None:
    many = {f"10.0.{i // 256}.{i % 256}": 10 for i in range(100)}  # 100 sources, 10 each
    s = Shedder()
    assert window(s, 0.0, read=1000, by_host=many, dropped=9000, behind=True) is None
    few = Shedder()
    assert window(few, 0.0, read=40, by_host={FLOOD: 40}, dropped=9000, behind=True) is None


def test_still_behind_doubles_k_and_a_quieter_source_is_lifted() -> None:
    s = Shedder()
    t = 0.0
    assert window(s, t, read=1000, by_host={FLOOD: 1000}, dropped=9000, behind=True) == {FLOOD_KEY: 32}
    t += WINDOW
    # still behind, and it still sends most of what is read: twice the thinning
    assert window(s, t, read=1000, by_host={FLOOD: 1000}, dropped=9000, behind=True) == {FLOOD_KEY: 64}
    t += WINDOW
    # keeping up: its rate measured without bias (40 read x 64 in 0.25 s = 10,240/s) needs a K
    # of 8 against the allowance (2,000/s), four times smaller than 64: K becomes twice that
    assert window(s, t, read=40, by_host={FLOOD: 40}, behind=False) == {FLOOD_KEY: 16}
    t += WINDOW
    # the same rate again: 16 stays (8 would do, but that is not four times smaller)
    assert window(s, t, read=160, by_host={FLOOD: 160}, behind=False) is None
    t += WINDOW
    # the flood stopped: lifted at once
    assert window(s, t, read=0, by_host={}, behind=False) == {}


def test_one_new_source_a_window_and_at_most_max_sources() -> None:
    s = Shedder(ShedPolicy(max_sources=2, share=0.1))
    t = 0.0
    floods = {"10.0.0.1": 500, "10.0.0.2": 400, "10.0.0.3": 300}
    assert window(s, t, read=1200, by_host=floods, dropped=20_000, behind=True) == {bytes([10, 0, 0, 1]): 16}
    t += WINDOW
    table = window(s, t, read=1200, by_host=floods, dropped=20_000, behind=True)
    assert table is not None and set(table) == {bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])}
    t += WINDOW
    table = window(s, t, read=1200, by_host=floods, dropped=20_000, behind=True)
    assert table is not None and bytes([10, 0, 0, 3]) not in table


def test_an_ipv6_flood_is_thinned_by_its_64() -> None:
    s = Shedder()
    hosts = {f"2001:db8:0:1::{i:x}": 100 for i in range(10)}  # one /64, ten addresses
    table = window(s, 0.0, read=1000, by_host=hosts, dropped=9000, behind=True)
    assert table == {bytes.fromhex("20010db800000001"): 32}


def test_k_is_bounded() -> None:
    s = Shedder(ShedPolicy(max_keep_one_in=8))
    t = 0.0
    for _ in range(5):
        window(s, t, read=1000, by_host={FLOOD: 1000}, dropped=1_000_000, behind=True)
        t += WINDOW
    assert s.table == {FLOOD_KEY: 8}


@pytest.mark.parametrize(
    "bad",
    [
        {"window": 0},
        {"share": 0},
        {"share": 1.5},
        {"allowance": 0},
        {"loss": 0},
        {"minimum": 0},
        {"max_keep_one_in": 1},
    ],
)
def test_a_bad_policy_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="ShedPolicy"):
        ShedPolicy(**bad)  # type: ignore[arg-type]
