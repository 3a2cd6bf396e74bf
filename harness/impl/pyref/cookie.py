"""Cookies and MAC2 (WireGuard paper, section 5.4.7), sans-IO.

A responder under load answers a handshake message with a cookie reply
instead of doing Diffie-Hellman. The cookie is MAC(Rm, source address), Rm a
secret that changes every two minutes; it travels encrypted with
XChaCha20-Poly1305 under HASH(LABEL_COOKIE || responder's static public key),
with the mac1 of the message it answers as associated data. The initiator
then sends its message again with mac2 = MAC(cookie, message up to mac2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag

from harness.impl.pyref.crypto import LABEL_COOKIE, hash_, mac, xaead_decrypt, xaead_encrypt
from harness.impl.pyref.messages import CookieReply

COOKIE_SECRET_LIFETIME = 120.0  # seconds (paper, section 6.1: the secret changes every 2 minutes)


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
        return mac2_of(self.cookie_for(source, now), message_until_mac2) == mac2


class CookieError(ValueError):
    """A cookie reply that does not decrypt (not for the message we sent, or forged)."""


def open_cookie_reply(reply: CookieReply, responder_public: bytes, our_mac1: bytes) -> bytes:
    """The initiator's side: the cookie from a reply to the message whose mac1 was ``our_mac1``."""
    try:
        return xaead_decrypt(cookie_key(responder_public), reply.nonce, reply.encrypted_cookie, our_mac1)
    except InvalidTag:
        raise CookieError("cookie reply does not decrypt") from None
