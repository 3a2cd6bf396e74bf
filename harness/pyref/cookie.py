"""Cookies and MAC2 (WireGuard paper, section 5.4.7), sans-IO.

A responder under load answers a handshake message with a cookie reply
instead of doing Diffie-Hellman. The cookie is MAC(Rm, source address), Rm a
secret that changes every two minutes; it travels encrypted with
XChaCha20-Poly1305 under HASH(LABEL_COOKIE || responder's static public key),
with the mac1 of the message it answers as associated data. The initiator
then sends its message again with mac2 = MAC(cookie, message up to mac2).

Three parts, each side's state in one class:
- `CookieChecker` (the responder's gate, in front of any Diffie-Hellman): is
  MAC1 right, is the device under load (`LoadPolicy`), and if so is MAC2 right
  or must the sender first get a cookie reply, and has the sender's address
  its share of handshakes left (`ratelimiter.RateLimiter`);
- `CookieMaker`: the cookie secret, cookies and cookie replies;
- `LatestCookie` (the initiator's side): the mac1 it last sent, the cookie it
  got back and when, and the mac2 for the messages it sends while the cookie
  is fresh.

Sources of the rules: the WireGuard paper (sections 5.3, 5.4.7, 6), the Linux
kernel's drivers/net/wireguard/cookie.c (wg_cookie_validate_packet,
wg_cookie_add_mac_to_packet, wg_cookie_message_consume) and receive.c
(the under-load test, wg_receive_handshake_packet), wireguard-go's
device/cookie.go, device.go (IsUnderLoad) and receive.go (RoutineHandshake).
Read to learn; no code is copied.
"""

from __future__ import annotations

import enum
import functools
import hmac
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag

from harness.pyref.crypto import LABEL_COOKIE, LABEL_MAC1, hash_, mac, xaead_decrypt, xaead_encrypt
from harness.pyref.messages import CookieReply
from harness.pyref.ratelimiter import RateLimiter

COOKIE_SECRET_LIFETIME = 120.0  # seconds (paper, section 6.1: the secret changes every 2 minutes)
COOKIE_LATENCY = 5.0
"""An initiator uses a cookie for COOKIE_SECRET_LIFETIME minus this margin only,
so that it stops before the responder's secret changes under it (the kernel's
COOKIE_SECRET_LATENCY; wireguard-go uses the full 120 s)."""
MACS_LEN = 32  # mac1 and mac2, the last 32 bytes of an initiation or a response


@functools.lru_cache(maxsize=4096)
def source_bytes(host: str, port: int) -> bytes:
    """What a cookie binds: the source IP address's bytes (4 or 16) and the UDP
    port, big-endian, as the kernel hashes them (make_cookie in cookie.c). A
    host that is not an IP address (only from a caller's own transport) is
    bound by its text."""
    try:
        addr = ipaddress.ip_address(host).packed
    except ValueError:
        addr = host.encode("utf-8", "replace")
    return addr + (port & 0xFFFF).to_bytes(2, "big")


def cookie_key(static_public: bytes) -> bytes:
    return hash_(LABEL_COOKIE, static_public)


def mac2_of(cookie: bytes, message_until_mac2: bytes) -> bytes:
    return mac(cookie, message_until_mac2)


@dataclass
class CookieMaker:
    """The responder's side. ``random`` gives fresh bytes (os.urandom in real use)."""

    static_public: bytes
    random: Callable[[int], bytes]
    _secret: bytes = field(default=b"", repr=False)
    _born: float = float("-inf")

    def _current_secret(self, now: float) -> bytes:
        if now - self._born >= COOKIE_SECRET_LIFETIME:
            self._secret, self._born = self.random(32), now
        return self._secret

    def cookie_for(self, source: bytes, now: float) -> bytes:
        """The cookie a source (its address and port, as bytes) must present now."""
        return mac(self._current_secret(now), source)

    def reply(self, receiver_index: int, mac1: bytes, source: bytes, now: float) -> CookieReply:
        nonce = self.random(24)
        sealed = xaead_encrypt(cookie_key(self.static_public), nonce, self.cookie_for(source, now), mac1)
        return CookieReply(receiver_index, nonce, sealed)

    def valid_mac2(self, message_until_mac2: bytes, mac2: bytes, source: bytes, now: float) -> bool:
        # constant time, as the kernel's crypto_memneq (cookie.c) and wireguard-go's hmac.Equal (cookie.go)
        return hmac.compare_digest(mac2_of(self.cookie_for(source, now), message_until_mac2), mac2)


class CookieError(ValueError):
    """A cookie reply that does not decrypt (not for the message we sent, or forged)."""


def open_cookie_reply(reply: CookieReply, responder_public: bytes, our_mac1: bytes) -> bytes:
    """The initiator's side: the cookie from a reply to the message whose mac1 was ``our_mac1``."""
    try:
        return xaead_decrypt(cookie_key(responder_public), reply.nonce, reply.encrypted_cookie, our_mac1)
    except InvalidTag:
        raise CookieError("cookie reply does not decrypt") from None


# -- the responder's gate ----------------------------------------------------
@dataclass(frozen=True)
class LoadPolicy:
    """When a device is under load and asks every handshake message for a valid MAC2.

    The kernel and wireguard-go call a device under load while its queue of
    handshake messages waiting for Diffie-Hellman is at least 1/8 full, and for
    one second after (wireguard-go's device.go `IsUnderLoad`: 128 of
    QueueHandshakeSize 1024; the kernel's receive.c: 512 of
    MAX_QUEUED_INCOMING_HANDSHAKES 4096). A sans-IO core has no queue of its
    own, so the I/O layer tells it how many handshake messages it has read and
    not yet handed over (`waiting`, see `Device.receive_datagram`): "under
    load" means behind, as upstream, never just "busy". pyref takes
    wireguard-go's threshold.
    """

    always: bool = False
    """Under load whatever the traffic: every handshake message needs a cookie (tests, probes)."""
    backlog: int = 128
    """Under load while at least this many handshake messages wait behind the one in hand."""
    hold: float = 1.0
    """Seconds a device stays under load after the backlog was last seen (kernel and wireguard-go: 1 s)."""

    def __post_init__(self) -> None:
        if self.backlog < 1 or self.hold < 0:
            raise ValueError(f"LoadPolicy: backlog must be >= 1 and hold >= 0, got {self}")


