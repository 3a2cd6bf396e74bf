"""WireGuard's primitives, as the WireGuard paper (Donenfeld, NDSS 2017,
section 5.4) defines them: HASH = BLAKE2s-256, MAC = keyed BLAKE2s-128,
HMAC over BLAKE2s, KDF1..3 (HKDF), AEAD = ChaCha20-Poly1305 with a 64-bit
little-endian counter nonce, DH = X25519, TAI64N timestamps."""

from __future__ import annotations

import functools
import hashlib
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


_BLOCK = 64  # BLAKE2s's block size, HMAC's B (RFC 2104)
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))
_COUNTERS = [bytes((i,)) for i in range(4)]


def hmac_(key: bytes, data: bytes) -> bytes:
    """HMAC-BLAKE2s (RFC 2104) written out: the stdlib's `hmac` costs several
    times more per call, and a handshake makes some twenty of them."""
    if len(key) > _BLOCK:
        key = hashlib.blake2s(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner = hashlib.blake2s(key.translate(_IPAD) + data).digest()
    return hashlib.blake2s(key.translate(_OPAD) + inner).digest()


def kdf(key: bytes, data: bytes, n: int) -> tuple[bytes, ...]:
    """HKDF as the paper writes it: tau0 = HMAC(key, data); tau_i = HMAC(tau0, tau_{i-1} || i).
    HMAC is written out here too: tau0's padded blocks are hashed once and the two
    states copied for each tau_i."""
    blake2s = hashlib.blake2s
    if len(key) > _BLOCK:
        key = blake2s(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    t0 = (
        blake2s(key.translate(_OPAD) + blake2s(key.translate(_IPAD) + data).digest())
        .digest()
        .ljust(_BLOCK, b"\0")
    )
    inner, outer = blake2s(t0.translate(_IPAD)), blake2s(t0.translate(_OPAD))
    out: list[bytes] = []
    prev = b""
    for i in range(1, n + 1):
        h = inner.copy()
        h.update(prev + _COUNTERS[i])
        o = outer.copy()
        o.update(h.digest())
        prev = o.digest()
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


# Loading a private key costs OpenSSL a scalar multiplication (it derives the
# public key), as much as the exchange itself: a handshake loads each key once.
class DHKey:
    """A private X25519 key loaded once: its public key and its exchanges."""

    __slots__ = ("_key", "public")

    def __init__(self, private: bytes) -> None:
        self._key = X25519PrivateKey.from_private_bytes(private)
        self.public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def dh(self, public: bytes) -> bytes:
        return self._key.exchange(X25519PublicKey.from_public_bytes(public))


@functools.lru_cache(maxsize=1 << 12)
def static_key(private: bytes) -> DHKey:
    """A static key, loaded once: a device's own, or each of a prober's identities."""
    return DHKey(private)


@functools.lru_cache(maxsize=1 << 17)
def static_static(private: bytes, public: bytes) -> bytes:
    """DH of our static key with a peer's, cached as the paper allows (section 5.4.2: it
    never changes while both keys stay); bounded at some 130,000 pairs."""
    return static_key(private).dh(public)


def public_of(private: bytes) -> bytes:
    return (
        X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


TAI_OFFSET = 10
"""TAI was 10 s ahead of UTC in 1970; WireGuard's timestamps add it, as libtai's
conversion does (Linux drivers/net/wireguard/noise.c and wireguard-go
tai64n/tai64n.go both start from 0x400000000000000a)."""


INITIATIONS_PER_SECOND = 50
"""The most initiations a responder takes from one peer a second (the kernel's messages.h;
wireguard-go's HandshakeInitationRate, 20 ms)."""
TIMESTAMP_GRANULARITY_NS = 1 << ((10**9 // INITIATIONS_PER_SECOND).bit_length() - 1)
"""2^24 ns (some 16.8 ms): the largest power of two not above 10^9 / INITIATIONS_PER_SECOND.
The kernel's tai64n_now (noise.c) rounds an initiation's nanoseconds down to a multiple of
it, so that the timestamp does not give away a precise clock; wireguard-go's tai64n.go
clears the same low 24 bits (whitenerMask). Both agree."""


def tai64n(unix_seconds: float, *, whiten: bool = False) -> bytes:
    """TAI64N label of a Unix time (https://cr.yp.to/libtai/tai64.html): 2^62 + TAI
    seconds, big-endian, then nanoseconds, as WireGuard's initiations carry it.
    ``whiten``: the nanoseconds rounded down to TIMESTAMP_GRANULARITY_NS, as an
    initiation's timestamp is (`noise.create_initiation`)."""
    seconds = int(unix_seconds)
    nanos = int((unix_seconds - seconds) * 1e9)
    if whiten:
        nanos &= -TIMESTAMP_GRANULARITY_NS
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
