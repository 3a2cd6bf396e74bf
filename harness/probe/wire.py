"""The prober's thin I/O over UDP and the sessions it keeps, shared by the probe
families: sockets, bounded receives, a session whose counters the prober
chooses (`Tunnel`), the responder's side of a handshake the device under test
(DUT) starts (`answer_initiation`), and the progress lines (`announce`) a
harness waits for while a prober runs in the background.

Every wait here has a deadline; traffic goes only to the address the caller
names.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag

from harness.probe import JobError
from harness.probe.core import Common
from harness.pyref.ipv4 import echo_request, parse_echo_reply
from harness.pyref.messages import (
    INITIATION,
    INITIATION_LEN,
    RESPONSE,
    TRANSPORT,
    TRANSPORT_HEADER_LEN,
    MessageError,
    parse_initiation,
    parse_response,
)
from harness.pyref.noise import (
    HandshakeError,
    Keypair,
    consume_initiation,
    consume_response,
    create_initiation,
    create_response,
)
from harness.pyref.transport import DataCipher

Endpoint = tuple[str, int]
MTU = 1420
RECEIVE_BUFFER = 1 << 22
"""Bytes of socket receive buffer asked for: room for thousands of replies at once."""


# -- sockets ---------------------------------------------------------------------
def open_socket(target: Endpoint) -> socket.socket:
    """A UDP socket on an ephemeral port, of ``target``'s address family."""
    family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
    return sock


def listening_socket(port: int, address: str = "0.0.0.0") -> socket.socket:
    """A UDP socket bound to ``address``:``port`` (where the DUT is told to send)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind((address, port))
    except OSError:
        sock.close()
        raise
    return sock


def from_target(source: tuple[object, ...], target: Endpoint) -> bool:
    return str(source[0]).removeprefix("::ffff:") == target[0] and source[1] == target[1]


def from_host(source: tuple[object, ...], target: Endpoint) -> bool:
    """From ``target``'s address, whatever its port (a DUT sends from its listen port,
    which a prober bound elsewhere need not know)."""
    return str(source[0]).removeprefix("::ffff:") == target[0]


def receive(
    socks: Iterable[socket.socket], target: Endpoint | None, deadline: float, *, any_port: bool = False
) -> tuple[socket.socket, bytes, tuple[object, ...]] | None:
    """The next datagram on any of ``socks`` (from ``target`` if given; from its
    address only if ``any_port``) before the monotonic ``deadline``; None when the
    deadline passes."""
    socks = list(socks)
    accept = from_host if any_port else from_target
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select(socks, [], [], left)
        for sock in ready:
            data, source = sock.recvfrom(65535)
            if target is None or accept(source, target):
                return sock, data, source


def announce(event: str, **fields: object) -> None:
    """One progress line on stdout, flushed at once: ``{"event": NAME, ...}``. A
    harness running the prober in the background waits for it; the result is
    still the last line."""
    print(json.dumps({"event": event, **fields}), flush=True)


# -- a session whose counters the prober chooses ---------------------------------
def is_keepalive(plain: bytes) -> bool:
    """A transport packet's padded plaintext carries nothing (an empty packet pads to zero bytes)."""
    return len(plain) == 0


