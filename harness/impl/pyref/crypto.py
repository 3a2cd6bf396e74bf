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
    # hashlib.blake2s itself (digest 32 bytes, block 64): hmac calls it with the key to hash keys over 64 bytes.
    return hmac.new(key, data, hashlib.blake2s).digest()


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


TAI_OFFSET = 10
"""TAI was 10 s ahead of UTC in 1970; WireGuard's timestamps add it, as libtai's
conversion does (Linux drivers/net/wireguard/noise.c and wireguard-go
tai64n/tai64n.go both start from 0x400000000000000a)."""


def tai64n(unix_seconds: float) -> bytes:
    """TAI64N label of a Unix time (https://cr.yp.to/libtai/tai64.html): 2^62 + TAI
    seconds, big-endian, then nanoseconds, as WireGuard's initiations carry it."""
    seconds = int(unix_seconds)
    nanos = int((unix_seconds - seconds) * 1e9)
    return struct.pack(">QI", (1 << 62) + TAI_OFFSET + seconds, nanos)


# -- XChaCha20-Poly1305 (for cookie replies) ---------------------------------
# The `cryptography` package has no XChaCha20-Poly1305; it is HChaCha20 to
# derive a subkey from the key and the first 16 bytes of the 24-byte nonce,
# then ChaCha20-Poly1305 with that subkey and the nonce's last 8 bytes
# (draft-irtf-cfrg-xchacha, sections 2.2 and 2.3).
_SIGMA = struct.unpack("<4I", b"expand 32-byte k")


def hchacha20(key: bytes, nonce16: bytes) -> bytes:
    """HChaCha20: the ChaCha20 state after its 20 rounds, words 0-3 and 12-15,
    without the final addition of the input. Computed from one ChaCha20 block
    (which is rounds(state) + state) by subtracting the input state again;
    ChaCha20's 16-byte "nonce" in `cryptography` is exactly words 12-15."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    block = Cipher(algorithms.ChaCha20(key, nonce16), mode=None).encryptor().update(bytes(64))
    words = struct.unpack("<16I", block)
    n = struct.unpack("<4I", nonce16)
    out = [(words[i] - _SIGMA[i]) & 0xFFFFFFFF for i in range(4)]
    out += [(words[12 + i] - n[i]) & 0xFFFFFFFF for i in range(4)]
    return struct.pack("<8I", *out)


def xaead_encrypt(key: bytes, nonce24: bytes, plaintext: bytes, ad: bytes) -> bytes:
    sub = hchacha20(key, nonce24[:16])
    return ChaCha20Poly1305(sub).encrypt(b"\x00\x00\x00\x00" + nonce24[16:], plaintext, ad)


def xaead_decrypt(key: bytes, nonce24: bytes, ciphertext: bytes, ad: bytes) -> bytes:
    sub = hchacha20(key, nonce24[:16])
    return ChaCha20Poly1305(sub).decrypt(b"\x00\x00\x00\x00" + nonce24[16:], ciphertext, ad)