DEFAULT_LOAD_POLICY = LoadPolicy()


class Admission(enum.Enum):
    """What the responder's gate (`CookieChecker.check`) decided about one handshake
    message: let it go on to Diffie-Hellman, or not and why."""

    ACCEPT = "accept"
    """Go on with Diffie-Hellman."""
    BAD_MAC1 = "bad mac1"
    """Drop: not made for our public key (or not a handshake message at all)."""
    NEEDS_COOKIE = "needs cookie"
    """Under load and no valid MAC2: answer with a cookie reply, do no Diffie-Hellman."""
    RATE_LIMITED = "rate limited"
    """Under load, MAC2 valid, but its source address used up its share (`RateLimiter`):
    drop, answer nothing (the kernel's VALID_MAC_WITH_COOKIE_BUT_RATELIMITED)."""


class CookieChecker:
    """The responder's side: MAC1, the load meter, MAC2 and the rate limiter,
    checked in that order, each cheaper than what it protects (the kernel's
    wg_cookie_validate_packet; wireguard-go's RoutineHandshake). ``limiter``:
    the buckets by source (a fresh `RateLimiter` with the kernel's numbers if none)."""

    def __init__(
        self,
        static_public: bytes,
        random: Callable[[int], bytes],
        policy: LoadPolicy,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.policy = policy
        self.limiter = limiter if limiter is not None else RateLimiter()
        self._random = random
        self._set_key(static_public)
        self._under_load_until = float("-inf")

    def _set_key(self, static_public: bytes) -> None:
        self.static_public = static_public
        self._mac1_key = hash_(LABEL_MAC1, static_public)
        self._maker = CookieMaker(static_public, self._random)

    def rekey(self, static_public: bytes) -> None:
        """The device's key changed: new MAC1 and cookie keys, a new cookie secret."""
        if static_public != self.static_public:
            self._set_key(static_public)

    def observe(self, waiting: int, now: float) -> None:
        """A handshake message (initiation, response or cookie reply) is taken from the
        queue with ``waiting`` more behind it: the kernel's receive.c measures the load
        for every one of them, before it looks at the message."""
        if waiting >= self.policy.backlog:
            self._under_load_until = now + self.policy.hold

    def under_load(self, now: float) -> bool:
        return self.policy.always or now < self._under_load_until

    def check(self, message: bytes, source: bytes, now: float) -> Admission:
        """``message``: a whole initiation or response; ``source``: see `source_bytes`
        (the rate limiter takes its address, without the port)."""
        if len(message) < MACS_LEN:
            return Admission.BAD_MAC1
        at = len(message) - MACS_LEN
        if not hmac.compare_digest(mac(self._mac1_key, message[:at]), message[at : at + 16]):
            return Admission.BAD_MAC1
        if not self.under_load(now):
            return Admission.ACCEPT
        if not self._maker.valid_mac2(message[: at + 16], message[at + 16 :], source, now):
            return Admission.NEEDS_COOKIE
        # Only now, as the kernel's cookie.c and wireguard-go's receive.go: a sender that
        # proved its address with MAC2 still gets at most its share of Diffie-Hellman.
        if not self.limiter.allow(source[:-2], now):
            return Admission.RATE_LIMITED
        return Admission.ACCEPT

    def reply(self, message: bytes, source: bytes, now: float) -> CookieReply:
        """The cookie reply to a message judged NEEDS_COOKIE: addressed to its sender
        index (bytes 4-8 of both handshake messages), bound to its mac1."""
        at = len(message) - MACS_LEN
        sender = int.from_bytes(message[4:8], "little")
        return self._maker.reply(sender, message[at : at + 16], source, now)


# -- the initiator's side ----------------------------------------------------
class LatestCookie:
    """What a peer keeps to answer a responder under load (the kernel's
    peer->latest_cookie): the mac1 of the last handshake message it sent, and
    the cookie that came back for it, with its time."""

    def __init__(self, responder_public: bytes) -> None:
        self.responder_public = responder_public
        self._last_mac1: bytes | None = None
        self._cookie: bytes | None = None
        self._born = float("-inf")

    def fresh(self, now: float) -> bool:
        return self._cookie is not None and now - self._born < COOKIE_SECRET_LIFETIME - COOKIE_LATENCY

    def stamp(self, message: bytes, now: float) -> bytes:
        """``message`` (with its mac1) with mac2 set: MAC(cookie, ...) while the
        cookie is fresh, else zeros. Remembers the mac1 a cookie reply will be bound to."""
        at = len(message) - MACS_LEN
        self._last_mac1 = message[at : at + 16]
        covered = message[: at + 16]
        return covered + (mac2_of(self._cookie, covered) if self._cookie and self.fresh(now) else bytes(16))

    def consume(self, reply: CookieReply, now: float) -> None:
        """Take the cookie from a reply to the last message sent; raises `CookieError`
        if there is none or it does not decrypt. One reply per message sent, as in the kernel."""
        if self._last_mac1 is None:
            raise CookieError("cookie reply, but no handshake message sent since the last one")
        self._cookie = open_cookie_reply(reply, self.responder_public, self._last_mac1)
        self._born = now
        self._last_mac1 = None
