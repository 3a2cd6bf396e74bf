"""Transport data (WireGuard paper, sections 5.4.6 and 6), sans-IO: counters,
padding, and the sliding replay window.

The window accepts what the kernel (src/receive.c, counter_validate) and
wireguard-go (replay/replay.go, Filter.ValidateCounter) accept: a counter is
new if it is above the highest one accepted so far, or at most
COUNTER_WINDOW_SIZE (8128) below it and not seen before. Both keep a ring of
8192 bits in 64-bit blocks (RFC 6479's idea) but refuse anything more than 8128
below the top first, so the ring's block alignment never shows: the set
accepted is exactly that of a plain sliding window of 8128 counters below the
top. A counter is first *checked* (cheap, before decryption) and only
*accepted* after the packet authenticated, so forged packets cannot move the
window.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from harness.pyref.crypto import aead_decrypt, aead_encrypt
from harness.pyref.messages import TRANSPORT, Transport

# Paper, section 6.1 (constants), except REJECT_AFTER_MESSAGES (below).
REKEY_AFTER_MESSAGES = 2**60
REKEY_AFTER_TIME = 120.0
REJECT_AFTER_TIME = 180.0
REKEY_ATTEMPT_TIME = 90.0
REKEY_TIMEOUT = 5.0
KEEPALIVE_TIMEOUT = 10.0

# The replay window of a 64-bit kernel, src/messages.h: COUNTER_BITS_TOTAL, and
# COUNTER_WINDOW_SIZE = COUNTER_BITS_TOTAL - COUNTER_REDUNDANT_BITS (BITS_PER_LONG,
# 64; a 32-bit kernel's window is 8160). wireguard-go, replay/replay.go: a ring of
# ringBlocks (128) blocks of blockBits (64), windowSize = (ringBlocks - 1) * blockBits.
COUNTER_BITS_TOTAL = 8192
COUNTER_WINDOW_SIZE = COUNTER_BITS_TOTAL - 64
# The kernel's src/messages.h: U64_MAX - COUNTER_WINDOW_SIZE - 1 = 2**64 - 8130, for
# sending (send.c) and receiving (receive.c, counter_validate) alike. The paper and
# wireguard-go (device/constants.go, RejectAfterMessages) say 2**64 - 2**13 - 1, 63
# counters fewer; pyref follows the kernel.
REJECT_AFTER_MESSAGES = 2**64 - 1 - COUNTER_WINDOW_SIZE - 1

PADDING = 16
"""MESSAGE_PADDING_MULTIPLE (the kernel's messages.h), PaddingMultiple (wireguard-go's device/constants.go)."""
DEFAULT_MTU = 1420
"""An interface's MTU until it says otherwise: wireguard-go's DefaultMTU (device/tun.go), and the
kernel's default for a new device (device.c: ETH_DATA_LEN less the IPv6, UDP and WireGuard overhead)."""
MAX_MTU = 65535 - 32
"""The largest MTU used: wireguard-go's MaxContentSize (device/constants.go, a 65535-byte message
less the 32 bytes of header and tag); it caps a larger interface MTU to this (device/tun.go)."""

_BLOCKS = COUNTER_BITS_TOTAL // 8  # the ring: blocks of 8 bits, a byte each
_BLOCK_MASK = _BLOCKS - 1
_CLEAR = bytes(_BLOCKS)
_SPENT = b"\xff" * _BLOCKS


def _ring() -> bytearray:
    return bytearray(_BLOCKS)


