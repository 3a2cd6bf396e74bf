"""WireGuard keys: Curve25519 key pairs and preshared keys, base64 encoded.

Keys are 32 bytes (WireGuard paper, section 5.4; `wg genkey` prints them in
base64). A private key is clamped as Curve25519 requires (RFC 7748, section 5),
which is also what `wg genkey` does.

Keys at rest: a key a lab file holds is never stored or bundled in clear
(`redact_key_text`, `without_secrets`); the keys made for one run may be.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


REDACTED = "(redacted)"
"""What a private key is replaced by where it would be stored or bundled; a lab file's
``private_key`` reads it as no key given (one is made for the run)."""
_KEY_TEXT = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{43}=")
"""The base64 text of a 32-byte key."""


def redact_key_text(text: str) -> str:
    """``text`` (a lab or scenario file) with every key in it replaced by `REDACTED`. A
    key the pattern cannot see (written with TOML escapes) withholds the whole text."""
    redacted = _KEY_TEXT.sub(REDACTED, text)
    if redacted == text and "private_key" not in text:
        return text
    try:
        values: list[Any] = [tomllib.loads(redacted)]
    except (tomllib.TOMLDecodeError, RecursionError):
        return redacted  # not TOML: no escapes hide a key either
    while values:  # every string of the parsed file, without recursion
        value = values.pop()
        if isinstance(value, dict):
            values.extend(value.values())
        elif isinstance(value, list):
            values.extend(value)
        elif isinstance(value, str) and _is_key(value):
            return (
                f"# withheld by wgharness: this text holds a private key it could not redact ({REDACTED})\n"
            )
    return redacted


def _is_key(text: str) -> bool:
    try:
        decode_key(text)
    except ValueError:
        return False
    return True


def without_secrets(data: bytes, secrets: Iterable[str]) -> bytes:
    """``data`` with each of ``secrets`` (base64 keys) replaced by `REDACTED`."""
    for secret in secrets:
        data = data.replace(secret.strip().encode(), REDACTED.encode())
    return data


def create_private(path: Path) -> int:
    """A new file at ``path`` (it must not exist) open for writing, readable by its owner
    only (0600), in folders made owner-only (0700) where they are missing: for what
    holds keys (a bundle, a store). Its descriptor; FileExistsError if it exists."""
    for folder in reversed(path.parents):
        if not folder.exists():
            folder.mkdir(mode=0o700, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
