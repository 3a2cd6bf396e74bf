"""Decryptable captures, for real (root): a lab of two network namespaces joined
by a veth, pyref on one end and wireguard-go on the other, pyref writing its
key log. tcpdump captures the veth while a fresh tunnel carries pings and a
short TCP transfer; tshark with pyref's key log decrypts every data message
in it (inner ICMP and TCP), and without it decrypts none. Once with pyref
sending the initiation, once with pyref answering it: Wireshark needs the
ephemeral private key of the side whose static private key it has."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.capture.tcpdump import UDP_SEGMENTATION, Capture, feature_state
from harness.capture.tshark import decrypted_protocols
from harness.errors import InfraError
from harness.lab.spec import load_lab
from harness.parsers.iperf import server_argv
from harness.parsers.pcap import udp_packets, wg_type
from harness.run.orchestrator import EndRuntime, LabInstance
from harness.run.throughput import wait_for_server
from harness.targets.local import LocalTarget

LINK = {"a": "198.18.11.1", "b": "198.18.11.2"}
LAB = f"""
[lab]
name = "keylog"
[hosts.a]
target = "netns"
[hosts.b]
target = "netns"
[[links]]
a = "a"
b = "b"
a_address = "{LINK["a"]}/24"
b_address = "{LINK["b"]}/24"
[tunnel]
mtu = 1420
handshake_timeout = 10
[[tunnel.ends]]
host = "a"
impl = "pyref"
address = "198.19.11.1/24"
[[tunnel.ends]]
host = "b"
impl = "wireguard-go"
address = "198.19.11.2/24"
[suites.throughput]
duration = 1
"""
IPERF_PORT = 5201


@pytest.fixture
def lab(tmp_path: Path, no_leftovers: None) -> Iterator[LabInstance]:
    path = tmp_path / "keylog.toml"
    path.write_text(LAB)
    instance = LabInstance(load_lab(path), keylog_dir=str(tmp_path / "keys"))
    instance.up()
    try:
        yield instance
    finally:
        instance.down()


def _tcp_transfer(client: EndRuntime, server: EndRuntime) -> None:
    """256 KiB over TCP through the tunnel (iperf3, server first)."""
    process = server.host.start(server_argv(IPERF_PORT, bind=server.inner_ip))
    try:
        wait_for_server(server.host, process, IPERF_PORT)
        client.host.check(
            ["iperf3", "--client", server.inner_ip, "--port", str(IPERF_PORT), "--bytes", "256K"], timeout=30
        )
    finally:
        process.kill()


# `ethtool -k` of a veth (Debian 12, kernel 6.1; lines cut).
ETHTOOL_K = """\
Features for wghtst0:
rx-checksumming: on
tx-checksumming: on
\ttx-checksum-ipv4: off [fixed]
\ttx-checksum-ip-generic: on
tcp-segmentation-offload: on
tx-gso-robust: off [fixed]
tx-udp_tnl-segmentation: on
tx-udp_tnl-csum-segmentation: on
tx-udp-segmentation: on
rx-udp_tunnel-port-offload: off [fixed]
rx-udp-gro-forwarding: off
"""


def test_feature_state_from_ethtool() -> None:
    assert feature_state(ETHTOOL_K, UDP_SEGMENTATION) is True
    turned_off = ETHTOOL_K.replace("tx-udp-segmentation: on", "tx-udp-segmentation: off")
    assert feature_state(turned_off, UDP_SEGMENTATION) is False
    assert feature_state(ETHTOOL_K, "rx-udp-gro-forwarding") is False
    assert feature_state(ETHTOOL_K, "tx-checksum-ipv4") is None  # fixed: cannot be changed
    assert feature_state(ETHTOOL_K, "no-such-feature") is None


@pytest.mark.parametrize("pyref_role", ["initiator", "responder"])
def test_capture_decrypts_with_pyrefs_key_log_only(lab: LabInstance, tmp_path: Path, pyref_role: str) -> None:
    pyref, go = lab.end("a"), lab.end("b")
    first, second = (pyref, go) if pyref_role == "initiator" else (go, pyref)
    host, link = lab.hosts["a"], lab.link_ifname(0, "a")
    with Capture(host, link, str(tmp_path / "link.pcap")) as capture:
        lab.rebuild_tunnel()  # fresh processes, no session: the first packet starts a handshake
        first.host.check(first.host.ping_argv(second.inner_ip, count=3, interval=0.2, wait=5))
        second.host.check(second.host.ping_argv(first.inner_ip, count=2, interval=0.2, wait=5))
        _tcp_transfer(first, second)
        # pyref sends with UDP GSO: the capture holds whole datagrams because it turned that off.
        assert feature_state(host.check(["ethtool", "-k", link]).stdout, UDP_SEGMENTATION) is False
        data = capture.stop()
    assert not (tmp_path / "link.pcap").exists()
    assert not [pid for pid in host.pids() if b"tcpdump" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert feature_state(host.check(["ethtool", "-k", link]).stdout, UDP_SEGMENTATION) is True  # put back

    packets = list(udp_packets(data))
    kinds = [wg_type(p.payload) for p in packets]
    # One handshake after the restart, begun by the side that sent first.
    assert [p.src for p, k in zip(packets, kinds, strict=True) if k == 1] == [LINK[first.spec.host]]
    assert kinds.count(2) == 1 and kinds.count(4) > 50

    pcap_path, keylog_path = tmp_path / "link.pcap", tmp_path / "lab.keys"
    pcap_path.write_bytes(data)
    keylog_path.write_bytes(lab.keylog())
    protocols = decrypted_protocols(str(pcap_path), str(keylog_path))
    assert len(protocols) == len(packets)
    assert any(":wg:ip:icmp" in p for p in protocols) and any(":wg:ip:tcp" in p for p in protocols)
    # Every data message is decrypted, not only some (a keepalive carries no packet).
    data_messages = [
        proto
        for packet, kind, proto in zip(packets, kinds, protocols, strict=True)
        if kind == 4 and len(packet.payload) > 32
    ]
    assert data_messages and all(":wg:ip:" in p for p in data_messages), sorted(set(data_messages))

    without = decrypted_protocols(str(pcap_path), None)
    assert len(without) == len(packets) and not [p for p in without if ":wg:ip" in p]


def test_capture_of_a_missing_interface_fails_in_one_line_and_leaves_nothing(
    integration: None, tmp_path: Path
) -> None:
    path = tmp_path / "x.pcap"
    for whole, reason in (
        (True, r"here: `ethtool -k wghnosuchif0` exited with 1: "),
        (
            False,
            r"here: waiting for tcpdump on wghnosuchif0 to listen: `tcpdump .*` \(pid \d+\) exited with 1 ",
        ),
    ):
        capture = Capture(LocalTarget("here"), "wghnosuchif0", str(path), whole_datagrams=whole)
        started = time.monotonic()
        with pytest.raises(InfraError) as caught:
            capture.start()
        assert time.monotonic() - started < 5
        assert re.match(reason, str(caught.value)) and "\n" not in str(caught.value)
        assert not capture.running and not path.exists()