@dataclass
class Tunnel:
    """The prober's end of one handshake: sealing with any counter, opening replies."""

    keys: Keypair
    next_counter: int = 0
    ident: int = field(default_factory=lambda: int.from_bytes(os.urandom(2), "little"))
    """The ICMP echo identifier of this run."""

    def __post_init__(self) -> None:
        self._sender = DataCipher(self.keys.send_key)
        self._opener = DataCipher(self.keys.receive_key)

    def seal(self, packet: bytes, counter: int | None = None) -> bytes:
        """``packet`` sealed with ``counter`` (default: the next unused one)."""
        if counter is None:
            counter = self.next_counter
        self.next_counter = max(self.next_counter, counter + 1)
        return self._sender.seal(self.keys.remote_index, counter, packet, MTU)

    def keepalive(self) -> bytes:
        """An authenticated empty packet under the next counter."""
        return self.seal(b"")

    def open(self, datagram: bytes) -> bytes | None:
        """The padded plaintext of a transport datagram for this session, else None."""
        if len(datagram) < TRANSPORT_HEADER_LEN + 16 or datagram[0] != TRANSPORT:
            return None
        receiver, counter = struct.unpack_from("<IQ", datagram, 4)
        if receiver != self.keys.local_index:
            return None
        try:
            return self._opener.open(counter, datagram)
        except InvalidTag:
            return None

    def echo(self, src: str, dst: str, seq: int, counter: int | None = None) -> bytes:
        return self.seal(echo_request(src, dst, self.ident, seq), counter)

    def echo_seq(self, datagram: bytes, src: str, dst: str) -> int | None:
        """The sequence number of our echo reply (from ``dst`` to ``src``) inside, else None."""
        plain = self.open(datagram)
        reply = parse_echo_reply(plain) if plain else None
        if reply is None or reply[:3] != (dst, src, self.ident):
            return None
        return reply[3]


def sender_index() -> int:
    return int.from_bytes(os.urandom(4), "little")


# -- the responder's side, for handshakes the DUT starts ----------------------------
@dataclass(frozen=True)
class Answered:
    """An initiation from the DUT, answered."""

    response: bytes
    """The response to send back."""
    tunnel: Tunnel
    """The session it makes (the DUT may use it at once: it is the initiator)."""
    timestamp: bytes
    """The initiation's TAI64N timestamp."""


def is_initiation(datagram: bytes) -> bool:
    return len(datagram) == INITIATION_LEN and datagram[0] == INITIATION


def answer_initiation(
    private: bytes, dut_public: bytes, datagram: bytes, last_timestamp: bytes = b""
) -> Answered | None:
    """The response to an initiation from the DUT (its MAC1 checked, its static key
    ``dut_public``, its timestamp later than ``last_timestamp``), else None."""
    if not is_initiation(datagram):
        return None
    try:
        seen = consume_initiation(private, parse_initiation(datagram))
    except (MessageError, HandshakeError):
        return None
    if seen.peer_public != dut_public or seen.timestamp <= last_timestamp:
        return None
    msg, keys = create_response(seen, os.urandom(32), sender_index())
    return Answered(msg.encode(), Tunnel(keys), seen.timestamp)


# -- the initiator's side ----------------------------------------------------------
def initiation(private: bytes, responder: bytes) -> tuple[bytes, Callable[[bytes], Keypair]]:
    """A fresh initiation, and what turns the response to it into keys
    (raising `MessageError` or `HandshakeError` for anything else)."""
    msg, state = create_initiation(private, responder, os.urandom(32), sender_index(), time.time())

    def finish(data: bytes) -> Keypair:
        return consume_response(state, private, responder, parse_response(data))

    return msg.encode(), finish


def await_response(
    sock: socket.socket, target: Endpoint, finish: Callable[[bytes], Keypair], deadline: float
) -> Keypair | None:
    """The keys from the first valid response from ``target`` before ``deadline``."""
    while (got := receive([sock], target, deadline)) is not None:
        if got[1][:1] == bytes([RESPONSE]):
            try:
                return finish(got[1])
            except (MessageError, HandshakeError):
                continue
    return None


def handshake(sock: socket.socket, c: Common, private: bytes) -> Tunnel | None:
    """Handshake as initiator and confirm with a keepalive (counter 0)."""
    wire, finish = initiation(private, c.responder_public)
    sock.sendto(wire, c.target)
    keys = await_response(sock, c.target, finish, time.monotonic() + c.timeout)
    if keys is None:
        return None
    tunnel = Tunnel(keys)
    sock.sendto(tunnel.seal(b""), c.target)
    return tunnel


def no_handshake(mode: str) -> JobError:
    return JobError(f"{mode}: the DUT did not answer the handshake (is the identity its peer?)")
