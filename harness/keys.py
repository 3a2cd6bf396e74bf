"""WireGuard keys: Curve25519 key pairs and preshared keys, base64 encoded.

Keys are 32 bytes (WireGuard paper, section 5.4; `wg genkey` prints them in
base64). A private key is clamped as Curve25519 requires (RFC 7748, section 5),
which is also what `wg genkey` does.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

KEY_LEN = 32


def decode_key(text: str) -> bytes:
    """The 32 raw bytes of a base64 key; ValueError (without the key in it) otherwise."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None
    if len(raw) != KEY_LEN:
        raise ValueError(f"decodes to {len(raw)} bytes, a key has {KEY_LEN}")
    return raw


def encode_key(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def clamp(raw: bytes) -> bytes:
    b = bytearray(raw)
    b[0] &= 248
    b[31] = (b[31] & 127) | 64
    return bytes(b)


def generate_private_key() -> str:
    return encode_key(clamp(os.urandom(KEY_LEN)))


def generate_preshared_key() -> str:
    return encode_key(os.urandom(KEY_LEN))


def public_key(private: str) -> str:
    """The public key of a base64 private key."""
    key = X25519PrivateKey.from_private_bytes(decode_key(private))
    return encode_key(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


@dataclass(frozen=True)
class KeyPair:
    private: str = field(repr=False)
    public: str

    @classmethod
    def from_private(cls, private: str) -> KeyPair:
        return cls(private=private, public=public_key(private))

    @classmethod
    def generate(cls) -> KeyPair:
        return cls.from_private(generate_private_key())
