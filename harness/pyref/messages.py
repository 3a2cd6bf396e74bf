"""WireGuard message layouts (WireGuard paper, section 5.4; all integers
little-endian). Pure codecs: `parse_*` raise `MessageError` on anything that
is not exactly the message, `*.encode()` gives the bytes."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from harness.pyref.crypto import KEY_LEN, TAG_LEN

INITIATION, RESPONSE, COOKIE_REPLY, TRANSPORT = 1, 2, 3, 4
INITIATION_LEN = 148
RESPONSE_LEN = 92
COOKIE_REPLY_LEN = 64
TRANSPORT_HEADER_LEN = 16


class MessageError(ValueError):
    """Not a well-formed WireGuard message (the peer misbehaved or the data is not ours)."""


def _header(data: bytes, kind: int, length: int | None) -> None:
    if length is not None and len(data) != length:
        raise MessageError(f"message type {kind}: {len(data)} bytes, expected {length}")
    if len(data) < 4 or data[0] != kind or data[1:4] != b"\x00\x00\x00":
        raise MessageError(f"not a message of type {kind}")


@dataclass(frozen=True)
class Initiation:
    sender: int
    ephemeral: bytes
    encrypted_static: bytes
    encrypted_timestamp: bytes
    mac1: bytes = bytes(16)
    mac2: bytes = bytes(16)

    def body(self) -> bytes:
        """Everything before mac1 (what mac1 covers)."""
        return (
            struct.pack("<B3xI", INITIATION, self.sender)
            + self.ephemeral
            + self.encrypted_static
            + self.encrypted_timestamp
        )

    def encode(self) -> bytes:
        return self.body() + self.mac1 + self.mac2


def parse_initiation(data: bytes) -> Initiation:
    _header(data, INITIATION, INITIATION_LEN)
    (sender,) = struct.unpack_from("<I", data, 4)
    o = 8
    eph = data[o : o + KEY_LEN]
    o += KEY_LEN
    static = data[o : o + KEY_LEN + TAG_LEN]
    o += KEY_LEN + TAG_LEN
    ts = data[o : o + 12 + TAG_LEN]
    o += 12 + TAG_LEN
    return Initiation(sender, eph, static, ts, data[o : o + 16], data[o + 16 : o + 32])


@dataclass(frozen=True)
class Response:
    sender: int
    receiver: int
    ephemeral: bytes
    encrypted_nothing: bytes
    mac1: bytes = bytes(16)
    mac2: bytes = bytes(16)

    def body(self) -> bytes:
        return (
            struct.pack("<B3xII", RESPONSE, self.sender, self.receiver)
            + self.ephemeral
            + self.encrypted_nothing
        )

    def encode(self) -> bytes:
        return self.body() + self.mac1 + self.mac2


def parse_response(data: bytes) -> Response:
    _header(data, RESPONSE, RESPONSE_LEN)
    sender, receiver = struct.unpack_from("<II", data, 4)
    return Response(sender, receiver, data[12:44], data[44:60], data[60:76], data[76:92])


@dataclass(frozen=True)
class Transport:
    receiver: int
    counter: int
    encrypted: bytes

    def encode(self) -> bytes:
        return struct.pack("<B3xIQ", TRANSPORT, self.receiver, self.counter) + self.encrypted


def parse_transport(data: bytes) -> Transport:
    _header(data, TRANSPORT, None)
    if len(data) < TRANSPORT_HEADER_LEN + TAG_LEN:
        raise MessageError(f"transport message of {len(data)} bytes is shorter than header and tag")
    receiver, counter = struct.unpack_from("<IQ", data, 4)
    return Transport(receiver, counter, data[TRANSPORT_HEADER_LEN:])


@dataclass(frozen=True)
class CookieReply:
    receiver: int
    nonce: bytes
    encrypted_cookie: bytes

    def encode(self) -> bytes:
        return struct.pack("<B3xI", COOKIE_REPLY, self.receiver) + self.nonce + self.encrypted_cookie


def parse_cookie_reply(data: bytes) -> CookieReply:
    _header(data, COOKIE_REPLY, COOKIE_REPLY_LEN)
    (receiver,) = struct.unpack_from("<I", data, 4)
    return CookieReply(receiver, data[8:32], data[32:64])
