"""Just enough IPv4 and ICMP to send a ping through a tunnel and recognise the
answer (RFC 791, RFC 792). Pure functions."""

from __future__ import annotations

import ipaddress
import struct


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(src: str, dst: str, ident: int, seq: int, payload: bytes = b"wgharness") -> bytes:
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    total = 20 + len(icmp)
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, 1, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    )  # fmt: skip
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + icmp


def parse_echo_reply(packet: bytes) -> tuple[str, str, int, int] | None:
    """(src, dst, ident, seq) of an ICMP echo reply, None for anything else."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 1:
        return None
    ihl = (packet[0] & 0x0F) * 4
    total = struct.unpack_from("!H", packet, 2)[0]
    icmp = packet[ihl:total]
    if len(icmp) < 8 or icmp[0] != 0 or checksum(icmp) != 0:
        return None
    ident, seq = struct.unpack_from("!HH", icmp, 4)
    src = str(ipaddress.IPv4Address(packet[12:16]))
    dst = str(ipaddress.IPv4Address(packet[16:20]))
    return src, dst, ident, seq
