"""Transport data (WireGuard paper, sections 5.4.6 and 6), sans-IO: counters,
padding, and the sliding replay window.

The window follows RFC 6479's idea: a bitmap of the last `WINDOW` counters
below the highest one accepted. A counter is first *checked* (cheap, before
decryption) and only *accepted* after the packet authenticated, so forged
packets cannot move the window.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from harness.impl.pyref.crypto import aead_decrypt, aead_encrypt
from harness.impl.pyref.messages import TRANSPORT, Transport

# Paper, section 6.1 (constants).
REKEY_AFTER_MESSAGES = 2**60
REJECT_AFTER_MESSAGES = 2**64 - 2**13 - 1
REKEY_AFTER_TIME = 120.0
REJECT_AFTER_TIME = 180.0
REKEY_ATTEMPT_TIME = 90.0
REKEY_TIMEOUT = 5.0
KEEPALIVE_TIMEOUT = 10.0

WINDOW = 2048
PADDING = 16
"""MESSAGE_PADDING_MULTIPLE (the kernel's messages.h), PaddingMultiple (wireguard-go's device/constants.go)."""
DEFAULT_MTU = 1420
"""An interface's MTU until it says otherwise: wireguard-go's DefaultMTU (device/tun.go), and the
kernel's default for a new device (device.c: ETH_DATA_LEN less the IPv6, UDP and WireGuard overhead)."""
MAX_MTU = 65535 - 32
"""The largest MTU used: wireguard-go's MaxContentSize (device/constants.go, a 65535-byte message
less the 32 bytes of header and tag); it caps a larger interface MTU to this (device/tun.go)."""


@dataclass
class ReplayWindow:
    top: int = -1
    """Highest counter accepted so far (-1: none)."""
    _bits: int = field(default=0, repr=False)
    """Bit i set: counter top - i was accepted."""

    def check(self, counter: int) -> bool:
        """Could ``counter`` be new? (Does not change the window.)"""
        if counter >= REJECT_AFTER_MESSAGES or counter < 0:
            return False
        if counter > self.top:
            return True
        offset = self.top - counter
        return offset < WINDOW and not (self._bits >> offset) & 1

    def accept(self, counter: int) -> bool:
        """Record an authenticated ``counter``; False if it is a replay or too old."""
        if not self.check(counter):
            return False
        if counter > self.top:
            shift = counter - self.top
            self._bits = ((self._bits << shift) | 1) & ((1 << WINDOW) - 1) if shift < WINDOW else 1
            self.top = counter
        else:
            self._bits |= 1 << (self.top - counter)
        return True


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
# slice of zeros. Same bytes on the wire (tests/test_pyref_transport.py checks).
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
        padding = padding_length(len(packet), mtu)
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
