"""The classic pcap reader on files built here, byte by byte: both byte orders,
microsecond and nanosecond timestamps, the link types tcpdump writes, IPv4 and
IPv6; and which WireGuard message a UDP payload looks like."""

from __future__ import annotations

import struct

import pytest

from harness.parsers.pcap import (
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_RAW,
    PcapError,
    UdpPacket,
    udp_packets,
    wg_type,
)
from tests.support.pcap_build import MAC_A, ether, ipv4, ipv6, pcap, udp


def keepalive() -> bytes:
    return bytes([4, 0, 0, 0]) + struct.pack("<IQ", 7, 0) + bytes(16)


@pytest.mark.parametrize("order", ["<", ">"], ids=["little-endian", "big-endian"])
@pytest.mark.parametrize("nano", [False, True], ids=["usec", "nsec"])
def test_ethernet_ipv4_udp_in_either_byte_order_and_unit(order: str, nano: bool) -> None:
    data = pcap([(1_800_000_000.25, ether(ipv4(udp(51820, 51821, b"hello"))))], order=order, nano=nano)
    assert list(udp_packets(data)) == [
        UdpPacket(1_800_000_000.25, "198.18.0.1", "198.18.0.2", 51820, 51821, b"hello")
    ]


def test_ipv6_with_an_extension_header_and_vlan_tags() -> None:
    hop_by_hop = bytes([17, 0]) + bytes(6)  # next header UDP, length 0 (8 bytes)
    tags = struct.pack("!HH", 0x88A8, 100) + struct.pack("!HH", 0x8100, 200)
    frames = [
        (1.0, ether(ipv6(udp(1, 2, b"six")), 0x86DD)),
        (2.0, ether(ipv6(hop_by_hop + udp(3, 4, b"hop"), next_header=0), 0x86DD)),
        (3.0, ether(ipv4(udp(5, 6, b"tagged")), tags=tags)),
    ]
    got = list(udp_packets(pcap(frames)))
    assert [(p.src, p.dst, p.sport, p.payload) for p in got] == [
        ("2001:2:0:7::1", "2001:2:0:7::2", 1, b"six"),
        ("2001:2:0:7::1", "2001:2:0:7::2", 3, b"hop"),
        ("198.18.0.1", "198.18.0.2", 5, b"tagged"),
    ]


def test_raw_ip_and_linux_cooked_captures() -> None:
    datagram = ipv4(udp(7, 8, b"x"))
    sll = struct.pack("!HHH8sH", 0, 1, 6, MAC_A + b"\0\0", 0x0800) + datagram
    sll2 = struct.pack("!HHIHBB8s", 0x0800, 0, 3, 1, 0, 6, MAC_A + b"\0\0") + datagram
    for linktype, frame in ((LINKTYPE_RAW, datagram), (LINKTYPE_LINUX_SLL, sll), (LINKTYPE_LINUX_SLL2, sll2)):
        [packet] = udp_packets(pcap([(0.5, frame)], linktype))
        assert (packet.sport, packet.dport, packet.payload) == (7, 8, b"x"), linktype


def test_what_is_not_a_whole_udp_datagram_is_skipped() -> None:
    frames = [
        ether(ipv4(b"\0" * 20, proto=6)),  # TCP
        ether(ipv4(udp(1, 2, b"first part"), flags_fragment=0x2000)),  # more fragments follow
        ether(ipv4(b"rest", flags_fragment=0x0002)),  # a later fragment
        ether(ipv6(bytes([17, 0, 0, 1, 0, 0, 0, 0]) + udp(1, 2, b"frag"), next_header=44)),
        ether(b"\x00" * 28, ethertype=0x0806),  # ARP
        ether(ipv4(udp(9, 10, b"kept"))),
    ]
    got = list(udp_packets(pcap([(float(i), f) for i, f in enumerate(frames)])))
    assert [p.payload for p in got] == [b"kept"]


def test_ethernet_padding_is_not_payload() -> None:
    # A short frame is padded to 60 bytes on the wire: UDP's length says where the payload ends.
    frame = ether(ipv4(udp(1, 2, b"ab")))
    [packet] = udp_packets(pcap([(0.0, frame + bytes(60 - len(frame)))]))
    assert packet.payload == b"ab"


def test_not_pcap_and_cut_files_raise() -> None:
    whole = pcap([(0.0, ether(ipv4(udp(1, 2, b"abc"))))])
    assert len(list(udp_packets(whole))) == 1
    with pytest.raises(PcapError, match="not a classic pcap"):
        list(udp_packets(b"\x0a\x0d\x0d\x0a" + bytes(40)))  # pcapng
    with pytest.raises(PcapError, match="cut inside a record"):
        list(udp_packets(whole[:-1]))
    with pytest.raises(PcapError, match="cut inside the record header"):
        list(udp_packets(whole + bytes(5)))
    with pytest.raises(PcapError, match="link type 105"):
        list(udp_packets(pcap([], linktype=105)))
    assert list(udp_packets(pcap([]))) == []


def test_wg_type_by_layout() -> None:
    assert wg_type(bytes([1, 0, 0, 0]) + bytes(144)) == 1
    assert wg_type(bytes([2, 0, 0, 0]) + bytes(88)) == 2
    assert wg_type(bytes([3, 0, 0, 0]) + bytes(60)) == 3
    assert wg_type(keepalive()) == 4
    assert wg_type(keepalive() + bytes(1400)) == 4
    assert wg_type(bytes([1, 0, 0, 0]) + bytes(145)) is None  # an initiation has exactly 148 bytes
    assert wg_type(bytes([2, 0, 0, 0]) + bytes(87)) is None
    assert wg_type(keepalive()[:31]) is None  # shorter than a header and a tag
    assert wg_type(bytes([1, 0, 1, 0]) + bytes(144)) is None  # reserved bytes must be zero
    assert wg_type(bytes([5, 0, 0, 0]) + bytes(60)) is None
    assert wg_type(b"") is None and wg_type(b"\x04") is None
