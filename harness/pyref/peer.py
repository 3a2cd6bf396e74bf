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

from harness.pyref.cookie import CookieError, LatestCookie
from harness.pyref.crypto import public_of, static_static
from harness.pyref.keylog import HandshakeSecrets
from harness.pyref.messages import (
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
from harness.pyref.noise import (
    ConsumedInitiation,
    HandshakeError,
    InitiatorState,
    Keypair,
    consume_initiation,
    consume_response,
    create_initiation,
    create_response,
)
from harness.pyref.transport import (
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

MAX_STAGED = 128
"""Packets queued behind a handshake; the oldest is dropped beyond this (messages.h
MAX_STAGED_PACKETS; send.c wg_xmit drops from the head)."""
MAX_TIMER_HANDSHAKES = int(REKEY_ATTEMPT_TIME / REKEY_TIMEOUT)
"""Retries of an unanswered initiation before giving up: 90 / REKEY_TIMEOUT = 18 (messages.h);
with the first initiation and the check that gives up, 20 initiations in all."""
INITIATION_MIN_INTERVAL = 1 / 50
"""Initiations consumed from one peer at most 50 a second (messages.h INITIATIONS_PER_SECOND;
wireguard-go HandshakeInitationRate, 20 ms)."""
ZERO_KEYS_AFTER = 3 * REJECT_AFTER_TIME
LASTMINUTE_REKEY = REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
"""The initiator's keypair age past which a received packet starts a handshake (165 s)."""


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
    flooded: int = 0
    """Initiations refused for arriving within 20 ms of the last one taken from this peer."""
    unusable_key: int = 0
    """Handshakes not started because the peer's public key is a low-order point."""
    not_ip: int = 0
    """Authenticated packets that are neither IPv4 nor IPv6, or shorter than the header
    of their version (the kernel's receive.c: dishonest_packet_type, rx_frame_errors)."""
    bad_length: int = 0
    """Authenticated IP packets whose header's length is shorter than the IPv4 header or
    longer than what arrived (receive.c: dishonest_packet_size, rx_length_errors)."""

    def rejected(self) -> int:
        """Input refused so far (queue drops are not input)."""
        inside = self.not_ip + self.bad_length  # authenticated, but nothing to deliver
        return self.malformed + self.unauthenticated + self.replayed + self.no_session + self.flooded + inside


class Peer:
    # slots: a device may hold 10,000s of peers (benchmarks/pyref_core.py measures the memory)
    __slots__ = (
        "static_private",
        "static_public",
        "peer_public",
        "random",
        "psk",
        "persistent_keepalive",
        "mtu",
        "on_secrets",
        "index_in_use",
        "wall_offset",
        "current",
        "previous",
        "next",
        "counters",
        "queue",
        "_pending",
        "_last_timestamp",
        "_last_initiation_consumed",
        "_last_sent_handshake",
        "_cookie",
        "handshake_completed",
        "_retransmit_at",
        "_send_keepalive_at",
        "_new_handshake_at",
        "_zero_keys_at",
        "_persistent_at",
        "_keepalive_now",
        "_handshake_attempts",
        "_need_another_keepalive",
        "_sent_lastminute_handshake",
    )

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
        index_in_use: Callable[[int], bool] | None = None,
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
        self.index_in_use = index_in_use
        """Whether a receiver index is taken on the device (None: only this peer's own are checked)."""
        self.wall_offset = 0.0
        """Unix time minus the ``now`` clock: initiation timestamps are wall-clock (set by the device)."""
        self.current: Session | None = None
        self.previous: Session | None = None
        self.next: Session | None = None
        self.counters = Counters()
        self.queue: list[bytes] = []
        """Packets staged behind a handshake (an empty one is a keepalive)."""
        self._pending: InitiatorState | None = None
        """The handshake in progress as initiator: one slot per peer, as upstream's, so consuming
        an initiation from the peer or zeroing the keys ends it."""
        self._last_timestamp = b""
        self._last_initiation_consumed: float | None = None
        self._last_sent_handshake: float | None = None
        """When an initiation or a response was last sent: none within REKEY_TIMEOUT of it."""
        self._cookie = LatestCookie(peer_public)
        self.handshake_completed: float | None = None
        """When the last handshake completed (initiator: response consumed; responder:
        key confirmed), as wireguard-go's timersHandshakeComplete; never cleared."""
        # The five timers of timers.c / timers.go, as deadlines (None: not pending).
        self._retransmit_at: float | None = None
        self._send_keepalive_at: float | None = None
        self._new_handshake_at: float | None = None
        self._zero_keys_at: float | None = None
        self._persistent_at: float | None = None
        self._keepalive_now: float | None = None  # a keepalive asked for by `set_persistent_keepalive`
        self._handshake_attempts = 0
        self._need_another_keepalive = False
        self._sent_lastminute_handshake = False

    # -- helpers -------------------------------------------------------------
    def _index(self) -> int:
        in_use = self.index_in_use
        while True:
            index = int.from_bytes(self.random(4), "little")
            if (in_use is None or not in_use(index)) and not self._holds(index):
                return index

    def _holds(self, index: int) -> bool:
        """Is ``index`` one of this peer's live receiver indices (`local_indices`, without a set)?"""
        for session in (self.current, self.previous, self.next):
            if session is not None and session.keys.local_index == index:
                return True
        return self._pending is not None and self._pending.local_index == index

    def _jitter(self) -> float:
        return int(struct.unpack("<H", self.random(2))[0]) % 334 / 1000.0  # up to 1/3 s

    def _record(self, ephemeral_private: bytes, initiator: bool) -> None:
        if self.on_secrets is not None:
            keys = (self.static_private, self.peer_public, ephemeral_private, self.psk)
            self.on_secrets(HandshakeSecrets(*keys, initiator=initiator))

    # The timer events of timers.c (wg_timers_*) and timers.go (timers*), by name.
    def _traversal(self, now: float) -> None:
        """Any authenticated packet sent or received: the persistent keepalive starts over."""
        if self.persistent_keepalive:
            self._persistent_at = now + self.persistent_keepalive

    def _any_received(self) -> None:
        """Any authenticated packet from the peer, keepalives too: it hears us."""
        self._new_handshake_at = None

    def _session_derived(self, now: float) -> None:
        self._zero_keys_at = now + ZERO_KEYS_AFTER

    def _handshake_complete(self, now: float) -> None:
        self._retransmit_at = None
        self._handshake_attempts = 0
        self._sent_lastminute_handshake = False
        self.handshake_completed = now

    def _send_initiation(self, now: float, is_retry: bool) -> list[bytes]:
        """send.c wg_packet_send_queued_handshake_initiation and its worker: a fresh
        initiation resets the attempt count; none within REKEY_TIMEOUT of the last
        handshake message sent, initiation or response."""
        if not is_retry:
            self._handshake_attempts = 0
        if self._last_sent_handshake is not None and now - self._last_sent_handshake < REKEY_TIMEOUT:
            return []
        self._last_sent_handshake = now
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
        self._pending = pending
        self._traversal(now)
        self._send_keepalive_at = None  # any authenticated packet sent
        self._retransmit_at = now + REKEY_TIMEOUT + self._jitter()
        return [self._cookie.stamp(msg.encode(), now)]

    def _sendable(self, now: float) -> Session | None:
        s = self.current
        return s if s is not None and s.can_send(now) else None

    def _seal_all(self, s: Session, packets: list[bytes], now: float) -> list[bytes]:
        """send.c encrypt_packet then wg_packet_create_data_done: the timers of a send, and
        keep_key_fresh (a new handshake for a keypair past REKEY_AFTER_MESSAGES, or the
        initiator's past REKEY_AFTER_TIME: keepalives count as sends)."""
        mtu, sender, index = self.mtu, s.sender, s.keys.remote_index
        out = []
        for packet in packets:
            out.append(sender.seal(index, s.send_counter, packet, mtu))
            s.send_counter += 1
        if self.persistent_keepalive:
            self._persistent_at = now + self.persistent_keepalive
        self._send_keepalive_at = None
        if self._new_handshake_at is None and any(packets):
            # data, not only keepalives: if nothing authenticated comes back, a new handshake
            # in 15 s and up to 1/3 s (wg_timers_data_sent)
            self._new_handshake_at = now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + self._jitter()
        if s.send_counter > REKEY_AFTER_MESSAGES or (s.initiator and now - s.created >= REKEY_AFTER_TIME):
            out += self._send_initiation(now, is_retry=False)
        return out

    def _send_staged(self, now: float) -> list[bytes]:
        """send.c wg_packet_send_staged_packets: the queue sealed under the current keypair,
        or, without a usable one, kept and a handshake started."""
        if not self.queue:
            return []
        s = self._sendable(now)
        if s is None:
            return self._send_initiation(now, is_retry=False)
        packets, self.queue = self.queue, []
        return self._seal_all(s, packets, now)

    def _stage(self, packet: bytes) -> None:
        if len(self.queue) >= MAX_STAGED:
            self.queue.pop(0)
            self.counters.queue_dropped += 1
        self.queue.append(packet)

    def _send_keepalive(self, now: float) -> list[bytes]:
        """send.c wg_packet_send_keepalive: an empty packet unless others are waiting."""
        if not self.queue:
            self.queue.append(b"")
        return self._send_staged(now)

    def _install(self, session: Session, now: float) -> None:
        """noise.c add_new_keypair: the initiator's keypair is current at once, and a
        pending next (else the old current) becomes previous; the responder's waits as
        next for its confirmation, and previous is dropped."""
        self._pending = None
        if session.initiator:
            if self.next is not None:
                self.previous, self.next = self.next, None
            else:
                self.previous = self.current
            self.current = session
        else:
            self.next, self.previous = session, None
        self._session_derived(now)

    # -- API -----------------------------------------------------------------
    def send(self, packet: bytes, now: float) -> list[bytes]:
        """Datagrams for ``packet``: sealed now, or queued behind a handshake."""
        s = self.current
        if s is not None and not self.queue and s.send_counter < REJECT_AFTER_MESSAGES:
            age = now - s.created
            if age < REJECT_AFTER_TIME:
                # the data path: `_seal_all` for one packet, written out
                wire = s.sender.seal(s.keys.remote_index, s.send_counter, packet, self.mtu)
                s.send_counter += 1
                if self.persistent_keepalive:
                    self._persistent_at = now + self.persistent_keepalive
                self._send_keepalive_at = None
                if self._new_handshake_at is None and packet:
                    self._new_handshake_at = now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + self._jitter()
                if s.send_counter > REKEY_AFTER_MESSAGES or (s.initiator and age >= REKEY_AFTER_TIME):
                    return [wire, *self._send_initiation(now, is_retry=False)]
                return [wire]
        self._stage(packet)
        return self._send_staged(now)

    def initiate(self, now: float) -> list[bytes]:
        """Start a handshake now (as the new-handshake timer does): nothing if one was
        sent within REKEY_TIMEOUT."""
        return self._send_initiation(now, is_retry=False)

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
        def lookup(key: bytes) -> bytes | None:  # a stranger stops before the static-static DH
            if key != self.peer_public:
                return None
            try:
                return static_static(self.static_private, key)
            except ValueError:  # a low-order key: zeros, refused by consume_initiation
                return bytes(32)

        return self.accept_initiation(
            consume_initiation(self.static_private, parse_initiation(datagram), lookup=lookup), now
        )

    def accept_initiation(self, seen: ConsumedInitiation, now: float) -> list[bytes]:
        """Answer an initiation already verified (by a device that had to decrypt it to find us).
        As noise.c wg_noise_handshake_consume_initiation: refused if its timestamp is not newer
        than the newest taken (a replay), or if it comes within 20 ms of the last one taken
        (a flood); then the response (send.c wg_packet_send_handshake_response)."""
        if seen.peer_public != self.peer_public:
            raise HandshakeError("initiation from another peer")
        if seen.timestamp <= self._last_timestamp:  # TAI64N must grow: a replayed initiation
            self.counters.replayed += 1
            return []
        last = self._last_initiation_consumed
        if last is not None and now < last + INITIATION_MIN_INTERVAL:
            self.counters.flooded += 1
            return []
        self._last_timestamp = seen.timestamp
        self._last_initiation_consumed = now if last is None else max(last, now)
        ephemeral = self.random(32)
        resp, keys = create_response(seen, ephemeral, self._index(), self.psk)
        self._record(ephemeral, initiator=False)
        self._last_sent_handshake = now
        self._install(Session(keys, now, initiator=False), now)  # our own initiation, if any, is over
        self._traversal(now)
        self._send_keepalive_at = None  # the response is an authenticated packet sent
        self._any_received()
        return [self._cookie.stamp(resp.encode(), now)]

    def _on_response(self, datagram: bytes, now: float) -> list[bytes]:
        """receive.c, MESSAGE_HANDSHAKE_RESPONSE: the session begins, the handshake is
        complete, and the staged packets go out (or a keepalive confirms the session)."""
        if self._pending is None:
            raise HandshakeError("response without a handshake in progress")
        keys = consume_response(
            self._pending, self.static_private, self.peer_public, parse_response(datagram), self.psk
        )
        self._install(Session(keys, now, initiator=True), now)
        self._handshake_complete(now)
        out = self._send_keepalive(now)
        self._any_received()  # after the send, as receive.c orders it (wireguard-go before)
        self._traversal(now)
        return out

    def _on_cookie_reply(self, datagram: bytes, now: float) -> None:
        reply = parse_cookie_reply(datagram)
        if not self._holds(reply.receiver):  # the kernel looks it up among handshakes and keypairs
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
        send, the packet inside or None, whether it authenticated).
        After it authenticates, as receive.c wg_packet_consume_data_done: key confirmation
        (noise.c wg_noise_received_with_keypair), keep_key_fresh, then the timers."""
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
        out: list[bytes] = []
        if s is self.next:  # key confirmation: the responder's new keypair becomes current
            self.previous, self.current, self.next = self.current, s, None
            self._handshake_complete(now)
            out = self._send_staged(now)
        current = self.current
        if (
            not self._sent_lastminute_handshake
            and current is not None
            and current.initiator
            and now - current.created >= LASTMINUTE_REKEY
        ):
            self._sent_lastminute_handshake = True
            out += self._send_initiation(now, is_retry=False)
        self._new_handshake_at = None  # any authenticated packet received
        if self.persistent_keepalive:
            self._persistent_at = now + self.persistent_keepalive
        if plain:
            if self._send_keepalive_at is None:  # wg_timers_data_received
                self._send_keepalive_at = now + KEEPALIVE_TIMEOUT
            else:
                self._need_another_keepalive = True
            return out, _strip_padding(plain, self.counters), True
        return out, None, True

    def set_static_private(self, static_private: bytes) -> None:
        """The device's key changed: handshakes start over under the new key; the
        current sessions may still receive but send no more (noise.c
        wg_noise_expire_current_peer_keypairs; wireguard-go SetPrivateKey then
        ExpireCurrentKeypairs: the handshake cleared, its rate limit reset)."""
        self.static_private = static_private
        self.static_public = public_of(static_private)
        self._pending = None
        self._last_sent_handshake = None
        for s in (self.current, self.next):
            if s is not None:
                s.send_counter = REJECT_AFTER_MESSAGES

    def set_persistent_keepalive(self, interval: float | None, now: float) -> None:
        """Change the persistent keepalive; turning it on sends a keepalive at the
        next `tick` (starting a handshake if need be), as wireguard-go and the kernel's
        netlink.c do."""
        if interval and not self.persistent_keepalive:
            self._keepalive_now = now
        elif not interval:
            self._keepalive_now = None  # turned off again before it was sent
            self._persistent_at = None
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
            for t in (
                self._retransmit_at,
                self._send_keepalive_at,
                self._new_handshake_at,
                self._zero_keys_at,
                self._persistent_at,
                self._keepalive_now,
            )
            if t is not None
        ]
        return min(times) if times else None

    def tick(self, now: float) -> list[bytes]:
        """Act on every timer that is due; datagrams to send."""
        out: list[bytes] = []
        if self._zero_keys_at is not None and now >= self._zero_keys_at:
            # wg_queued_expired_zero_key_material: the handshake and every keypair
            self._zero_keys_at = None
            self._pending = None
            self.current = self.previous = self.next = None
        if self._retransmit_at is not None and now >= self._retransmit_at:
            self._retransmit_at = None
            if self._handshake_attempts > MAX_TIMER_HANDSHAKES:
                # wg_expired_retransmit_handshake giving up: staged packets dropped, and the
                # residue of the exchange zeroed later
                self._send_keepalive_at = None
                self.counters.queue_dropped += len(self.queue)
                self.queue.clear()
                if self._zero_keys_at is None:
                    self._zero_keys_at = now + ZERO_KEYS_AFTER
            else:
                self._handshake_attempts += 1
                out += self._send_initiation(now, is_retry=True)
        if self._new_handshake_at is not None and now >= self._new_handshake_at:
            # wg_expired_new_handshake: the peer stopped answering
            self._new_handshake_at = None
            out += self._send_initiation(now, is_retry=False)
        if self._keepalive_now is not None and now >= self._keepalive_now:
            self._keepalive_now = None
            out += self._send_keepalive(now)
        if self._send_keepalive_at is not None and now >= self._send_keepalive_at:
            # wg_expired_send_keepalive queues the keepalive, then re-arms itself if data came
            # in while it was pending; but the keepalive's own send completes afterwards (the
            # kernel's tx worker, wireguard-go's sequential sender) and its
            # any_authenticated_packet_sent deletes that timer again. Upstream so sends one
            # keepalive (as the passive-keepalive probe saw on both); the same order here.
            self._send_keepalive_at = None
            if self._need_another_keepalive:
                self._need_another_keepalive = False
                self._send_keepalive_at = now + KEEPALIVE_TIMEOUT
            out += self._send_keepalive(now)
        if self._persistent_at is not None and now >= self._persistent_at:
            self._persistent_at = None
            if self.persistent_keepalive:
                out += self._send_keepalive(now)
        return out


def _strip_padding(plain: bytes, counters: Counters) -> bytes | None:
    """The IP packet inside a non-empty plaintext, its padding cut off at the length its
    header gives; None (counted) for what the kernel's receive.c,
    wg_packet_consume_data_done, drops: not IPv4 or IPv6 or shorter than that header,
    or a length below the IPv4 header or beyond the plaintext. wireguard-go's
    device/receive.go, RoutineSequentialReceiver, drops the same."""
    n = len(plain)
    version = plain[0] >> 4
    if version == 4 and n >= 20:
        length = (plain[2] << 8) | plain[3]  # total length, header included
        if 20 <= length <= n:
            return plain[:length]
    elif version == 6 and n >= 40:
        length = 40 + ((plain[4] << 8) | plain[5])  # payload length, after the 40-byte header
        if length <= n:
            return plain[:length]
    else:
        counters.not_ip += 1
        return None
    counters.bad_length += 1
    return None
