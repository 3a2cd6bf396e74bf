"""XChaCha20-Poly1305 from HChaCha20, and the cookie/MAC2 exchange in memory."""

from __future__ import annotations

import os

import pytest

from harness.impl.pyref.cookie import CookieError, CookieMaker, mac2_of, open_cookie_reply
from harness.impl.pyref.crypto import hchacha20, public_of, xaead_decrypt, xaead_encrypt
from harness.impl.pyref.messages import COOKIE_REPLY_LEN, parse_cookie_reply
from harness.impl.pyref.noise import create_initiation


def test_hchacha20_known_answer() -> None:
    # draft-irtf-cfrg-xchacha-03, section 2.2.1 (HChaCha20 test vector).
    key = bytes(range(32))
    nonce = bytes.fromhex("000000090000004a0000000031415927")
    assert hchacha20(key, nonce).hex() == "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc"


def test_xaead_round_trip_and_tamper() -> None:
    key, nonce = os.urandom(32), os.urandom(24)
    sealed = xaead_encrypt(key, nonce, b"cookie-16-bytes!", b"ad")
    assert len(sealed) == 32 and xaead_decrypt(key, nonce, sealed, b"ad") == b"cookie-16-bytes!"
    with pytest.raises(Exception):  # noqa: B017 - InvalidTag from cryptography
        xaead_decrypt(key, nonce, sealed, b"other ad")


class CountingRandom:
    def __init__(self) -> None:
        self.bytes_given = 0

    def random(self, n: int) -> bytes:
        self.bytes_given += n
        return os.urandom(n)


def test_cookie_exchange_and_mac2() -> None:
    a, b = os.urandom(32), os.urandom(32)
    source = bytes([198, 18, 0, 1]) + (51820).to_bytes(2, "big")
    maker = CookieMaker(public_of(b), CountingRandom().random)
    first, _ = create_initiation(a, public_of(b), os.urandom(32), 5, 100.0)
    wire = maker.reply(first.sender, first.mac1, source, now=1000.0).encode()
    assert len(wire) == COOKIE_REPLY_LEN
    reply = parse_cookie_reply(wire)
    assert reply.receiver == 5
    cookie = open_cookie_reply(reply, public_of(b), first.mac1)
    # The initiator retries with mac2 over its new message up to mac2.
    retry, _ = create_initiation(a, public_of(b), os.urandom(32), 6, 101.0)
    covered = retry.body() + retry.mac1
    mac2 = mac2_of(cookie, covered)
    assert maker.valid_mac2(covered, mac2, source, now=1010.0)
    assert not maker.valid_mac2(
        covered, mac2, bytes([198, 18, 0, 2]) + source[4:], now=1010.0
    )  # other source
    assert not maker.valid_mac2(covered, mac2, source, now=1000.0 + 121)  # the secret has changed
    with pytest.raises(CookieError):
        open_cookie_reply(reply, public_of(b), retry.mac1)  # not the message it answered
