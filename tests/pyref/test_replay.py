"""The replay window: what the kernel (src/receive.c, counter_validate) and
wireguard-go (replay/replay.go, Filter.ValidateCounter) accept, and nothing else.

Both keep a ring of 128 blocks of 64 bits; both refuse a counter more than
COUNTER_WINDOW_SIZE (kernel src/messages.h; wireguard-go's windowSize) below the
highest one seen before looking at the ring, so which counters are accepted does
not depend on where the blocks begin. The tests state that set and check it on
every alignment around the boundary.
"""

from __future__ import annotations

import os
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.pyref.crypto import public_of
from harness.pyref.ipv4 import echo_request
from harness.pyref.peer import Peer
from harness.pyref.transport import (
    COUNTER_BITS_TOTAL,
    COUNTER_WINDOW_SIZE,
    REJECT_AFTER_MESSAGES,
    ReplayWindow,
)

PING = echo_request("198.19.0.1", "198.19.0.2", 1, 1)
# Upstream's numbers, stated here rather than taken from the module under test.
WINDOW = 8128  # kernel src/messages.h COUNTER_WINDOW_SIZE (64-bit); wireguard-go replay.go windowSize
RING = 8192  # kernel COUNTER_BITS_TOTAL; wireguard-go ringBlocks * blockBits


def test_the_constants_are_upstreams() -> None:
    """src/messages.h on a 64-bit kernel: COUNTER_BITS_TOTAL 8192, COUNTER_REDUNDANT_BITS
    BITS_PER_LONG (64), COUNTER_WINDOW_SIZE their difference, REJECT_AFTER_MESSAGES
    U64_MAX - COUNTER_WINDOW_SIZE - 1. wireguard-go's replay/replay.go: windowSize
    (ringBlocks - 1) * blockBits = 127 * 64."""
    assert COUNTER_BITS_TOTAL == 128 * 64
    assert COUNTER_WINDOW_SIZE == 127 * 64 == 8128
    assert REJECT_AFTER_MESSAGES == (2**64 - 1) - 8128 - 1


def test_the_first_packet_and_counter_zero() -> None:
    """A new keypair's window is all zeros (kernel: noise.c zeroes the keypair, so
    counter_validate starts from counter 0 with an empty backtrack; wireguard-go: the
    zero Filter). Counter 0 is accepted once; a first counter far from 0 is fine, and
    then the window is the 8128 counters below it."""
    w = ReplayWindow()
    assert w.check(0) and w.accept(0) and not w.accept(0) and not w.check(0)
    w = ReplayWindow()
    first = 100_000
    assert w.accept(first) and not w.accept(first)
    assert not w.accept(first - WINDOW - 1)
    assert w.accept(first - WINDOW) and not w.accept(first - WINDOW)
    assert not w.accept(0)
    assert not ReplayWindow().accept(-1)  # not a counter (they are unsigned)


def test_the_boundary_whatever_the_block_alignment() -> None:
    """receive.c counter_validate (blocks of 64 indexed by counter + 1) and replay.go
    ValidateCounter (blocks indexed by counter) both take top - 8128 and refuse
    top - 8129, for every position of top within its block: k from 8064 to 8192 below
    the top is accepted exactly when k <= 8128."""
    for top in [*range(3 * RING - 1, 3 * RING + 65), 10**12 + 7]:
        for k in range(8064, 8193):
            w = ReplayWindow()
            w.accept(top)
            assert w.accept(top - k) == (k <= WINDOW), (top, k)


def test_the_boundary_after_a_full_history() -> None:
    """With every counter up to the top accepted except the ones probed, the ring's
    older contents do not leak into the answer: still exactly k <= 8128 (same sources)."""
    for top in (RING * 2 - 1, RING * 2 + 31, 30_000):
        probed = {top - k for k in range(8064, 8193)}
        w = ReplayWindow()
        for c in range(top + 1):
            if c not in probed:
                assert w.accept(c)
        for k in range(8064, 8193):
            assert w.accept(top - k) == (k <= WINDOW), (top, k)


