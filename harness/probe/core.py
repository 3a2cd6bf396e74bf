"""The prober's sans-IO part: the common job fields, initiations built for many
identities, and the replies that come back, judged. No socket and no clock:
the caller passes the time and the bytes.

Rules kept here, for every responder:
- a responder refuses an initiation whose TAI64N timestamp is not later than the
  last it accepted from that peer, so `Initiator` makes every identity's
  timestamps strictly increase, whatever times the caller passes;
- sender indices are unique among the initiations one `Initiator` makes, so a
  reply (response or cookie reply, both addressed to the initiation's sender
  index) names the initiation it answers.
What the caller must still respect (wireguard-go ignores an initiation from a
peer within 20 ms of the last one it consumed) is in the modes that send.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from harness.keys import decode_key
from harness.probe import Job, JobError
from harness.pyref.cookie import CookieError, mac2_of, open_cookie_reply
from harness.pyref.crypto import mac, public_of, tai64n
from harness.pyref.messages import (
    COOKIE_REPLY,
    RESPONSE,
    MessageError,
    parse_cookie_reply,
    parse_response,
)
from harness.pyref.noise import (
    HandshakeError,
    InitiatorState,
    Keypair,
    consume_response,
    create_initiation,
    mac1_key,
)

__all__ = [
    "Common",
    "Initiator",
    "ReplyError",
    "Sent",
    "address_field",
    "check_response",
    "common_fields",
    "flag",
    "inner_fields",
    "number",
    "open_cookie",
    "reply_kind",
    "response_mac1_ok",
    "with_mac2",
]

MAX_TIMEOUT = 60.0
"""The longest a job may wait for one answer (seconds)."""


# -- job fields --------------------------------------------------------------
@dataclass(frozen=True)
class Common:
    """The fields every job has (`harness/probe/__main__.py`)."""

    target: tuple[str, int]
    """The device under test's UDP address and port."""
    responder_public: bytes = field(repr=False)
    """Its static public key."""
    identities: tuple[bytes, ...] = field(repr=False)
    """The prober's private keys, each a peer of the device under test."""
    bind: str | None
    """The local address to send from (None: the system chooses)."""
    timeout: float
    """Seconds to wait for an answer."""


def number(
    job: Job,
    name: str,
    default: float | None = None,
    *,
    minimum: float,
    maximum: float,
    integer: bool = False,
) -> float:
    """``job[name]`` as a number within [minimum, maximum] (an int if ``integer``);
    `JobError` naming the field otherwise. Missing: ``default``, or an error if None."""
    value = job.get(name, default)
    if value is None:
        raise JobError(f"{name}: missing")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise JobError(f"{name}: expected a number, got {value!r}")
    if integer and value != int(value):
        raise JobError(f"{name}: expected a whole number, got {value!r}")
    if not minimum <= value <= maximum:
        raise JobError(f"{name}: {value!r} is outside [{minimum}, {maximum}]")
    return int(value) if integer else float(value)


def address_field(value: object, name: str) -> str:
    """``value`` as an IPv4 address; `JobError` naming ``name`` otherwise."""
    try:
        if not isinstance(value, str):
            raise ValueError
        return str(IPv4Address(value))
    except ValueError:
        raise JobError(f"{name}: expected an IPv4 address, got {value!r}") from None


def inner_fields(job: Job) -> tuple[str, str]:
    """``inner`` {"src", "dst"}: the first identity's allowed IP and the DUT's tunnel address."""
    value = job.get("inner")
    if not isinstance(value, dict):
        raise JobError('inner: expected {"src": address, "dst": address}')
    return address_field(value.get("src"), "inner.src"), address_field(value.get("dst"), "inner.dst")


def flag(job: Job, name: str, default: bool) -> bool:
    """``job[name]`` as a boolean (``default`` when missing); `JobError` otherwise."""
    value = job.get(name, default)
    if not isinstance(value, bool):
        raise JobError(f"{name}: expected true or false, got {value!r}")
    return value


def _key(text: object, name: str) -> bytes:
    if not isinstance(text, str):
        raise JobError(f"{name}: expected a base64 key")
    try:
        return decode_key(text)
    except ValueError as exc:
        raise JobError(f"{name}: {exc}") from None


def common_fields(job: Job) -> Common:
    """The common fields of a job, checked; `JobError` naming the first bad one."""
    target = job.get("target")
    if (
        not isinstance(target, list | tuple)
        or len(target) != 2
        or not isinstance(target[0], str)
        or isinstance(target[1], bool)
        or not isinstance(target[1], int)
        or not 0 < target[1] < 65536
    ):
        raise JobError(f"target: expected [address, port], got {target!r}")
    identities = job.get("identities")
    if not isinstance(identities, list) or not identities:
        raise JobError("identities: expected a non-empty list of base64 private keys")
    bind = job.get("bind")
    if bind is not None and not isinstance(bind, str):
        raise JobError(f"bind: expected an address, got {bind!r}")
    return Common(
        target=(target[0], int(target[1])),
        responder_public=_key(job.get("responder_public"), "responder_public"),
        identities=tuple(_key(k, f"identities[{i}]") for i, k in enumerate(identities)),
        bind=bind,
        timeout=number(job, "timeout", 1.0, minimum=0.001, maximum=MAX_TIMEOUT),
    )


