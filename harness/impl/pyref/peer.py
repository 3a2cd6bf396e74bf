"""One peer's session, sans-IO: handshakes, keypairs and timers.

Everything comes in with the time (`now`, seconds on any monotonic clock);
datagrams to send to the peer and packets to deliver come out; `deadline()`
says when `tick(now)` must be called next. Randomness (ephemeral keys,
indices, jitter) comes from the injected ``random`` function.

Rules (WireGuard paper, section 6):
- The initiator uses its new keypair as soon as the response arrives; the
  responder keeps its new keypair as *next* until the first transport packet
  under it arrives (key confirmation), then it becomes *current* and the old
  current becomes *previous*.
- A keypair sends at most REJECT_AFTER_MESSAGES and lives REJECT_AFTER_TIME;
  the initiator starts a new handshake after REKEY_AFTER_TIME or
  REKEY_AFTER_MESSAGES.
- A lost initiation is sent again after REKEY_TIMEOUT plus jitter, for at most
  REKEY_ATTEMPT_TIME; then the queued packets are dropped.
- Having received data and sent nothing for KEEPALIVE_TIMEOUT, send a keepalive;
  persistent keepalive sends one every N seconds regardless.
- All keys are zeroed after 3 x REJECT_AFTER_TIME without a new handshake.
- A cookie reply to the last handshake message sent gives a cookie; while it
  is fresh, every handshake message sent carries mac2 (paper, section 5.4.7).
  As in the kernel and wireguard-go, a cookie reply sends nothing at once:
  the next retry (REKEY_TIMEOUT) goes out with mac2.

Given ``on_secrets``, the peer hands it the `HandshakeSecrets` of every
handshake message it makes (each initiation, retries included, and each
response), so a capture of the link can be decrypted (`keylog`).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag

from harness.impl.pyref.cookie import CookieError, LatestCookie
from harness.impl.pyref.crypto import public_of
from harness.impl.pyref.keylog import HandshakeSecrets
from harness.impl.pyref.messages import (
    COOKIE_REPLY,
    INITIATION,
    RESPONSE,
    TRANSPORT,
    MessageError,
    parse_cookie_reply,
    parse_initiation,
    parse_response,
    parse_transport,
)
from harness.impl.pyref.noise import (
    ConsumedInitiation,
    HandshakeError,
    InitiatorState,
    Keypair,
    consume_initiation,
    consume_response,
    create_initiation,
    create_response,
)
from harness.impl.pyref.transport import (
    DEFAULT_MTU,
    KEEPALIVE_TIMEOUT,
    REJECT_AFTER_MESSAGES,
    REJECT_AFTER_TIME,
    REKEY_AFTER_MESSAGES,
    REKEY_AFTER_TIME,
    REKEY_ATTEMPT_TIME,
    REKEY_TIMEOUT,
    DataCipher,
    ReplayWindow,
)

MAX_QUEUED = 128


@dataclass
class Session:
    """A keypair in use, with its send counter and replay window."""

    keys: Keypair
    created: float
    initiator: bool
    send_counter: int = 0
    window: ReplayWindow = field(default_factory=ReplayWindow)

    # Made on first use: a responder under a handshake flood makes many sessions that never carry data.
    @functools.cached_property
    def sender(self) -> DataCipher:
        return DataCipher(self.keys.send_key)

    @functools.cached_property
    def opener(self) -> DataCipher:
        return DataCipher(self.keys.receive_key)

    def can_send(self, now: float) -> bool:
        return self.send_counter < REJECT_AFTER_MESSAGES and now - self.created < REJECT_AFTER_TIME


@dataclass
class Counters:
    """What the peer dropped and why: malformed or unauthenticated input is counted, never raised."""

    malformed: int = 0
    unauthenticated: int = 0
    replayed: int = 0
    no_session: int = 0
    queue_dropped: int = 0
    cookies_received: int = 0
    unusable_key: int = 0
    """Handshakes not started because the peer's public key is a low-order point."""

    def rejected(self) -> int:
        """Input refused so far (queue drops are not input)."""
        return self.malformed + self.unauthenticated + self.replayed + self.no_session