def test_reordered_by_up_to_8128_all_accepted_once() -> None:
    """The kernel's selftest (src/selftest/counter.c) takes COUNTER_WINDOW_SIZE + 1
    counters in reverse order; here in reverse, then shuffled in runs of 8129 (each
    run's oldest 8128 below its newest): every one accepted once, each replay refused."""
    run = WINDOW + 1
    backwards = list(range(run - 1, -1, -1))
    shuffled: list[int] = []
    r = random.Random(11)
    for start in range(run, 4 * run, run):
        chunk = list(range(start, start + run))
        r.shuffle(chunk)
        shuffled += chunk
    w = ReplayWindow()
    assert all(w.accept(c) for c in backwards + shuffled)
    assert not any(w.check(c) or w.accept(c) for c in shuffled)  # the last run: refused as seen
    assert w.top - min(shuffled[-run:]) == WINDOW


def test_a_jump_ahead_forgets_what_it_skips() -> None:
    """Moving the top ahead clears the ring's blocks it passes (receive.c counter_validate,
    replay.go ValidateCounter; the whole ring when the jump is longer than it): the
    counters skipped are accepted once each, also where the cleared stretch wraps round
    the ring's end, and what fell out of the window is refused."""
    w = ReplayWindow()
    assert all(w.accept(c) for c in range(12_000))  # the ring full, its slot for 11999 mid-way
    top = 12_000 + 5_999  # 5999 skipped, from the slot after 11999's round past the end
    assert w.accept(top)
    assert all(w.accept(c) for c in range(12_000, top))
    assert not any(w.accept(c) for c in range(top - WINDOW, 12_000))  # seen
    assert not w.accept(top - WINDOW - 1)  # too old
    far = 10**12
    assert w.accept(far)
    assert all(w.accept(c) for c in range(far - WINDOW, far))
    assert not w.accept(far - WINDOW - 1) and not w.accept(top)


def test_the_limit_and_the_spent_keypair() -> None:
    """counter_validate refuses a counter >= REJECT_AFTER_MESSAGES; the kernel's
    decrypt_packet (receive.c) refuses every packet of a keypair whose receiving
    counter reached it, so after REJECT_AFTER_MESSAGES - 1 nothing more is taken, not
    even an older counter in the window. (wireguard-go's limit, device/constants.go
    RejectAfterMessages, is 63 lower, and it would still take the older counter.)"""
    w = ReplayWindow()
    assert w.accept(REJECT_AFTER_MESSAGES - 3)
    assert not w.accept(REJECT_AFTER_MESSAGES) and not w.accept(REJECT_AFTER_MESSAGES + 1)
    assert not w.accept(2**64 - 1)
    assert w.check(REJECT_AFTER_MESSAGES - 2) and w.accept(REJECT_AFTER_MESSAGES - 1)
    assert not w.check(REJECT_AFTER_MESSAGES - 2) and not w.accept(REJECT_AFTER_MESSAGES - 2)
    assert not any(w.check(REJECT_AFTER_MESSAGES - k) for k in range(1, RING))


def test_check_does_not_move_the_window() -> None:
    w = ReplayWindow()
    assert w.check(10) and w.top == -1
    w.accept(10)
    assert w.check(9) and w.accept(9) and not w.check(9)
    assert w.check(10 + RING) and w.top == 10 and w.check(8)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=-9000, max_value=20_000), max_size=300))
def test_window_matches_a_plain_sliding_window(steps: list[int]) -> None:
    """Counters around the top (each step an offset from the highest so far, jumps
    included): accepted exactly when new and above the top or at most 8128 below it
    (the set counter_validate and ValidateCounter accept)."""
    w = ReplayWindow()
    seen: set[int] = set()
    top = -1
    for step in steps:
        c = max(0, top + step)
        expected = c not in seen and (c > top or top - c <= WINDOW)
        assert w.check(c) == expected
        assert w.accept(c) == expected
        if expected:
            seen.add(c)
            top = max(top, c)


def test_a_peer_takes_8000_reversed_packets_once_each() -> None:
    """Through Peer.receive: 8000 packets delivered newest first all arrive once, and
    every replay is counted as one (receive.c: counter_validate after decryption)."""
    ka, kb = os.urandom(32), os.urandom(32)
    a, b = Peer(ka, public_of(kb), os.urandom), Peer(kb, public_of(ka), os.urandom)
    [init] = a.send(PING, 0.0)
    [response], _ = b.receive(init, 0.0)
    [first], _ = a.receive(response, 0.0)  # the queued ping
    assert b.receive(first, 0.0)[1] == [PING]
    sent = [a.send(PING, 1.0)[0] for _ in range(8000)]
    assert all(b.receive(d, 1.0)[1] == [PING] for d in reversed(sent))
    assert not any(b.receive(d, 1.0)[1] for d in sent)
    assert b.counters.replayed == 8000