# -- initiations ---------------------------------------------------------------
@dataclass(frozen=True)
class Sent:
    """One initiation built by an `Initiator`, and what judging its reply needs."""

    identity: int
    """Which identity (its position in the job's list) sent it."""
    index: int
    """Its sender index: replies are addressed to it."""
    message: bytes
    """The initiation as sent (148 bytes)."""
    state: InitiatorState = field(repr=False)
    """The initiator's handshake state, to read the response."""
    timestamp: bytes
    """Its TAI64N timestamp."""

    @property
    def mac1(self) -> bytes:
        """What a cookie reply to it is bound to."""
        return self.message[-32:-16]


class Initiator:
    """Builds initiations from several identities to one responder. ``random``
    gives the ephemeral keys and the first sender index (os.urandom in real use)."""

    def __init__(
        self,
        identities: Sequence[bytes],
        responder_public: bytes,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if not identities:
            raise ValueError("Initiator: no identities")
        self.identities = tuple(identities)
        self.publics = tuple(public_of(k) for k in self.identities)
        self.responder_public = responder_public
        self._random = random
        (self._next_index,) = struct.unpack("<I", random(4))
        self._last_time = [float("-inf")] * len(self.identities)
        self._last_stamp = [b""] * len(self.identities)

    def initiation(self, identity: int, unix_time: float, *, cookie: bytes | None = None) -> Sent:
        """A fresh initiation from ``identity``, timestamped ``unix_time`` or, if that
        is not later than its last, a microsecond after its last; with a MAC2 made
        from ``cookie`` if one is given (zeros otherwise)."""
        t = max(unix_time, self._last_time[identity] + 1e-6)
        while tai64n(t) <= self._last_stamp[identity]:  # float rounding: make sure
            t += 1e-6
        self._last_time[identity], self._last_stamp[identity] = t, tai64n(t)
        index, self._next_index = self._next_index, (self._next_index + 1) & 0xFFFFFFFF
        msg, state = create_initiation(  # exact nanoseconds: this tester makes them grow by itself
            self.identities[identity], self.responder_public, self._random(32), index, t, whiten=False
        )
        data = msg.encode()
        if cookie is not None:
            data = with_mac2(data, cookie)
        return Sent(identity, index, data, state, self._last_stamp[identity])


def with_mac2(message: bytes, cookie: bytes) -> bytes:
    """A handshake message (with its mac1) with mac2 = MAC(cookie, everything before mac2)."""
    covered = message[:-16]
    return covered + mac2_of(cookie, covered)


# -- replies -----------------------------------------------------------------
class ReplyError(ValueError):
    """A reply that is not what it claims (bad MAC1, does not decrypt, malformed)."""


def reply_kind(data: bytes) -> tuple[int, int] | None:
    """(message type, receiver index) of a datagram that may answer an initiation
    (a response or a cookie reply, by type and length only), else None. Cheap:
    no cryptography."""
    if len(data) == 92 and data[:4] == b"\x02\x00\x00\x00":
        return RESPONSE, int.from_bytes(data[8:12], "little")
    if len(data) == 64 and data[:4] == b"\x03\x00\x00\x00":
        return COOKIE_REPLY, int.from_bytes(data[4:8], "little")
    return None


def check_response(initiator: Initiator, sent: Sent, data: bytes) -> Keypair:
    """The transport keys from a valid response to ``sent`` (MAC1 checked, the
    handshake read to the end); `ReplyError` otherwise."""
    try:
        return consume_response(
            sent.state, initiator.identities[sent.identity], initiator.responder_public, parse_response(data)
        )
    except (MessageError, HandshakeError) as exc:
        raise ReplyError(f"response: {exc}") from None


def response_mac1_ok(initiator: Initiator, sent: Sent, data: bytes) -> bool:
    """Whether a response's MAC1 is right for ``sent``'s identity: the cheap check
    (one keyed hash, no Diffie-Hellman) for counting responses at high rates."""
    return len(data) == 92 and mac(mac1_key(initiator.publics[sent.identity]), data[:60]) == data[60:76]


def open_cookie(initiator: Initiator, sent: Sent, data: bytes) -> bytes:
    """The cookie in a cookie reply to ``sent``; `ReplyError` if it is not one."""
    try:
        reply = parse_cookie_reply(data)
        if reply.receiver != sent.index:
            raise ReplyError("cookie reply: for another initiation")
        return open_cookie_reply(reply, initiator.responder_public, sent.mac1)
    except (MessageError, CookieError) as exc:
        raise ReplyError(f"cookie reply: {exc}") from None
