"""A tunnel MTU other than 1420, for real (root): a lab of two namespaces
joined by a veth, pyref on one end and wireguard-go on the other, the lab's
tunnel MTU set on both interfaces (the drivers' `ip link set IF mtu N` after
the program started). Pings of the largest IPv4 size that fits (MTU − 28)
cross both ways with DF set, and one byte more fails at the sender (ping's
"message too long"). Then the MTU of pyref's interface is changed while it
runs, and a capture of its veth shows it padding to the new MTU: the outer
UDP payload of every data message it sends is 32 bytes of header and tag,
the packet, and the padding the kernel's calculate_skb_padding (src/send.c)
gives for the new MTU; never more than the MTU + 32."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.capture.tcpdump import Capture
from harness.lab.spec import load_lab
from harness.parsers.pcap import udp_packets, wg_type
from harness.pyref.transport import padding_length
from harness.run.orchestrator import LabInstance

LINK = {"a": "198.18.12.1", "b": "198.18.12.2"}
INNER = {"a": "198.19.12.1", "b": "198.19.12.2"}
IPV4_ICMP = 28  # the IPv4 and ICMP echo headers around ping's payload


def lab_text(mtu: int) -> str:
    return f"""
[lab]
name = "mtu"
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
mtu = {mtu}
handshake_timeout = 10
[[tunnel.ends]]
host = "a"
impl = "pyref"
address = "{INNER["a"]}/24"
[[tunnel.ends]]
host = "b"
impl = "wireguard-go"
address = "{INNER["b"]}/24"
[suites.throughput]
duration = 1
"""


@pytest.fixture(params=[(1280, 1380), (1380, 1300)], ids=["1280-then-1380", "1380-then-1300"])
def lab(request: pytest.FixtureRequest, tmp_path: Path, no_leftovers: None) -> Iterator[LabInstance]:
    path = tmp_path / "mtu.toml"
    path.write_text(lab_text(request.param[0]))
    instance = LabInstance(load_lab(path))
    instance.up()
    try:
        yield instance
    finally:
        instance.down()


def ping(lab: LabInstance, src: str, dst: str, size: int) -> tuple[bool, str]:
    """Two pings of ``size`` payload bytes with DF set (``-M do``): answered?, and what ping said."""
    argv = ["ping", "-M", "do", "-c", "2", "-i", "0.2", "-W", "5", "-s", str(size), INNER[dst]]
    result = lab.hosts[src].run(argv, timeout=30)
    return result.ok, result.stdout + result.stderr


def pyref_sealed_lengths(lab: LabInstance, tmp_path: Path, sizes: list[int]) -> list[int]:
    """The UDP payload lengths of the data messages pyref (host a) sends while pinging b
    with each of ``sizes`` (two pings each, DF set), from a capture of a's veth."""
    with Capture(lab.hosts["a"], lab.link_ifname(0, "a"), str(tmp_path / "a.pcap")) as capture:
        for size in sizes:
            ok, said = ping(lab, "a", "b", size)
            assert ok, said
        data = capture.stop()
    return [
        len(p.payload)
        for p in udp_packets(data)
        if p.src == LINK["a"] and wg_type(p.payload) == 4 and len(p.payload) > 32  # not keepalives
    ]


def expected(sizes: list[int], mtu: int) -> list[int]:
    """Per ping (two of each size): header and tag, the IP packet, the kernel's padding."""
    return [32 + n + padding_length(n, mtu) for s in sizes for n in [s + IPV4_ICMP] * 2]


def test_tunnel_mtu_from_the_lab_and_followed_at_runtime(
    lab: LabInstance, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    start, changed = request.node.callspec.params["lab"]
    largest = start - IPV4_ICMP
    for src, dst in (("a", "b"), ("b", "a")):
        ok, said = ping(lab, src, dst, largest)
        assert ok, f"{src} -> {dst}, {largest} bytes: {said}"
        ok, said = ping(lab, src, dst, largest + 1)
        assert not ok and "message too long" in said, f"{src} -> {dst}, {largest + 1} bytes: {said}"

    # Two sizes per MTU: the packet that fills it, and one 3 bytes shorter, which the MTU
    # caps unless the MTU is a multiple of 16 (1280 is: then no packet that fits tells
    # 1280 from 1420 by its padding, and only the runtime change below does).
    at_start = [largest, largest - 3]
    assert pyref_sealed_lengths(lab, tmp_path, at_start) == expected(at_start, start)

    pyref_if = lab.tunnel_ifname(0)
    lab.hosts["a"].check(["ip", "link", "set", "dev", pyref_if, "mtu", str(changed)])
    after = [changed - IPV4_ICMP, changed - IPV4_ICMP - 3]
    # The test can fail: padding to the old MTU (or the default) would give other lengths.
    assert expected(after, changed) != expected(after, start)
    assert expected(after, changed) != expected(after, 1420)
    lengths = pyref_sealed_lengths(lab, tmp_path, after)
    assert lengths == expected(after, changed)
    assert max(lengths) <= changed + 32
