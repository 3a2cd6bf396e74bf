"""pyref's handshake secrets for key logs, in memory (no I/O): every initiation
and every response a device makes is recorded with the ephemeral private key
that is in it on the wire, and the key-log text is Wireshark's format."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

from harness.pyref.crypto import public_of
from harness.pyref.device import Device
from harness.pyref.ipv4 import echo_request
from harness.pyref.keylog import HandshakeSecrets, keylog_lines
from harness.pyref.messages import parse_initiation, parse_response
from harness.pyref.noise import read_initiation, write_initiation, write_response
from harness.pyref.transport import REKEY_TIMEOUT
from tests.support.pyref_wire import A_EP, B_EP

PSK = bytes(range(32))


def _recording_pair() -> tuple[Device, Device, bytes, bytes]:
    ka, kb = os.urandom(32), os.urandom(32)
    a = Device(ka, os.urandom, record_secrets=True)
    b = Device(kb, os.urandom, record_secrets=True)
    a.add_peer(public_of(kb), ["198.19.0.2/32"], B_EP, psk=PSK)
    b.add_peer(public_of(ka), ["198.19.0.1/32"], A_EP, psk=PSK)
    return a, b, ka, kb


def test_initiator_and_responder_record_the_ephemerals_on_the_wire() -> None:
    a, b, ka, kb = _recording_pair()
    [(init_wire, _)] = a.send_packet(echo_request("198.19.0.1", "198.19.0.2", 1, 1), 0.0)
    [mine] = a.drain_secrets()
    init = parse_initiation(init_wire)
    assert mine == HandshakeSecrets(ka, public_of(kb), mine.local_ephemeral_private, PSK, initiator=True)
    assert public_of(mine.local_ephemeral_private) == init.ephemeral
    # The recorded keys make the same ephemeral and encrypted static key as the initiation
    # (the rest of it covers the timestamp, which is not a secret and not recorded).
    again = write_initiation(
        mine.local_static_private, mine.remote_static_public, mine.local_ephemeral_private, b""
    )
    assert (again.ephemeral, again.encrypted_static) == (init.ephemeral, init.encrypted_static)
    assert a.drain_secrets() == [] and b.drain_secrets() == []

    [(resp_wire, _)] = b.receive_datagram(init_wire, A_EP, 0.0)[0]
    [theirs] = b.drain_secrets()
    resp = parse_response(resp_wire)
    assert theirs == HandshakeSecrets(kb, public_of(ka), theirs.local_ephemeral_private, PSK, initiator=False)
    assert public_of(theirs.local_ephemeral_private) == resp.ephemeral
    # From the responder's record and the initiation alone, the response is made again to the byte:
    # what Wireshark does with a responder's key log.
    peer_public, _, chain, hash_ = read_initiation(
        kb, public_of(kb), init.ephemeral, init.encrypted_static, init.encrypted_timestamp
    )
    remade = write_response(
        chain, hash_, theirs.local_ephemeral_private, init.ephemeral, peer_public, theirs.preshared_key, b""
    )
    assert (remade.ephemeral, remade.encrypted_payload) == (resp.ephemeral, resp.encrypted_nothing)

    a.receive_datagram(resp_wire, B_EP, 0.0)  # completes the handshake: no new message, no new record
    assert a.drain_secrets() == []


def test_every_retry_is_recorded_with_its_own_ephemeral() -> None:
    a, _, _, _ = _recording_pair()
    [(first, _)] = a.send_packet(echo_request("198.19.0.1", "198.19.0.2", 1, 1), 0.0)
    [(second, _)] = a.tick(REKEY_TIMEOUT + 1.0)  # the initiation was lost: sent again with a new ephemeral
    records = a.drain_secrets()
    wire = [parse_initiation(first).ephemeral, parse_initiation(second).ephemeral]
    assert [public_of(r.local_ephemeral_private) for r in records] == wire and wire[0] != wire[1]


def test_nothing_is_recorded_unless_asked() -> None:
    ka, kb = os.urandom(32), os.urandom(32)
    a = Device(ka, os.urandom)
    a.add_peer(public_of(kb), ["198.19.0.2/32"], B_EP)
    assert a.send_packet(echo_request("198.19.0.1", "198.19.0.2", 1, 1), 0.0)
    assert a.drain_secrets() == []


def test_keylog_lines_are_wiresharks_format() -> None:
    secrets = HandshakeSecrets(bytes(32), b"\x01" * 32, b"\x02" * 32, bytes(32), initiator=True)
    text = keylog_lines(secrets)
    assert text == (
        "LOCAL_STATIC_PRIVATE_KEY = AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
        "REMOTE_STATIC_PUBLIC_KEY = AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n"
        "LOCAL_EPHEMERAL_PRIVATE_KEY = AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\n"
        "PRESHARED_KEY = AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
    )
    values = [line.split(" = ")[1] for line in text.splitlines()]
    assert [base64.b64decode(v) for v in values] == [bytes(32), b"\x01" * 32, b"\x02" * 32, bytes(32)]
    assert "\\x02" not in repr(secrets)  # private keys stay out of logs and tracebacks


def test_a_key_log_that_cannot_be_opened_stops_the_command_before_anything_exists(tmp_path: Path) -> None:
    env = dict(os.environ, PYREF_KEYLOG=str(tmp_path / "missing" / "wg0.keys"))
    done = subprocess.run(
        [sys.executable, "-m", "harness", "pyref", "-f", "wghkeylog0"],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"wgharness pyref: wghkeylog0: PYREF_KEYLOG: {tmp_path}/missing/wg0.keys: No such file or directory"
    ]
    assert not Path("/var/run/wireguard/wghkeylog0.sock").exists()
