"""pyref's handshake: in memory between two pyref peers, and for real against
wireguard-go (which must accept our initiation, answer it, and count the
session once our keepalive arrives)."""

from __future__ import annotations

import json
import os
import sys

import pytest

from harness.impl.config import InterfaceConfig, PeerConfig
from harness.impl.wireguard_go import WireguardGo
from harness.keys import KeyPair, decode_key
from harness.pyref.crypto import aead_decrypt, aead_encrypt, hash_, public_of, static_static, tai64n
from harness.pyref.messages import (
    INITIATION_LEN,
    RESPONSE_LEN,
    MessageError,
    parse_initiation,
    parse_response,
    parse_transport,
)
from harness.pyref.noise import (
    INITIAL_CHAIN_KEY,
    INITIAL_HASH,
    HandshakeError,
    UnknownPeerError,
    consume_initiation,
    consume_response,
    create_initiation,
    create_response,
)
from harness.run.orchestrator import new_instance_id
from harness.targets.netns import NetnsTarget


def test_initial_chain_key_and_hash() -> None:
    # Ci = HASH(CONSTRUCTION), Hi = HASH(Ci || IDENTIFIER): WireGuard paper, section 5.4.2.
    assert hash_(b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s") == INITIAL_CHAIN_KEY
    assert hash_(INITIAL_CHAIN_KEY, b"WireGuard v1 zx2c4 Jason@zx2c4.com") == INITIAL_HASH
    assert len(INITIAL_CHAIN_KEY) == len(INITIAL_HASH) == 32


def test_tai64n_grows_with_time() -> None:
    assert len(tai64n(1.5)) == 12 and tai64n(1.5) < tai64n(1.6) < tai64n(2.0)
    assert tai64n(0)[:8] == ((1 << 62) + 10).to_bytes(8, "big")


def test_initiation_timestamps_are_whitened_unless_asked_not_to() -> None:
    """An initiation's TAI64N nanoseconds are rounded down to 2^24 ns, as the kernel's
    tai64n_now (noise.c) and wireguard-go's tai64n.go do; whiten=False is for a tester."""
    a, b = _pair()
    at = 1_800_000_000.123456  # 123_456_000 ns (to float precision) = 0x075BC... -> 0x07000000
    msg, _ = create_initiation(a, public_of(b), os.urandom(32), 1, at)
    stamp = consume_initiation(b, parse_initiation(msg.encode())).timestamp
    assert stamp == tai64n(1_800_000_000.0)[:8] + (0x07000000).to_bytes(4, "big")
    exact, _ = create_initiation(a, public_of(b), os.urandom(32), 1, at, whiten=False)
    assert consume_initiation(b, parse_initiation(exact.encode())).timestamp == tai64n(at)
    assert 123_455_000 < int.from_bytes(tai64n(at)[8:], "big") < 123_457_000


def _pair() -> tuple[bytes, bytes]:
    return os.urandom(32), os.urandom(32)


def test_an_unknown_initiator_is_refused_before_the_static_static_dh() -> None:
    """The kernel's noise.c (wg_noise_handshake_consume_initiation) and wireguard-go's
    noise-protocol.go (ConsumeMessageInitiation): the initiator's static key is
    decrypted, the peer looked up, and only a known peer's precomputed static-static
    secret is mixed before the timestamp is decrypted. ``lookup`` is where the
    responder's peers come in; `crypto.static_static`'s cache shows no DH was asked for."""
    a, b = _pair()
    msg, _ = create_initiation(a, public_of(b), os.urandom(32), 3, 1_800_000_000.0)
    asked: list[bytes] = []

    def stranger(key: bytes) -> bytes | None:
        asked.append(key)
        return None

    before = static_static.cache_info()
    with pytest.raises(UnknownPeerError):
        consume_initiation(b, msg, lookup=stranger)
    assert asked == [public_of(a)]  # decrypted first, then looked up
    after = static_static.cache_info()
    assert (after.hits, after.misses) == (before.hits, before.misses)  # no static-static computed
    # A known peer: its precomputed secret gives what computing it gives.
    known = consume_initiation(b, msg, lookup=lambda key: static_static(b, key))
    assert known == consume_initiation(b, msg)
    with pytest.raises(HandshakeError, match="low-order") as refused:
        consume_initiation(b, msg, lookup=lambda key: bytes(32))  # no secret: a low-order key
    assert not isinstance(refused.value, UnknownPeerError)
    with pytest.raises(HandshakeError, match="timestamp"):
        consume_initiation(b, msg, lookup=lambda key: os.urandom(32))  # a wrong secret


def test_two_pyref_peers_agree_on_transport_keys() -> None:
    a, b = _pair()
    msg, state = create_initiation(a, public_of(b), os.urandom(32), 7, 1_800_000_000.0)
    wire = msg.encode()
    assert len(wire) == INITIATION_LEN
    seen = consume_initiation(b, parse_initiation(wire))
    assert seen.peer_public == public_of(a) and seen.timestamp == tai64n(1_800_000_000.0)
    resp, b_keys = create_response(seen, os.urandom(32), 9)
    assert len(resp.encode()) == RESPONSE_LEN
    a_keys = consume_response(state, a, public_of(b), parse_response(resp.encode()))
    assert (a_keys.send_key, a_keys.receive_key) == (b_keys.receive_key, b_keys.send_key)
    assert (a_keys.local_index, a_keys.remote_index, b_keys.local_index, b_keys.remote_index) == (7, 9, 9, 7)
    packet = aead_encrypt(a_keys.send_key, 0, b"hello", b"")
    assert aead_decrypt(b_keys.receive_key, 0, packet, b"") == b"hello"


def test_tampering_is_caught() -> None:
    a, b = _pair()
    msg, state = create_initiation(a, public_of(b), os.urandom(32), 1, 1.0)
    wire = bytearray(msg.encode())
    wire[40] ^= 1  # inside the encrypted static key: mac1 no longer matches
    with pytest.raises(HandshakeError, match="mac1"):
        consume_initiation(b, parse_initiation(bytes(wire)))
    with pytest.raises(HandshakeError, match="mac1"):
        consume_initiation(os.urandom(32), parse_initiation(msg.encode()))  # not meant for us
    seen = consume_initiation(b, parse_initiation(msg.encode()))
    resp, _ = create_response(seen, os.urandom(32), 2, psk=os.urandom(32))
    with pytest.raises(HandshakeError, match="does not decrypt"):
        consume_response(state, a, public_of(b), resp)  # the responder used a preshared key we lack
    for bad in (b"", b"\x01", bytes(148), b"\x01\x00\x00\x00" + bytes(100)):
        with pytest.raises(MessageError):
            parse_initiation(bad)
    with pytest.raises(MessageError):
        parse_transport(b"\x04\x00\x00\x00" + bytes(20))


def test_handshake_with_wireguard_go(no_leftovers: None) -> None:
    tag = new_instance_id()
    host = NetnsTarget("probe", f"wgh-{tag}-probe")
    driver = WireguardGo(host, f"wgh{tag}t")
    ours, theirs = KeyPair.generate(), KeyPair.generate()
    try:
        host.setup()
        driver.check()
        driver.up(
            InterfaceConfig(
                ifname=driver.ifname,
                private_key=theirs.private,
                listen_port=51820,
                addresses=("198.19.99.1/24",),
                mtu=1420,
                peers=(PeerConfig(public_key=ours.public, allowed_ips=("198.19.99.2/32",)),),
            )
        )
        done = host.run(
            [sys.executable, "-m", "harness.pyref.io.probe", "--private", ours.private,
             "--peer", theirs.public, "--port", "51820", "--ping", "198.19.99.2", "198.19.99.1"],
            timeout=30,
        )  # fmt: skip
        result = json.loads(done.stdout)
        assert done.status == 0 and result["ok"], done.stdout + done.stderr
        assert result["ping_ms"] > 0  # an ICMP echo went through wireguard-go and its answer came back to us
        peer = driver.stats().peer(ours.public)
        assert peer is not None and peer.latest_handshake > 0
        assert peer.endpoint is not None and peer.endpoint.startswith("127.0.0.1:")
        assert peer.rx_bytes >= 148 + 32  # our initiation and keepalive were counted
        assert decode_key(ours.public) == public_of(decode_key(ours.private))
    finally:
        driver.down()
        host.teardown()
