"""Transport data: padding and sealing (the replay window: test_pyref_replay.py)."""

from __future__ import annotations

import os

import pytest
from cryptography.exceptions import InvalidTag

from harness.impl.pyref.messages import parse_transport
from harness.impl.pyref.transport import open_, pad, seal


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