class Peer:
    def __init__(
        self,
        static_private: bytes,
        peer_public: bytes,
        random: Callable[[int], bytes],
        *,
        psk: bytes = bytes(32),
        persistent_keepalive: float | None = None,
        mtu: int = DEFAULT_MTU,
        on_secrets: Callable[[HandshakeSecrets], None] | None = None,
    ) -> None:
        self.static_private = static_private
        self.static_public = public_of(static_private)
        self.peer_public = peer_public
        self.random = random
        self.psk = psk
        self.persistent_keepalive = persistent_keepalive
        self.mtu = mtu
        self.on_secrets = on_secrets
        """Called with the secrets of every handshake message this peer makes (None: not recorded)."""
        self.wall_offset = 0.0
        """Unix time minus the ``now`` clock: initiation timestamps are wall-clock (set by the device)."""
        self.current: Session | None = None
        self.previous: Session | None = None
        self.next: Session | None = None
        self.counters = Counters()
        self.queue: list[bytes] = []
        self._pending: InitiatorState | None = None
        self._attempt_started: float | None = None
        self._retry_at: float | None = None
        self._last_handshake: float | None = None
        self._last_sent: float | None = None
        self._last_received_data: float | None = None
        self._keepalive_due: float | None = None
        self._last_timestamp = b""
        self._cookie = LatestCookie(peer_public)
        self.handshake_completed: float | None = None
        """When the last handshake completed (initiator: response consumed; responder:
        key confirmed), as wireguard-go's timersHandshakeComplete; never cleared."""
        self._keepalive_now: float | None = None  # a keepalive asked for by `set_persistent_keepalive`
        self._new_handshake_at: float | None = None
        """Data was sent and nothing authenticated has come back since: a new handshake at
        this time (KEEPALIVE_TIMEOUT + REKEY_TIMEOUT after that first unanswered send)."""

    # -- helpers -------------------------------------------------------------
    def _index(self) -> int:
        return int(struct.unpack("<I", self.random(4))[0])

    def _jitter(self) -> float:
        return int(struct.unpack("<H", self.random(2))[0]) % 334 / 1000.0  # up to 1/3 s

    def _record(self, ephemeral_private: bytes, initiator: bool) -> None:
        if self.on_secrets is not None:
            keys = (self.static_private, self.peer_public, ephemeral_private, self.psk)
            self.on_secrets(HandshakeSecrets(*keys, initiator=initiator))

    def _initiate(self, now: float) -> list[bytes]:
        ephemeral = self.random(32)
        try:
            msg, pending = create_initiation(
                self.static_private, self.peer_public, ephemeral, self._index(), now + self.wall_offset
            )
        except ValueError:
            # A low-order public key: every Diffie-Hellman with it is all zeros. Nothing is
            # ever sent to such a peer (the kernel and wireguard-go refuse it the same way).
            self.counters.unusable_key += 1
            return []
        self._record(ephemeral, initiator=True)
        if self._attempt_started is None:
            self._attempt_started = now
        self._pending = pending
        self._retry_at = now + REKEY_TIMEOUT + self._jitter()
        self._last_sent = now
        return [self._cookie.stamp(msg.encode(), now)]

    def _sendable(self, now: float) -> Session | None:
        s = self.current
        return s if s is not None and s.can_send(now) else None

    def _seal(self, s: Session, packet: bytes, now: float) -> bytes:
        wire = s.sender.seal(s.keys.remote_index, s.send_counter, packet, self.mtu)
        s.send_counter += 1
        self._last_sent = now
        self._keepalive_due = None
        if packet and self._new_handshake_at is None:
            # Data (not a keepalive) sent: if nothing authenticated comes back, a new handshake
            # in 15 s and up to 1/3 s (the kernel's timers.c, wg_timers_data_sent; wireguard-go's
            # timers.go, timersDataSent).
            self._new_handshake_at = now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + self._jitter()
        return wire

    def _authenticated(self) -> None:
        """Any authenticated packet from the peer (a handshake message or transport data,
        keepalives too): it hears us, so no new handshake is due (timers.c,
        wg_timers_any_authenticated_packet_received; timers.go, timersAnyAuthenticatedPacketReceived)."""
        self._new_handshake_at = None

    def _flush(self, now: float) -> list[bytes]:
        s = self._sendable(now)
        if s is None:
            return []
        out = [self._seal(s, p, now) for p in self.queue]
        self.queue.clear()
        return out

    def _install(self, session: Session, now: float) -> None:
        self._last_handshake = now
        self._pending = None
        self._attempt_started = self._retry_at = None
        if session.initiator:
            self.previous, self.current, self.next = self.current, session, None
            self.handshake_completed = now
        else:
            self.next = session

    # -- API -----------------------------------------------------------------
    def send(self, packet: bytes, now: float) -> list[bytes]:
        """Datagrams for ``packet``: sealed now, or queued behind a handshake."""
        s = self._sendable(now)
        out: list[bytes] = []
        if s is not None:
            out.append(self._seal(s, packet, now))
            needs_rekey = s.initiator and (
                now - s.created >= REKEY_AFTER_TIME or s.send_counter >= REKEY_AFTER_MESSAGES
            )
            if needs_rekey and self._pending is None:
                out += self._initiate(now)
            return out
        if len(self.queue) >= MAX_QUEUED:
            self.queue.pop(0)
            self.counters.queue_dropped += 1
        self.queue.append(packet)
        if self._pending is None:
            out += self._initiate(now)
        return out

    def receive(self, datagram: bytes, now: float) -> tuple[list[bytes], list[bytes]]:
        """(datagrams to send, packets to deliver) for one datagram from the peer."""
        try:
            kind = datagram[0] if datagram else 0
            if kind == INITIATION:
                return self._on_initiation(datagram, now), []
            if kind == RESPONSE:
                return self._on_response(datagram, now), []
            if kind == TRANSPORT:
                return self._on_transport(datagram, now)
            if kind == COOKIE_REPLY:
                self._on_cookie_reply(datagram, now)
                return [], []
            self.counters.malformed += 1
        except MessageError:
            self.counters.malformed += 1
        except (HandshakeError, InvalidTag, CookieError):
            self.counters.unauthenticated += 1
        return [], []

    def _on_initiation(self, datagram: bytes, now: float) -> list[bytes]:
        return self.accept_initiation(
            consume_initiation(self.static_private, parse_initiation(datagram)), now
        )

    def accept_initiation(self, seen: ConsumedInitiation, now: float) -> list[bytes]:
        """Answer an initiation already verified (by a device that had to decrypt it to find us)."""
        if seen.peer_public != self.peer_public:
            raise HandshakeError("initiation from another peer")
        if seen.timestamp <= self._last_timestamp:  # TAI64N must grow: a replayed initiation
            self.counters.replayed += 1
            return []
        self._last_timestamp = seen.timestamp
        ephemeral = self.random(32)
        resp, keys = create_response(seen, ephemeral, self._index(), self.psk)
        self._record(ephemeral, initiator=False)
        self._authenticated()
        self._install(Session(keys, now, initiator=False), now)
        self._last_sent = now
        return [self._cookie.stamp(resp.encode(), now)]

    def _on_response(self, datagram: bytes, now: float) -> list[bytes]:
        if self._pending is None:
            raise HandshakeError("response without a handshake in progress")
        keys = consume_response(
            self._pending, self.static_private, self.peer_public, parse_response(datagram), self.psk
        )
        self._authenticated()
        self._install(Session(keys, now, initiator=True), now)
        out = self._flush(now)
        if not out:  # confirm the session to the responder at once
            s = self._sendable(now)
            out = [self._seal(s, b"", now)] if s else []
        return out

    def _on_cookie_reply(self, datagram: bytes, now: float) -> None:
        reply = parse_cookie_reply(datagram)
        if reply.receiver not in self.local_indices():  # the kernel looks it up among handshakes and keypairs
            self.counters.no_session += 1
            return
        self._cookie.consume(reply, now)
        self.counters.cookies_received += 1

    def _on_transport(self, datagram: bytes, now: float) -> tuple[list[bytes], list[bytes]]:
        msg = parse_transport(datagram)
        out, packet, _ = self.receive_transport(msg.receiver, msg.counter, datagram, now)
        return out, [packet] if packet is not None else []

    def receive_transport(
        self, receiver: int, counter: int, datagram: bytes, now: float
    ) -> tuple[list[bytes], bytes | None, bool]:
        """One transport datagram already framed by the caller (type and length
        checked, ``receiver`` and ``counter`` read from its header): (datagrams to
        send, the packet inside or None, whether it authenticated)."""
        for s in (self.current, self.next, self.previous):
            if s is not None and s.keys.local_index == receiver:
                break
        else:
            self.counters.no_session += 1
            return [], None, False
        window = s.window
        if not window.check(counter) or now - s.created >= REJECT_AFTER_TIME:
            self.counters.replayed += 1
            return [], None, False
        try:
            plain = s.opener.open(counter, datagram)
        except InvalidTag:
            self.counters.unauthenticated += 1
            return [], None, False
        window.accept(counter)
        self._authenticated()
        out: list[bytes] = []
        if s is self.next:  # key confirmation: the responder's new keypair becomes current
            self.previous, self.current, self.next = self.current, s, None
            self.handshake_completed = now
            out = self._flush(now)
        if plain:
            self._last_received_data = now
            if self._keepalive_due is None:
                self._keepalive_due = now + KEEPALIVE_TIMEOUT
            return out, _strip_padding(plain), True
        return out, None, True

    def set_static_private(self, static_private: bytes) -> None:
        """The device's key changed: handshakes start over under the new key; the
        current sessions may still receive but send no more (wireguard-go's
        SetPrivateKey then ExpireCurrentKeypairs)."""
        self.static_private = static_private
        self.static_public = public_of(static_private)
        self._pending = None
        self._attempt_started = self._retry_at = None
        for s in (self.current, self.next):
            if s is not None:
                s.send_counter = REJECT_AFTER_MESSAGES

    def set_persistent_keepalive(self, interval: float | None, now: float) -> None:
        """Change the persistent keepalive; turning it on sends a keepalive at the
        next `tick` (starting a handshake if need be), as wireguard-go does."""
        if interval and not self.persistent_keepalive:
            self._keepalive_now = now
        elif not interval:
            self._keepalive_now = None  # turned off again before it was sent
        self.persistent_keepalive = interval or None

    def local_indices(self) -> set[int]:
        """The indices peers put in messages meant for this peer's sessions."""
        out = {s.keys.local_index for s in (self.current, self.previous, self.next) if s is not None}
        if self._pending is not None:
            out.add(self._pending.local_index)
        return out

    def deadline(self) -> float | None:
        """When `tick` must next be called (None: nothing pending)."""
        times = [
            t
            for t in (self._retry_at, self._keepalive_due, self._keepalive_now, self._new_handshake_at)
            if t is not None
        ]
        if self.persistent_keepalive and self._last_sent is not None and self.current is not None:
            times.append(self._last_sent + self.persistent_keepalive)
        if self._last_handshake is not None and any((self.current, self.previous, self.next)):
            times.append(self._last_handshake + 3 * REJECT_AFTER_TIME)
        return min(times) if times else None

    def tick(self, now: float) -> list[bytes]:
        """Act on every timer that is due; datagrams to send."""
        out: list[bytes] = []
        if self._last_handshake is not None and now - self._last_handshake >= 3 * REJECT_AFTER_TIME:
            self.current = self.previous = self.next = None  # zero every key
            self._last_handshake = None
        if self._retry_at is not None and now >= self._retry_at:
            if self._attempt_started is not None and now - self._attempt_started >= REKEY_ATTEMPT_TIME:
                self.counters.queue_dropped += len(self.queue)
                self.queue.clear()
                self._pending = None
                self._attempt_started = self._retry_at = None
            else:
                out += self._initiate(now)
        if self._new_handshake_at is not None and now >= self._new_handshake_at:
            # The peer stopped answering: start over with a fresh handshake, unless one is
            # already under way (timers.c, wg_expired_new_handshake; timers.go, expiredNewHandshake).
            self._new_handshake_at = None
            if self._pending is None:
                out += self._initiate(now)
        if self._keepalive_now is not None and now >= self._keepalive_now:
            self._keepalive_now = None
            out += self.send(b"", now)  # queued behind a handshake if there is no session
        s = self._sendable(now)
        if self._keepalive_due is not None and now >= self._keepalive_due:
            self._keepalive_due = None
            if s is not None:  # sending anything clears the due keepalive, so nothing was sent since
                out.append(self._seal(s, b"", now))
        if (
            self.persistent_keepalive
            and s is not None
            and self._last_sent is not None
            and now - self._last_sent >= self.persistent_keepalive
        ):
            out.append(self._seal(s, b"", now))
        return out


def _strip_padding(plain: bytes) -> bytes:
    """The packet inside: IPv4/IPv6 carry their length; anything else stays as sent."""
    if plain and plain[0] >> 4 == 4 and len(plain) >= 20:
        return plain[: struct.unpack_from("!H", plain, 2)[0]]
    if plain and plain[0] >> 4 == 6 and len(plain) >= 40:
        return plain[: 40 + struct.unpack_from("!H", plain, 4)[0]]
    return plain
