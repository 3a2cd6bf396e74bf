"""The Noise_IKpsk2 handshake of WireGuard (paper, section 5.4.2-5.4.4), sans-IO.

No clock and no randomness inside: the caller passes the time (for the
TAI64N timestamp), the ephemeral private key and the sender index. The
result of a handshake is a `Keypair` of transport keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag

from harness.impl.pyref.crypto import (
    CONSTRUCTION,
    IDENTIFIER,
    LABEL_MAC1,
    aead_decrypt,
    aead_encrypt,
    dh,
    hash_,
    kdf,
    mac,
    public_of,
    tai64n,
)
from harness.impl.pyref.messages import Initiation, Response

INITIAL_CHAIN_KEY = hash_(CONSTRUCTION)
INITIAL_HASH = hash_(INITIAL_CHAIN_KEY, IDENTIFIER)


class HandshakeError(ValueError):
    """A handshake message failed authentication or does not fit our state."""


@dataclass(frozen=True)
class Keypair:
    send_key: bytes = field(repr=False)
    receive_key: bytes = field(repr=False)
    local_index: int
    remote_index: int


def mac1_key(static_public: bytes) -> bytes:
    return hash_(LABEL_MAC1, static_public)


def _check_mac1(body: bytes, got: bytes, receiver_static_public: bytes) -> None:
    if mac(mac1_key(receiver_static_public), body) != got:
        raise HandshakeError("bad mac1")


@dataclass
class InitiatorState:
    """What the initiator keeps between sending the initiation and the response."""

    chain: bytes = field(repr=False)
    hash: bytes = field(repr=False)
    ephemeral_private: bytes = field(repr=False)
    local_index: int


def create_initiation(
    static_private: bytes, peer_public: bytes, ephemeral_private: bytes, sender_index: int, now: float
) -> tuple[Initiation, InitiatorState]:
    c, h = INITIAL_CHAIN_KEY, hash_(INITIAL_HASH, peer_public)
    e_pub = public_of(ephemeral_private)
    (c,) = kdf(c, e_pub, 1)
    h = hash_(h, e_pub)
    c, k = kdf(c, dh(ephemeral_private, peer_public), 2)
    enc_static = aead_encrypt(k, 0, public_of(static_private), h)
    h = hash_(h, enc_static)
    c, k = kdf(c, dh(static_private, peer_public), 2)
    enc_ts = aead_encrypt(k, 0, tai64n(now), h)
    h = hash_(h, enc_ts)
    msg = Initiation(sender_index, e_pub, enc_static, enc_ts)
    msg = Initiation(sender_index, e_pub, enc_static, enc_ts, mac(mac1_key(peer_public), msg.body()))
    return msg, InitiatorState(c, h, ephemeral_private, sender_index)


@dataclass(frozen=True)
class ConsumedInitiation:
    """A verified initiation: who sent it, when (TAI64N), and the state to answer it."""

    peer_public: bytes
    timestamp: bytes
    sender_index: int
    peer_ephemeral: bytes
    chain: bytes = field(repr=False)
    hash: bytes = field(repr=False)


def consume_initiation(static_private: bytes, msg: Initiation) -> ConsumedInitiation:
    static_public = public_of(static_private)
    _check_mac1(msg.body(), msg.mac1, static_public)
    c, h = INITIAL_CHAIN_KEY, hash_(INITIAL_HASH, static_public)
    (c,) = kdf(c, msg.ephemeral, 1)
    h = hash_(h, msg.ephemeral)
    try:
        c, k = kdf(c, dh(static_private, msg.ephemeral), 2)
        peer_public = aead_decrypt(k, 0, msg.encrypted_static, h)
        h = hash_(h, msg.encrypted_static)
        c, k = kdf(c, dh(static_private, peer_public), 2)
        timestamp = aead_decrypt(k, 0, msg.encrypted_timestamp, h)
    except (InvalidTag, ValueError) as exc:  # ValueError: a low-order point gives an all-zero secret
        raise HandshakeError(f"initiation does not decrypt: {type(exc).__name__}") from None
    h = hash_(h, msg.encrypted_timestamp)
    return ConsumedInitiation(peer_public, timestamp, msg.sender, msg.ephemeral, c, h)


def create_response(
    init: ConsumedInitiation, ephemeral_private: bytes, sender_index: int, psk: bytes = bytes(32)
) -> tuple[Response, Keypair]:
    c, h = init.chain, init.hash
    e_pub = public_of(ephemeral_private)
    (c,) = kdf(c, e_pub, 1)
    h = hash_(h, e_pub)
    (c,) = kdf(c, dh(ephemeral_private, init.peer_ephemeral), 1)
    (c,) = kdf(c, dh(ephemeral_private, init.peer_public), 1)
    c, tau, k = kdf(c, psk, 3)
    h = hash_(h, tau)
    empty = aead_encrypt(k, 0, b"", h)
    msg = Response(sender_index, init.sender_index, e_pub, empty)
    msg = Response(sender_index, init.sender_index, e_pub, empty, mac(mac1_key(init.peer_public), msg.body()))
    receive, send = kdf(c, b"", 2)
    return msg, Keypair(send, receive, sender_index, init.sender_index)


def consume_response(
    state: InitiatorState, static_private: bytes, peer_public: bytes, msg: Response, psk: bytes = bytes(32)
) -> Keypair:
    _check_mac1(msg.body(), msg.mac1, public_of(static_private))
    if msg.receiver != state.local_index:
        raise HandshakeError("response for another handshake")
    c, h = state.chain, state.hash
    (c,) = kdf(c, msg.ephemeral, 1)
    h = hash_(h, msg.ephemeral)
    try:
        (c,) = kdf(c, dh(state.ephemeral_private, msg.ephemeral), 1)
        (c,) = kdf(c, dh(static_private, msg.ephemeral), 1)
        c, tau, k = kdf(c, psk, 3)
        h = hash_(h, tau)
        aead_decrypt(k, 0, msg.encrypted_nothing, h)
    except (InvalidTag, ValueError) as exc:
        raise HandshakeError(f"response does not decrypt: {type(exc).__name__}") from None
    send, receive = kdf(c, b"", 2)
    return Keypair(send, receive, state.local_index, msg.sender)
