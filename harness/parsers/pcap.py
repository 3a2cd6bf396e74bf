"""A small reader of classic pcap files (pure): the UDP datagrams in them, and
which WireGuard message a datagram looks like.

The file format is libpcap's classic one (pcap-savefile(5); the IETF draft
"PCAP Capture File Format"): a 24-byte header whose magic number gives the
byte order and the timestamp unit (0xa1b2c3d4 microseconds, 0xa1b23c4d
nanoseconds), then records of a 16-byte header and the captured bytes.
Link types read (LINKTYPE_* in pcap-linktype(7)): Ethernet (1; what tcpdump
gives on a veth or a tap, 802.1Q/802.1ad tags skipped), raw IP (101; a TUN),
and Linux cooked captures v1 (113) and v2 (276; ``-i any``).

IPv4 and IPv6 UDP only; fragments are skipped (only whole datagrams are
yielded), and so are datagrams whose UDP header was not captured. A payload
is what was captured of the datagram: shorter than it if the snapshot length
cut it. A file that is not pcap, or is cut inside a record, raises
`PcapError`.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from harness.pyref.messages import (
    COOKIE_REPLY,
    COOKIE_REPLY_LEN,
    INITIATION,
    INITIATION_LEN,
    RESPONSE,
    RESPONSE_LEN,
    TRANSPORT,
    TRANSPORT_HEADER_LEN,
)

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276

_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_ETH_IPV4, _ETH_IPV6 = 0x0800, 0x86DD
_VLAN_TAGS = (0x8100, 0x88A8)
_UDP = 17
_IPV6_SKIPPED_HEADERS = (0, 43, 60)  # hop-by-hop, routing, destination options: length in 8-byte units
_IPV6_FRAGMENT = 44


class PcapError(ValueError):
    """Not a classic pcap file, a link type not read here, or a file cut short."""


@dataclass(frozen=True)
class UdpPacket:
    """One UDP datagram in a capture."""

    ts: float
    """When it was captured (seconds since the epoch)."""
    src: str
    """Source IP address."""
    dst: str
    """Destination IP address."""
    sport: int
    dport: int
    payload: bytes
    """The UDP payload (as much of it as was captured)."""


def udp_packets(data: bytes) -> Iterator[UdpPacket]:
    """The UDP datagrams of a classic pcap file, in file order."""
    if len(data) < 24 or data[:4] not in _MAGIC:
        raise PcapError("not a classic pcap file (pcapng is not read here)")
    order, unit = _MAGIC[data[:4]]
    (linktype,) = struct.unpack_from(order + "I", data, 20)
    # The link type is the low 16 bits; the upper ones may say frames end in an FCS,
    # which the lengths in IP and UDP leave out anyway.
    link = _LINK_LAYERS.get(linktype & 0xFFFF)
    if link is None:
        raise PcapError(f"link type {linktype} is not read here (Ethernet, raw IP and Linux cooked are)")
    record = struct.Struct(order + "IIII")
    offset = 24
    while offset < len(data):
        if offset + record.size > len(data):
            raise PcapError(f"file cut inside the record header at byte {offset}")
        seconds, fraction, captured, _ = record.unpack_from(data, offset)
        offset += record.size
        if offset + captured > len(data):
            raise PcapError(f"file cut inside a record of {captured} bytes at byte {offset}")
        frame = data[offset : offset + captured]
        offset += captured
        found = link(frame)
        if found is None:
            continue
        ethertype, ip = found
        packet = _udp_in_ip(ethertype, ip, seconds + fraction * unit)
        if packet is not None:
            yield packet


def _ethernet(frame: bytes) -> tuple[int, bytes] | None:
    at = 12
    while len(frame) >= at + 2:
        (ethertype,) = struct.unpack_from("!H", frame, at)
        if ethertype not in _VLAN_TAGS:
            return ethertype, frame[at + 2 :]
        at += 4
    return None


def _raw(frame: bytes) -> tuple[int, bytes] | None:
    if not frame:
        return None
    return (_ETH_IPV4 if frame[0] >> 4 == 4 else _ETH_IPV6), frame


def _linux_sll(frame: bytes) -> tuple[int, bytes] | None:
    # packet type, ARPHRD type, address length, 8 address bytes, then the protocol.
    return (struct.unpack_from("!H", frame, 14)[0], frame[16:]) if len(frame) >= 16 else None


def _linux_sll2(frame: bytes) -> tuple[int, bytes] | None:
    # the protocol first, then reserved, interface index, ARPHRD, packet type, addresses.
    return (struct.unpack_from("!H", frame, 0)[0], frame[20:]) if len(frame) >= 20 else None


_LINK_LAYERS = {
    LINKTYPE_ETHERNET: _ethernet,
    LINKTYPE_RAW: _raw,
    LINKTYPE_LINUX_SLL: _linux_sll,
    LINKTYPE_LINUX_SLL2: _linux_sll2,
}


def _udp_in_ip(ethertype: int, ip: bytes, ts: float) -> UdpPacket | None:
    if ethertype == _ETH_IPV4 and len(ip) >= 20 and ip[0] >> 4 == 4:
        header = (ip[0] & 0x0F) * 4
        (flags_fragment,) = struct.unpack_from("!H", ip, 6)
        if header < 20 or ip[9] != _UDP or flags_fragment & 0x3FFF:  # more fragments, or not the first
            return None
        src, dst = ip[12:16], ip[16:20]
    elif ethertype == _ETH_IPV6 and len(ip) >= 40 and ip[0] >> 4 == 6:
        next_header, header = ip[6], 40
        while next_header in _IPV6_SKIPPED_HEADERS and len(ip) >= header + 2:
            next_header, header = ip[header], header + (ip[header + 1] + 1) * 8
        if next_header != _UDP:  # not UDP, or a fragment (_IPV6_FRAGMENT)
            return None
        src, dst = ip[8:24], ip[24:40]
    else:
        return None
    if len(ip) < header + 8:
        return None
    sport, dport, length = struct.unpack_from("!HHH", ip, header)
    payload = ip[header + 8 : header + max(length, 8)]
    return UdpPacket(
        ts, str(ipaddress.ip_address(src)), str(ipaddress.ip_address(dst)), sport, dport, payload
    )


# The message sizes: WireGuard paper, section 5.4 (figures of sections 5.4.2-5.4.6), and the
# kernel's drivers/net/wireguard/messages.h: initiation 148 bytes, response 92, cookie reply 64;
# a transport message is a 16-byte header and at least the 16-byte tag of an empty packet (a
# keepalive), messages.h's MESSAGE_MINIMUM_LENGTH = message_data_len(0) = 32.
_EXACT_LENGTH = {INITIATION: INITIATION_LEN, RESPONSE: RESPONSE_LEN, COOKIE_REPLY: COOKIE_REPLY_LEN}
TRANSPORT_MIN_LEN = TRANSPORT_HEADER_LEN + 16


def wg_type(payload: bytes) -> int | None:
    """The WireGuard message type (1 initiation, 2 response, 3 cookie reply, 4 transport
    data) when ``payload`` has that message's layout: the type byte, three reserved
    zero bytes and the message's length. None for anything else."""
    if len(payload) < 4 or payload[1:4] != b"\0\0\0":
        return None
    kind = payload[0]
    if kind in _EXACT_LENGTH:
        return kind if len(payload) == _EXACT_LENGTH[kind] else None
    if kind == TRANSPORT and len(payload) >= TRANSPORT_MIN_LEN:
        return kind
    return None
