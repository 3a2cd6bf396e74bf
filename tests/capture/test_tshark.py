"""tshark with a WireGuard key log: the command and its parser (no tshark needed),
and a real tshark decrypting a capture built here from two pyref devices in
memory, with the initiator's key log, the responder's, or none."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.capture.tshark import decrypted_protocols, parse_protocols, tshark_argv
from harness.errors import InfraError
from harness.pyref.crypto import public_of
from harness.pyref.device import Device, Endpoint
from harness.pyref.ipv4 import echo_request
from harness.pyref.keylog import keylog_lines
from harness.targets.local import LocalTarget
from tests.support.pcap_build import V4_A, V4_B, ether, ipv4, pcap, udp

# tshark 4.0.17 (Debian 12) on a capture of a veth while pyref (the initiator) pinged wireguard-go
# three times through the tunnel, with pyref's key log:
#   tshark -n -r cap.pcap -o wg.keylog_file:all.keys -o wg.dissect_packet:TRUE
#          -o udp.try_heuristic_first:TRUE -T fields -e frame.protocols
REAL_OUTPUT = """\
eth:ethertype:ip:udp:wg
eth:ethertype:ip:udp:wg
eth:ethertype:ip:udp:wg:ip:icmp:data
eth:ethertype:ip:udp:wg:ip:icmp:data
eth:ethertype:ip:udp:wg:ip:icmp:data
eth:ethertype:ip:udp:wg:ip:icmp:data
eth:ethertype:ip:udp:wg:ip:icmp:data
eth:ethertype:ip:udp:wg:ip:icmp:data
"""


def test_parse_real_output() -> None:
    got = parse_protocols(REAL_OUTPUT)
    assert len(got) == 8 and got[:2] == ["eth:ethertype:ip:udp:wg"] * 2
    assert all(p.endswith(":wg:ip:icmp:data") for p in got[2:])
    assert parse_protocols("") == []


def test_command_names_the_key_log_or_an_empty_one() -> None:
    argv = tshark_argv("/x/cap.pcap", "/x/a.keys")
    assert argv[:4] == ["tshark", "-n", "-r", "/x/cap.pcap"]
    assert "wg.keylog_file:/x/a.keys" in argv and "wg.dissect_packet:TRUE" in argv
    assert argv[-2:] == ["-e", "frame.protocols"]
    # None is an empty key log, not tshark's default (which a user's preferences may set).
    assert "wg.keylog_file:" in tshark_argv("/x/cap.pcap", None)


def test_missing_tshark_is_one_line(tmp_path: Path) -> None:
    host = LocalTarget("here")
    host.tools = {"tshark": str(tmp_path / "no-tshark")}
    with pytest.raises(InfraError) as caught:
        decrypted_protocols(str(tmp_path / "cap.pcap"), None, host=host)
    assert (
        str(caught.value) == f"here: {tmp_path}/no-tshark is not installed (Debian: apt-get install tshark)"
    )


@pytest.fixture
def tshark() -> None:
    if shutil.which("tshark") is None:
        reason = "needs tshark (Debian package tshark)"
        if os.environ.get("WGH_REQUIRE_INTEGRATION") == "1":
            pytest.fail(reason + " (WGH_REQUIRE_INTEGRATION=1)", pytrace=False)
        pytest.skip(reason)


A_EP: Endpoint = ("198.18.0.1", 51820)
B_EP: Endpoint = ("198.18.0.2", 51821)


def _pinged_capture(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A ping each way through two pyref devices, as captured on their link;
    and the key logs of both sides."""
    ka, kb = os.urandom(32), os.urandom(32)
    psk = os.urandom(32)
    a = Device(ka, os.urandom, record_secrets=True)
    b = Device(kb, os.urandom, record_secrets=True)
    a.add_peer(public_of(kb), ["198.19.0.2/32"], B_EP, psk=psk)
    b.add_peer(public_of(ka), ["198.19.0.1/32"], A_EP, psk=psk)
    frames: list[tuple[float, bytes]] = []

    def wire(datagram: bytes, from_a: bool) -> None:
        src, dst, sport, dport = (V4_A, V4_B, 51820, 51821) if from_a else (V4_B, V4_A, 51821, 51820)
        frames.append((len(frames) * 0.001, ether(ipv4(udp(sport, dport, datagram), src=src, dst=dst))))

    flights = [(d, True) for d, _ in a.send_packet(echo_request("198.19.0.1", "198.19.0.2", 7, 1), 0.0)]
    while flights:  # initiation, response, a's ping, b's ping
        datagram, from_a = flights.pop(0)
        wire(datagram, from_a)
        receiver, sender = (b, A_EP) if from_a else (a, B_EP)
        replies, packets = receiver.receive_datagram(datagram, sender, 0.0)
        flights += [(d, not from_a) for d, _ in replies]
        if packets and from_a:  # b got the ping: b pings back
            flights += [
                (d, False) for d, _ in b.send_packet(echo_request("198.19.0.2", "198.19.0.1", 7, 2), 0.0)
            ]
    capture = tmp_path / "cap.pcap"
    capture.write_bytes(pcap(frames))
    logs = []
    for name, device in (("a", a), ("b", b)):
        path = tmp_path / f"{name}.keys"
        path.write_text("".join(keylog_lines(s) for s in device.drain_secrets()))
        logs.append(path)
    return capture, logs[0], logs[1]


def test_tshark_decrypts_with_either_sides_key_log_and_not_without(tshark: None, tmp_path: Path) -> None:
    capture, initiator, responder = _pinged_capture(tmp_path)
    for keylog in (initiator, responder):
        protocols = decrypted_protocols(str(capture), str(keylog))
        assert [p.rsplit(":udp:", 1)[1] for p in protocols] == [
            "wg", "wg", "wg:ip:icmp:data", "wg:ip:icmp:data",
        ], keylog.name  # fmt: skip
    assert all(p.endswith(":udp:wg") for p in decrypted_protocols(str(capture), None))
