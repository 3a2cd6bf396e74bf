"""Transport data: padding and sealing (the replay window: test_pyref_replay.py)."""

from __future__ import annotations

import os

import pytest
from cryptography.exceptions import InvalidTag

from harness.pyref.messages import parse_transport
from harness.pyref.transport import (
    DataCipher,
    open_,
    pad,
    padding_length,
    seal,
)

# (packet length, MTU, padding), worked out by hand from the kernel's calculate_skb_padding
# (src/send.c; wireguard-go's calculatePaddingSize in device/send.go decides the same): MTU 0
# pads to a multiple of 16; otherwise a length above the MTU is first taken modulo the MTU,
# then padded to a multiple of 16 but not past the MTU.
PADDING_KNOWN_ANSWERS = [
    (0, 1420, 0),  # a keepalive stays empty
    (1, 1420, 15),
    (16, 1420, 0),
    (17, 1420, 15),
    (1404, 1420, 4),  # to 1408
    (1416, 1420, 4),  # 1424 would pass the MTU: to 1420
    (1419, 1420, 1),
    (1420, 1420, 0),
    (1421, 1420, 15),  # longer than the MTU: 1421 mod 1420 = 1, padded as 1 byte is
    (1430, 1420, 6),  # 10 left over: to 16
    (1500, 1420, 0),  # 80 left over, a multiple of 16
    (2840, 1420, 0),  # exactly twice the MTU: nothing left over
    (2841, 1420, 15),
    (1252 + 28, 1280, 0),  # the largest IPv4 ping through an MTU of 1280
    (1279, 1280, 1),
    (1281, 1280, 15),
    (1365, 1380, 11),  # to 1376
    (1377, 1380, 3),  # 1392 would pass the MTU: to 1380
    (1352 + 28, 1380, 0),
    (1381, 1380, 15),
    (5, 10, 5),  # an MTU below 16 caps every padding
    (25, 10, 5),  # 25 mod 10 = 5, then to 10
    (5, 1, 0),  # MTU 1: everything is a multiple of it
    (0, 0, 0),  # MTU 0 (unknown): multiples of 16, whatever the length
    (1, 0, 15),
    (1421, 0, 3),
    (1500, 0, 4),
    (65535, 0, 1),
]


@pytest.mark.parametrize(("length", "mtu", "padding"), PADDING_KNOWN_ANSWERS)
def test_padding_as_the_kernel_pads(length: int, mtu: int, padding: int) -> None:
    """The kernel's src/send.c, calculate_skb_padding; wireguard-go's device/send.go, calculatePaddingSize."""
    assert padding_length(length, mtu) == padding
    assert pad(b"\x45" * length, mtu) == b"\x45" * length + bytes(padding)


@pytest.mark.parametrize("mtu", [0, 1, 10, 1280, 1380, 1420, 1500])
def test_both_seals_pad_the_same(mtu: int) -> None:
    """`seal` and the data path's `DataCipher.seal` give the same bytes, padded by `padding_length`."""
    key = os.urandom(32)
    cipher = DataCipher(key)
    for length in [*range(0, 70), *range(mtu - 40, mtu + 40), 2 * mtu, 2 * mtu + 1, 3000]:
        if length < 0:
            continue
        packet = os.urandom(length)
        wire = cipher.seal(9, length, packet, mtu)
        assert wire == seal(key, 9, length, packet, mtu)
        assert len(wire) == 32 + length + padding_length(length, mtu)
        assert open_(key, parse_transport(wire)) == pad(packet, mtu)


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
    from harness.pyref.ipv4 import checksum, echo_request, parse_echo_reply

    req = echo_request("198.19.99.2", "198.19.99.1", 7, 1)
    assert checksum(req[:20]) == 0 and checksum(req[20:]) == 0 and len(req) == 20 + 8 + 9
    reply = bytearray(req)
    reply[12:16], reply[16:20] = req[16:20], req[12:16]
    reply[20] = 0  # type: echo reply; fix the ICMP checksum
    reply[22:24] = b"\x00\x00"
    reply[22:24] = checksum(bytes(reply[20:])).to_bytes(2, "big")
    assert parse_echo_reply(bytes(reply)) == ("198.19.99.1", "198.19.99.2", 7, 1)
    assert parse_echo_reply(req) is None  # a request is not a reply
