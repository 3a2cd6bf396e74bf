"""Classic pcap files built byte by byte (shared by the pcap and tshark tests):
IPv4 and IPv6 headers with checksums left at zero, which readers do not check."""

from __future__ import annotations

import struct

from harness.parsers.pcap import LINKTYPE_ETHERNET

MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
V4_A, V4_B = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])
V6_A, V6_B = (
    bytes.fromhex("20010002000000070000000000000001"),
    bytes.fromhex("20010002000000070000000000000002"),
)


def pcap(
    records: list[tuple[float, bytes]],
    linktype: int = LINKTYPE_ETHERNET,
    order: str = "<",
    nano: bool = False,
) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)
    for ts, frame in records:
        seconds = int(ts)
        fraction = round((ts - seconds) * (1e9 if nano else 1e6))
        out += struct.pack(order + "IIII", seconds, fraction, len(frame), len(frame)) + frame
    return out


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def ipv4(
    payload: bytes, proto: int = 17, flags_fragment: int = 0x4000, src: bytes = V4_A, dst: bytes = V4_B
) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, flags_fragment, 64, proto, 0, src, dst
    )
    return header + payload


def ipv6(payload: bytes, next_header: int = 17) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), next_header, 64, V6_A, V6_B) + payload


def ether(ip: bytes, ethertype: int = 0x0800, tags: bytes = b"") -> bytes:
    return MAC_B + MAC_A + tags + struct.pack("!H", ethertype) + ip
