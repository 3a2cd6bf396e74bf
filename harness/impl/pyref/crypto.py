"""WireGuard's primitives, as the WireGuard paper (Donenfeld, NDSS 2017,
section 5.4) defines them: HASH = BLAKE2s-256, MAC = keyed BLAKE2s-128,
HMAC over BLAKE2s, KDF1..3 (HKDF), AEAD = ChaCha20-Poly1305 with a 64-bit
little-endian counter nonce, DH = X25519, TAI64N timestamps."""

from __future__ import annotations

import hashlib
import hmac
import struct

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# Protocol constants, from the WireGuard paper, section 5.4.
CONSTRUCTION = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
IDENTIFIER = b"WireGuard v1 zx2c4 Jason@zx2c4.com"
LABEL_MAC1 = b"mac1----"
LABEL_COOKIE = b"cookie--"
KEY_LEN = 32
TAG_LEN = 16


def hash_(*parts: bytes) -> bytes:
    h = hashlib.blake2s(digest_size=32)
    for p in parts:
        h.update(p)
    return h.digest()


def mac(key: bytes, data: bytes) -> bytes:
    return hashlib.blake2s(data, digest_size=16, key=key).digest()


def hmac_(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, lambda: hashlib.blake2s(digest_size=32)).digest()


def kdf(key: bytes, data: bytes, n: int) -> tuple[bytes, ...]:
    """HKDF as the paper writes it: tau0 = HMAC(key, data); tau_i = HMAC(tau0, tau_{i-1} || i)."""
    t0 = hmac_(key, data)
    out: list[bytes] = []
    prev = b""
    for i in range(1, n + 1):
        prev = hmac_(t0, prev + bytes([i]))
        out.append(prev)
    return tuple(out)


def _nonce(counter: int) -> bytes:
    return b"\x00\x00\x00\x00" + struct.pack("<Q", counter)


def aead_encrypt(key: bytes, counter: int, plaintext: bytes, ad: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(_nonce(counter), plaintext, ad)


def aead_decrypt(key: bytes, counter: int, ciphertext: bytes, ad: bytes) -> bytes:
    """Raises `cryptography.exceptions.InvalidTag` when the message is not authentic."""
    return ChaCha20Poly1305(key).decrypt(_nonce(counter), ciphertext, ad)


def dh(private: bytes, public: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(public))


def public_of(private: bytes) -> bytes:
    return (
        X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


def tai64n(unix_seconds: float) -> bytes:
    """TAI64N label of a time (https://cr.yp.to/libtai/tai64.html): 2^62 + seconds, big-endian, then nanoseconds."""
    seconds = int(unix_seconds)
    nanos = int((unix_seconds - seconds) * 1e9)
    return struct.pack(">QI", (1 << 62) + seconds, nanos)
