"""Transport data: padding, sealing, and the replay window."""

from __future__ import annotations

import os
import random

import pytest
from cryptography.exceptions import InvalidTag
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.impl.pyref.messages import parse_transport
from harness.impl.pyref.transport import REJECT_AFTER_MESSAGES, WINDOW, ReplayWindow, open_, pad, seal


def test_padding() -> None:
    assert pad(b"", 1420) == b""
    assert len(pad(b"x", 1420)) == 16 and len(pad(bytes(16), 1420)) == 16 and len(pad(bytes(17), 1420)) == 32
    assert len(pad(bytes(1419), 1420)) == 1420  # never past the MTU


def test_seal_and_open() -> None:
    key = os.urandom(32)
    wire = seal(key, 77, 3, b"\x45packet", 1420)
    msg = parse_transport(wire)
    assert (msg.receiver, msg.counter) == (77, 3) and len(wire) == 16 + 16 + 16
    assert open_(key, msg).rstrip(b"\x00") == b"\x45packet"
    with pytest.raises(InvalidTag):
        open_(os.urandom(32), msg)
    keepalive = parse_transport(seal(key, 77, 4, b"", 1420))
    assert open_(key, keepalive) == b""


def test_replays_are_refused_out_of_order_is_fine() -> None:
    w = ReplayWindow()
    assert [w.accept(c) for c in (0, 1, 1, 0, 5, 3, 3, 2)] == [
        True,
        True,
        False,
        False,
        True,
        True,
        False,
        True,
    ]
    # With 2053 on top, 2053 - 2047 = 6 is the oldest counter still in the window.
    assert w.accept(5 + WINDOW) and not w.accept(4) and w.accept(6) and not w.accept(6)
    assert w.accept(5 + WINDOW - 1) and not w.check(5 + WINDOW - 1)
    assert not w.accept(REJECT_AFTER_MESSAGES) and not w.accept(-1)


def test_check_does_not_move_the_window() -> None:
    w = ReplayWindow()
    assert w.check(10) and w.top == -1
    w.accept(10)
    assert w.check(9) and w.accept(9) and not w.check(9)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=6000), max_size=300))
def test_window_matches_a_simple_model(counters: list[int]) -> None:
    w = ReplayWindow()
    seen: set[int] = set()
    top = -1
    for c in counters:
        expected = c not in seen and (c > top or top - c < WINDOW)
        assert w.accept(c) == expected
        if expected:
            seen.add(c)
            top = max(top, c)


def test_shuffled_within_window_all_accepted_once() -> None:
    w = ReplayWindow()
    counters = list(range(2000))
    random.Random(3).shuffle(counters)
    assert all(w.accept(c) for c in counters)
    assert not any(w.accept(c) for c in counters)


def test_echo_request_is_valid_ipv4_icmp() -> None:
    from harness.impl.pyref.ipv4 import checksum, echo_request, parse_echo_reply

    req = echo_request("198.19.99.2", "198.19.99.1", 7, 1)
    assert checksum(req[:20]) == 0 and checksum(req[20:]) == 0 and len(req) == 20 + 8 + 9
    reply = bytearray(req)
    reply[12:16], reply[16:20] = req[16:20], req[12:16]
    reply[20] = 0  # type: echo reply; fix the ICMP checksum
    reply[22:24] = b"\x00\x00"
    reply[22:24] = checksum(bytes(reply[20:])).to_bytes(2, "big")
    assert parse_echo_reply(bytes(reply)) == ("198.19.99.1", "198.19.99.2", 7, 1)
    assert parse_echo_reply(req) is None  # a request is not a reply
