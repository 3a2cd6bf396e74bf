"""The Noise_IKpsk2 handshake of WireGuard (paper, section 5.4.2-5.4.4), sans-IO.

No clock and no randomness inside: the caller passes the time (for the
TAI64N timestamp), the ephemeral private key and the sender index. The
result of a handshake is a `Keypair` of transport keys.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from cryptography.exceptions import InvalidTag

from harness.pyref.crypto import (
    CONSTRUCTION,
    IDENTIFIER,
    LABEL_MAC1,
    DHKey,
    aead_decrypt,
    aead_encrypt,
    dh,
    hash_,
    kdf,
    mac,
    static_key,
    static_static,
    tai64n,
)
from harness.pyref.messages import Initiation, Response


@functools.lru_cache(maxsize=8)
def initial_state(prologue: bytes = IDENTIFIER) -> tuple[bytes, bytes]:
    """Noise's InitializeSymmetric(CONSTRUCTION), then MixHash(prologue): the
    chaining key and the hash (WireGuard's prologue is IDENTIFIER)."""
    c = hash_(CONSTRUCTION)
    return c, hash_(c, prologue)


INITIAL_CHAIN_KEY, INITIAL_HASH = initial_state()


@functools.lru_cache(maxsize=16)
def _responder_start(prologue: bytes, static_public: bytes) -> tuple[bytes, bytes]:
    """<- s: the state every initiation to this responder starts from."""
    c, h = initial_state(prologue)
    return c, hash_(h, static_public)


class HandshakeError(ValueError):
    """A handshake message failed authentication or does not fit our state."""


class UnknownPeerError(HandshakeError):
    """An initiation whose static key decrypted, but is no peer's: refused before the
    static-static Diffie-Hellman and the timestamp (`consume_initiation`)."""


_NO_SECRET = bytes(32)


@dataclass(frozen=True)
class Keypair:
    send_key: bytes = field(repr=False)
    receive_key: bytes = field(repr=False)
    local_index: int
    remote_index: int


@functools.lru_cache(maxsize=1 << 12)
def mac1_key(static_public: bytes) -> bytes:
    """HASH(LABEL_MAC1 || public key): the same for every message to that key, so kept."""
    return hash_(LABEL_MAC1, static_public)


def _check_mac1(body: bytes, got: bytes, receiver_static_public: bytes) -> None:
    # constant time, as the kernel's crypto_memneq (cookie.c) and wireguard-go's hmac.Equal (cookie.go)
    if not hmac.compare_digest(mac(mac1_key(receiver_static_public), body), got):
        raise HandshakeError("bad mac1")


# -- The Noise core ------------------------------------------------------------
# Noise_IKpsk2's two messages as symmetric-state steps, with the prologue and
# the payloads as parameters (WireGuard: the prologue IDENTIFIER, the TAI64N
# timestamp as the initiation's payload, an empty response payload), so the
# core can be checked against the Noise protocol's own test vectors. A failed
# decryption raises `InvalidTag`; a low-order point raises `ValueError`.


@dataclass(frozen=True)
class NoiseMessage:
    """One handshake message written by the Noise core, and the state after it."""

    ephemeral: bytes
    """The sender's ephemeral public key (token e)."""
    encrypted_static: bytes
    """The sender's encrypted static public key (token s); empty in the response."""
    encrypted_payload: bytes
    """The encrypted payload."""
    chain: bytes = field(repr=False)
    """The chaining key after the message."""
    hash: bytes = field(repr=False)
    """The handshake hash after the message."""


def write_initiation(
    static_private: bytes,
    responder_public: bytes,
    ephemeral_private: bytes,
    payload: bytes,
    prologue: bytes = IDENTIFIER,
) -> NoiseMessage:
    """<- s, then -> e, es, s, ss, and the payload."""
    c, h = initial_state(prologue)
    h = hash_(h, responder_public)
    e = DHKey(ephemeral_private)
    e_pub = e.public
    (c,) = kdf(c, e_pub, 1)
    h = hash_(h, e_pub)
    c, k = kdf(c, e.dh(responder_public), 2)
    enc_static = aead_encrypt(k, 0, static_key(static_private).public, h)
    h = hash_(h, enc_static)
    c, k = kdf(c, static_static(static_private, responder_public), 2)
    enc_payload = aead_encrypt(k, 0, payload, h)
    h = hash_(h, enc_payload)
    return NoiseMessage(e_pub, enc_static, enc_payload, c, h)


def read_initiation_static(
    static_private: bytes,
    static_public: bytes,
    ephemeral: bytes,
    encrypted_static: bytes,
    prologue: bytes = IDENTIFIER,
) -> tuple[bytes, bytes, bytes]:
    """The first half of `read_initiation`: e, es, s. (initiator's static public
    key, chaining key, hash), before any Diffie-Hellman with that key."""
    c, h = _responder_start(prologue, static_public)
    (c,) = kdf(c, ephemeral, 1)
    h = hash_(h, ephemeral)
    c, k = kdf(c, static_key(static_private).dh(ephemeral), 2)
    peer_public = aead_decrypt(k, 0, encrypted_static, h)
    return peer_public, c, hash_(h, encrypted_static)


def read_initiation_payload(
    chain: bytes, hash: bytes, static_static_secret: bytes, encrypted_payload: bytes
) -> tuple[bytes, bytes, bytes]:
    """The second half: ss (given as the secret, which never changes for a pair of
    keys), then the payload. (payload, chaining key, hash)."""
    c, k = kdf(chain, static_static_secret, 2)
    payload = aead_decrypt(k, 0, encrypted_payload, hash)
    return payload, c, hash_(hash, encrypted_payload)


def read_initiation(
    static_private: bytes,
    static_public: bytes,
    ephemeral: bytes,
    encrypted_static: bytes,
    encrypted_payload: bytes,
    prologue: bytes = IDENTIFIER,
) -> tuple[bytes, bytes, bytes, bytes]:
    """The responder's side of `write_initiation`: (initiator's static public
    key, payload, chaining key, hash)."""
    peer_public, c, h = read_initiation_static(
        static_private, static_public, ephemeral, encrypted_static, prologue
    )
    payload, c, h = read_initiation_payload(
        c, h, static_static(static_private, peer_public), encrypted_payload
    )
    return peer_public, payload, c, h


def write_response(
    chain: bytes,
    hash: bytes,
    ephemeral_private: bytes,
    initiator_ephemeral: bytes,
    initiator_public: bytes,
    psk: bytes,
    payload: bytes,
) -> NoiseMessage:
    """<- e, ee, se, psk, and the payload, from the state after the initiation."""
    c, h = chain, hash
    e = DHKey(ephemeral_private)
    e_pub = e.public
    (c,) = kdf(c, e_pub, 1)
    h = hash_(h, e_pub)
    (c,) = kdf(c, e.dh(initiator_ephemeral), 1)
    (c,) = kdf(c, e.dh(initiator_public), 1)
    c, tau, k = kdf(c, psk, 3)
    h = hash_(h, tau)
    enc_payload = aead_encrypt(k, 0, payload, h)
    h = hash_(h, enc_payload)
    return NoiseMessage(e_pub, b"", enc_payload, c, h)


def read_response(
    chain: bytes,
    hash: bytes,
    ephemeral_private: bytes,
    static_private: bytes,
    ephemeral: bytes,
    encrypted_payload: bytes,
    psk: bytes,
) -> tuple[bytes, bytes, bytes]:
    """The initiator's side of `write_response`: (payload, chaining key, hash)."""
    c, h = chain, hash
    (c,) = kdf(c, ephemeral, 1)
    h = hash_(h, ephemeral)
    (c,) = kdf(c, dh(ephemeral_private, ephemeral), 1)
    (c,) = kdf(c, static_key(static_private).dh(ephemeral), 1)
    c, tau, k = kdf(c, psk, 3)
    h = hash_(h, tau)
    payload = aead_decrypt(k, 0, encrypted_payload, h)
    h = hash_(h, encrypted_payload)
    return payload, c, h


def split(chain: bytes) -> tuple[bytes, bytes]:
    """Noise's Split(): (the initiator's sending key, the responder's sending key)."""
    first, second = kdf(chain, b"", 2)
    return first, second


# -- WireGuard's handshake messages ------------------------------------------------


@dataclass
class InitiatorState:
    """What the initiator keeps between sending the initiation and the response."""

    chain: bytes = field(repr=False)
    hash: bytes = field(repr=False)
    ephemeral_private: bytes = field(repr=False)
    local_index: int


def create_initiation(
    static_private: bytes,
    peer_public: bytes,
    ephemeral_private: bytes,
    sender_index: int,
    unix_time: float,
    *,
    whiten: bool = True,
) -> tuple[Initiation, InitiatorState]:
    """An initiation whose timestamp is ``unix_time`` (wall-clock seconds: a responder
    refuses one that is not later than the last it accepted from us, even across restarts),
    its nanoseconds whitened as the kernel's tai64n_now does (`crypto.TIMESTAMP_GRANULARITY_NS`).
    ``whiten=False`` keeps them exact: for a tester that sends one key's initiations closer
    together than that granularity, each of which must still be later than the last."""
    m = write_initiation(static_private, peer_public, ephemeral_private, tai64n(unix_time, whiten=whiten))
    msg = Initiation(sender_index, m.ephemeral, m.encrypted_static, m.encrypted_payload)
    msg = replace(msg, mac1=mac(mac1_key(peer_public), msg.body()))
    return msg, InitiatorState(m.chain, m.hash, ephemeral_private, sender_index)


@dataclass(frozen=True)
class ConsumedInitiation:
    """A verified initiation: who sent it, when (TAI64N), and the state to answer it."""

    peer_public: bytes
    timestamp: bytes
    sender_index: int
    peer_ephemeral: bytes
    chain: bytes = field(repr=False)
    hash: bytes = field(repr=False)


def consume_initiation(
    static_private: bytes,
    msg: Initiation,
    *,
    mac1_checked: bool = False,
    lookup: Callable[[bytes], bytes | None] | None = None,
) -> ConsumedInitiation:
    """The responder's reading of an initiation. ``mac1_checked``: the caller's gate
    already verified MAC1 (a device checks it before any Diffie-Hellman).

    ``lookup``: called with the initiator's static key as soon as it is decrypted, it
    gives the static-static secret precomputed for that peer, zeros if none could be
    (a low-order key), or None if the key is no peer's: then `UnknownPeerError` is
    raised with no more work, neither the static-static Diffie-Hellman nor the
    timestamp's decryption. That is the order of the kernel's noise.c
    (wg_noise_handshake_consume_initiation: s decrypted, the peer looked up, its
    precomputed static-static mixed, then {t}) and of wireguard-go's noise-protocol.go
    (ConsumeMessageInitiation). Without ``lookup``, any key is taken and the secret
    computed (cached: `crypto.static_static`)."""
    static_public = static_key(static_private).public
    if not mac1_checked:
        _check_mac1(msg.body(), msg.mac1, static_public)
    try:
        peer_public, c, h = read_initiation_static(
            static_private, static_public, msg.ephemeral, msg.encrypted_static
        )
    except (InvalidTag, ValueError) as exc:  # ValueError: a low-order ephemeral gives an all-zero secret
        raise HandshakeError(f"initiation does not decrypt: {type(exc).__name__}") from None
    secret = _static_static_for(static_private, peer_public, lookup)
    try:
        timestamp, c, h = read_initiation_payload(c, h, secret, msg.encrypted_timestamp)
    except InvalidTag:
        raise HandshakeError("initiation does not decrypt: its timestamp") from None
    return ConsumedInitiation(peer_public, timestamp, msg.sender, msg.ephemeral, c, h)


def _static_static_for(
    static_private: bytes, peer_public: bytes, lookup: Callable[[bytes], bytes | None] | None
) -> bytes:
    if lookup is None:
        try:
            return static_static(static_private, peer_public)
        except ValueError:
            raise HandshakeError("initiation from a low-order key") from None
    found = lookup(peer_public)
    if found is None:
        raise UnknownPeerError("initiation from a key that is no peer's")
    if hmac.compare_digest(found, _NO_SECRET):  # as the kernel's mix_precomputed_dh refuses zeros
        raise HandshakeError("initiation from a low-order key")
    return found


def create_response(
    init: ConsumedInitiation, ephemeral_private: bytes, sender_index: int, psk: bytes = bytes(32)
) -> tuple[Response, Keypair]:
    m = write_response(
        init.chain, init.hash, ephemeral_private, init.peer_ephemeral, init.peer_public, psk, b""
    )
    body = Response(sender_index, init.sender_index, m.ephemeral, m.encrypted_payload).body()
    msg = Response(
        sender_index,
        init.sender_index,
        m.ephemeral,
        m.encrypted_payload,
        mac(mac1_key(init.peer_public), body),
    )
    receive, send = split(m.chain)
    return msg, Keypair(send, receive, sender_index, init.sender_index)


def consume_response(
    state: InitiatorState, static_private: bytes, peer_public: bytes, msg: Response, psk: bytes = bytes(32)
) -> Keypair:
    _check_mac1(msg.body(), msg.mac1, static_key(static_private).public)
    if msg.receiver != state.local_index:
        raise HandshakeError("response for another handshake")
    try:
        _, c, _ = read_response(
            state.chain,
            state.hash,
            state.ephemeral_private,
            static_private,
            msg.ephemeral,
            msg.encrypted_nothing,
            psk,
        )
    except (InvalidTag, ValueError) as exc:
        raise HandshakeError(f"response does not decrypt: {type(exc).__name__}") from None
    send, receive = split(c)
    return Keypair(send, receive, state.local_index, msg.sender)