@dataclass(slots=True)
class ReplayWindow:
    """The counters a keypair has received (see the module docstring for the rule).

    As upstream, a ring of COUNTER_BITS_TOTAL bits in blocks, cleared a block at a time
    as the top moves into it; the blocks here are bytes, not 64-bit words: in Python,
    indexing a bytearray is faster than testing a bit of a big int or of a list of ints.
    """

    top: int = -1
    """Highest counter accepted so far (-1: none)."""
    _seen: bytearray = field(default_factory=_ring, repr=False)
    """Bit ``c & 7`` of byte ``(c >> 3) & _BLOCK_MASK`` is set if counter c was accepted;
    right for every c from the start of the block ``_BLOCKS - 1`` blocks below top's
    block to top (more than COUNTER_WINDOW_SIZE + 1 counters)."""

    def check(self, counter: int) -> bool:
        """Could ``counter`` be new? (Does not change the window.)"""
        top = self.top
        if counter > top:
            return counter < REJECT_AFTER_MESSAGES
        return (
            top - counter <= COUNTER_WINDOW_SIZE
            and counter >= 0
            and not (self._seen[(counter >> 3) & _BLOCK_MASK] >> (counter & 7)) & 1
        )

    def accept(self, counter: int) -> bool:
        """Record an authenticated ``counter``; False if it is a replay or too old."""
        if not self.check(counter):
            return False
        seen = self._seen
        top = self.top
        block = counter >> 3
        if counter > top:
            moved = block - (top >> 3)  # blocks the top moves into: they held counters 8192 older
            if moved == 1:
                seen[block & _BLOCK_MASK] = 0
            elif moved:
                self._clear((top >> 3) + 1, moved)
            self.top = counter
            if counter == REJECT_AFTER_MESSAGES - 1:
                # The kernel's decrypt_packet refuses every packet of a keypair whose
                # counter reached the limit; wireguard-go still takes older ones in the window.
                seen[:] = _SPENT
                return True
        seen[block & _BLOCK_MASK] |= 1 << (counter & 7)
        return True

    def _clear(self, first: int, count: int) -> None:
        """Zero ``count`` blocks from block ``first`` on, round the ring (all of it at most)."""
        if count >= _BLOCKS:
            self._seen[:] = _CLEAR
            return
        start = first & _BLOCK_MASK
        end = start + count
        if end <= _BLOCKS:
            self._seen[start:end] = _CLEAR[:count]
        else:
            self._seen[start:] = _CLEAR[start:]
            self._seen[: end - _BLOCKS] = _CLEAR[: end - _BLOCKS]


def padding_length(length: int, mtu: int) -> int:
    """How many zero bytes follow a ``length``-byte packet before it is sealed, for an
    interface MTU of ``mtu`` (0: unknown), as the kernel's calculate_skb_padding (src/send.c)
    and wireguard-go's calculatePaddingSize (device/send.go) decide it:

    - MTU unknown: up to the next multiple of 16;
    - otherwise up to the next multiple of 16 but not past the MTU; a packet longer
      than the MTU is padded as if it were its length modulo the MTU (so a packet of
      exactly k x MTU gets none, MTU + 1 bytes get 15).
    """
    if mtu == 0:
        return -length % PADDING
    unit = length % mtu if length > mtu else length
    return min(mtu, unit + -unit % PADDING) - unit


def pad(packet: bytes, mtu: int) -> bytes:
    """``packet`` zero-padded as `padding_length` says (paper, section 5.4.6)."""
    return packet + bytes(padding_length(len(packet), mtu))


def seal(send_key: bytes, receiver_index: int, counter: int, packet: bytes, mtu: int) -> bytes:
    """A transport message carrying ``packet`` (empty: a keepalive)."""
    return Transport(receiver_index, counter, aead_encrypt(send_key, counter, pad(packet, mtu), b"")).encode()


# -- the data path ---------------------------------------------------------------
# What `seal`/`open_` do, for the per-packet path: the AEAD objects are made once
# per keypair, header and nonce come from precompiled structs, and padding is a
# slice of zeros. Same bytes on the wire (tests/pyref/test_transport.py checks).
_HEADER = struct.Struct(
    "<IIQ"
)  # type 4 as a little-endian word (its 3 reserved bytes zero), receiver, counter
_NONCE = struct.Struct("<4xQ")  # 32 zero bits, then the counter (paper, section 5.4.6)
_ZEROS = bytes(PADDING)


class DataCipher:
    """One direction of a keypair's transport encryption."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)

    def seal(self, receiver_index: int, counter: int, packet: bytes, mtu: int) -> bytes:
        n = len(packet)
        padding = -n % PADDING
        if n + padding > mtu:  # past the MTU, or MTU unknown: the whole rule
            padding = padding_length(n, mtu)
        body = packet + _ZEROS[:padding] if padding else packet
        return _HEADER.pack(TRANSPORT, receiver_index, counter) + self._aead.encrypt(
            _NONCE.pack(counter), body, None
        )

    def open(self, counter: int, datagram: bytes) -> bytes:
        """The padded plaintext of a whole transport datagram; raises `InvalidTag`."""
        return self._aead.decrypt(_NONCE.pack(counter), datagram[16:], None)


def open_(receive_key: bytes, msg: Transport) -> bytes:
    """The padded plaintext; raises `cryptography.exceptions.InvalidTag` if not authentic."""
    return aead_decrypt(receive_key, msg.counter, msg.encrypted, b"")
