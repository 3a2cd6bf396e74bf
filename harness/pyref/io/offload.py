"""TUN offloads for pyref: cutting the kernel's TCP super-packets into
MTU-sized segments (`split`) and merging received segments into super-packets
for the kernel (`coalesce`). Pure functions, no I/O.

Rules of this module:

- A TUN opened with IFF_VNET_HDR prefixes every read and every write with a
  `struct virtio_net_hdr` (include/uapi/linux/virtio_net.h): flags, gso_type,
  hdr_len, gso_size, csum_start, csum_offset. TUN uses the legacy (native
  endian) layout unless TUNSETVNETLE/BE says otherwise, so fields are packed in
  native byte order, as wireguard-go does by copying the struct's bytes.
- After TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) the kernel may hand
  us a packet whose checksum is left for us (NEEDS_CSUM, the field holding the
  pseudo-header sum) or a TCP super-packet of up to 64 KiB with gso_size bytes
  of payload per segment. `split` returns plain IP packets with every checksum
  filled in. It never raises: a frame it cannot make sense of gives [].
- `coalesce` merges runs of TCP segments of one flow that the kernel's own GRO
  would merge (net/ipv4/tcp_offload.c, tcp_gro_receive) and marks the result
  CHECKSUM_PARTIAL, so the kernel sums nothing again. A segment whose checksum
  is wrong is never merged: it goes out alone, unmarked, for the kernel to drop.
- Checksums use the identity 2**16 == 1 (mod 0xFFFF): the ones'-complement sum
  of a string of 16-bit words is int.from_bytes(data, "big") % 0xFFFF, with 0
  standing for 0xFFFF. A checksum is then 0xFFFF - sum, which is never 0: the
  kernel writes 0xFFFF for a computed 0 too (CSUM_MANGLED_0), which UDP needs.

Learned from (no code copied): wireguard-go tun/offload_linux.go (gsoSplit,
tcpGRO, applyTCPCoalesceAccounting) and tun/tun_linux.go (handleVirtioRead);
include/uapi/linux/virtio_net.h and include/uapi/linux/if_tun.h; RFC 1071.
"""

from __future__ import annotations

import struct

try:  # numpy sums a super-packet's segments in one pass; without it, one big integer each
    import numpy as np
except ImportError:  # pragma: no cover - a host where pyref runs from a bundle without numpy
    np = None  # type: ignore[assignment]

# include/uapi/linux/virtio_net.h
VNET_HDR_LEN = 10
VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
VIRTIO_NET_HDR_F_DATA_VALID = 2
VIRTIO_NET_HDR_GSO_NONE = 0
VIRTIO_NET_HDR_GSO_TCPV4 = 1
VIRTIO_NET_HDR_GSO_UDP = 3
VIRTIO_NET_HDR_GSO_TCPV6 = 4
VIRTIO_NET_HDR_GSO_UDP_L4 = 5
VIRTIO_NET_HDR_GSO_ECN = 0x80

# include/uapi/linux/if_tun.h
IFF_VNET_HDR = 0x4000
TUNSETOFFLOAD = 0x400454D0  # _IOW('T', 208, unsigned int)
TUNSETVNETHDRSZ = 0x400454D8  # _IOW('T', 216, int)
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
TUN_F_UFO = 0x10
TUN_F_USO4 = 0x20
TUN_F_USO6 = 0x40

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10
TCP_URG = 0x20
TCP_CWR = 0x80

MAX_IP_PACKET = 0xFFFF

_HDR = struct.Struct("=BBHHHH")
_HDR_NONE = bytes(VNET_HDR_LEN)
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_IPV4_LEN_ID = struct.Struct("!HH")  # total length and identification, at offset 2
_TCP_SEQ = struct.Struct("!I")  # at offset 4 of the TCP header

_IPPROTO_TCP = 6
_IPPROTO_UDP = 17


def ones_sum(data: bytes) -> int:
    """The ones'-complement sum of ``data`` as 16-bit big-endian words (an odd
    last byte padded with zero), reduced mod 0xFFFF: 0 stands for 0 or 0xFFFF."""
    s = int.from_bytes(data, "big") % 0xFFFF
    if len(data) & 1:
        s = (s << 8) % 0xFFFF
    return s


def checksum(data: bytes, initial: int = 0) -> int:
    """The internet checksum (RFC 1071) of ``data`` plus ``initial``, a partial
    sum such as a pseudo-header's; 0xFFFF where the arithmetic gives 0."""
    return 0xFFFF - (ones_sum(data) + initial) % 0xFFFF


def pseudo_header_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Partial sum of the TCP/UDP pseudo-header (RFC 793, RFC 8200 8.1), mod 0xFFFF."""
    return (int.from_bytes(src, "big") + int.from_bytes(dst, "big") + proto + length) % 0xFFFF


def split(frame: bytes, mtu: int) -> list[bytes]:
    """The IP packets in ``frame``, one read from a TUN with IFF_VNET_HDR
    (virtio_net_hdr + packet), each with its checksums filled in and at most
    ``mtu`` bytes; [] if the frame is malformed or cannot fit the MTU."""
    if len(frame) <= VNET_HDR_LEN:
        return []
    flags, gso_type, _hdr_len, gso_size, csum_start, csum_offset = _HDR.unpack_from(frame)
    pkt = frame[VNET_HDR_LEN:]
    gso_type &= ~VIRTIO_NET_HDR_GSO_ECN
    if gso_type == VIRTIO_NET_HDR_GSO_NONE:
        if len(pkt) > mtu:
            return []
        if not flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
            return [pkt]
        at = csum_start + csum_offset
        if at + 2 > len(pkt):
            return []
        # The field holds the pseudo-header sum; summing over it includes it.
        s = ones_sum(pkt[csum_start:])
        return [pkt[:at] + _U16.pack(0xFFFF - s) + pkt[at + 2 :]]
    if gso_type == VIRTIO_NET_HDR_GSO_TCPV4:
        return _split_tcp(pkt, mtu, gso_size, csum_start, csum_offset, 4)
    if gso_type == VIRTIO_NET_HDR_GSO_TCPV6:
        return _split_tcp(pkt, mtu, gso_size, csum_start, csum_offset, 6)
    return []  # UDP fragmentation offload and USO are never enabled by us


def _split_tcp(
    pkt: bytes, mtu: int, gso_size: int, thoff: int, csum_offset: int, version: int
) -> list[bytes]:
    n = len(pkt)
    if n < 20 or pkt[0] >> 4 != version or csum_offset != 16:
        return []
    if version == 4:
        if pkt[9] != _IPPROTO_TCP or thoff != (pkt[0] & 0x0F) * 4 or thoff < 20:
            return []
        addrs = pkt[12:20]
    else:
        # Extension headers, if any, lie between the fixed header and thoff.
        if thoff < 40:
            return []
        addrs = pkt[8:40]
    if thoff + 20 > n:
        return []
    thlen = (pkt[thoff + 12] >> 4) * 4
    hdr_len = thoff + thlen
    # Don't trust virtio hdr_len (wireguard-go found it may span the whole
    # first packet on the forwarding path): the TCP header says where data starts.
    if thlen < 20 or hdr_len >= n:
        return []
    seg = min(gso_size, mtu - hdr_len)
    if seg <= 0:
        return []

    iph = pkt[:thoff]
    tcph = pkt[thoff:hdr_len]
    seq0 = _TCP_SEQ.unpack_from(tcph, 4)[0]
    tflags = tcph[13]
    # The TCP header without seq and checksum: varies only in flags per segment.
    tmpl_head = tcph[:4]
    tmpl_mid = tcph[8:13]
    tmpl_tail = tcph[14:16]
    tmpl_end = tcph[18:]
    hdr_sum_base = ones_sum(tmpl_head + bytes(4) + tmpl_mid + b"\x00" + tmpl_tail + b"\x00\x00" + tmpl_end)
    pseudo = (
        int.from_bytes(addrs[: len(addrs) // 2], "big") + int.from_bytes(addrs[len(addrs) // 2 :], "big")
    ) % 0xFFFF
    pseudo += _IPPROTO_TCP

    if version == 4:
        ip_head = iph[:2]
        ip_id0 = _U16.unpack_from(iph, 4)[0]
        ip_mid = iph[6:10]
        ip_tail = iph[12:]
        # Header sum without total length, id and checksum.
        ip_sum_base = ones_sum(ip_head + bytes(4) + ip_mid + b"\x00\x00" + ip_tail)
    else:
        ip_head = iph[:4]
        ip_tail = iph[6:]

    out = []
    last = n - seg  # a segment starting at or after this offset is the last
    full = (n - hdr_len) // seg
    if np is not None and seg % 2 == 0 and full > 1:
        # The payload sums of all full segments in one vectorised pass: a 16-bit
        # big-endian word sum per row, mod 0xFFFF (7x faster than a big integer each).
        words = np.frombuffer(pkt, dtype=">u2", offset=hdr_len, count=full * seg // 2)
        sums = (words.reshape(full, seg // 2).sum(axis=1, dtype=np.uint64) % 0xFFFF).tolist()
    else:
        sums = []
    for i, start in enumerate(range(hdr_len, n, seg)):
        end = start + seg
        payload = pkt[start:end]
        plen = len(payload)
        f = tflags
        if start < last:
            f &= ~(TCP_FIN | TCP_PSH)
        if i:
            f &= ~TCP_CWR
        seq = (seq0 + i * seg) & 0xFFFFFFFF
        tcp_len = thlen + plen
        s = (
            hdr_sum_base
            + f
            + (seq >> 16)
            + (seq & 0xFFFF)
            + pseudo
            + tcp_len
            + (
                sums[i]
                if i < len(sums)
                else int.from_bytes(payload, "big") % 0xFFFF * (256 if plen & 1 else 1)
            )
        ) % 0xFFFF
        tcp_out = (
            tmpl_head + _U32.pack(seq) + tmpl_mid + bytes((f,)) + tmpl_tail + _U16.pack(0xFFFF - s) + tmpl_end
        )
        if version == 4:
            total = hdr_len + plen
            ip_id = (ip_id0 + i) & 0xFFFF
            ip_csum = 0xFFFF - (ip_sum_base + total + ip_id) % 0xFFFF
            ip_out = ip_head + _IPV4_LEN_ID.pack(total, ip_id) + ip_mid + _U16.pack(ip_csum) + ip_tail
        else:
            ip_out = ip_head + _U16.pack(hdr_len - 40 + plen) + ip_tail
        out.append(ip_out + tcp_out + payload)
    return out


def _tcp_candidate(pkt: bytes) -> tuple[int, int, int] | None:
    """(transport offset, TCP header length, payload length) of a TCP segment
    that may be merged with others; None for anything else."""
    n = len(pkt)
    if n < 40:
        return None
    b0 = pkt[0]
    if b0 == 0x45:
        # IPv4 without options; not a fragment (MF clear, offset 0).
        if pkt[9] != _IPPROTO_TCP or pkt[6] & 0x3F or pkt[7] or _U16.unpack_from(pkt, 2)[0] != n:
            return None
        thoff = 20
    elif b0 >> 4 == 6:
        # IPv6 without extension headers.
        if n < 60 or pkt[6] != _IPPROTO_TCP or _U16.unpack_from(pkt, 4)[0] != n - 40:
            return None
        thoff = 40
    else:
        return None
    doff = pkt[thoff + 12]
    thlen = (doff >> 4) * 4
    plen = n - thoff - thlen
    # Reserved bits clear, flags ACK or ACK|PSH (no SYN, FIN, RST, URG, ECE, CWR).
    if doff & 0x0F or thlen < 20 or plen <= 0 or pkt[thoff + 13] & ~TCP_PSH != TCP_ACK:
        return None
    return thoff, thlen, plen


# The header bytes that must agree between segments merged into one, as masks
# over the header read as one big integer: everything but IPv4 total length,
# id and checksum (IPv6 payload length), TCP sequence number, flags, checksum.
def _mask(hdr_len: int, holes: tuple[tuple[int, int], ...]) -> int:
    m = bytearray(b"\xff" * hdr_len)
    for a, b in holes:
        m[a:b] = bytes(b - a)
    return int.from_bytes(m, "big")


_TCP_HOLES = ((4, 8), (13, 14), (16, 18))  # seq, flags, checksum
_MASKS = {
    (thoff, thlen): _mask(
        thoff + thlen,
        (((2, 6), (10, 12)) if thoff == 20 else ((4, 6),))
        + tuple((thoff + a, thoff + b) for a, b in _TCP_HOLES),
    )
    for thoff in (20, 40)
    for thlen in range(20, 61, 4)
}


def _valid(pkt: bytes, thoff: int) -> bool:
    """Whether the TCP checksum of a candidate segment is right."""
    if thoff == 20:
        pseudo = int.from_bytes(pkt[12:20], "big") % 0xFFFF
    else:
        pseudo = int.from_bytes(pkt[8:40], "big") % 0xFFFF
    return (ones_sum(pkt[thoff:]) + pseudo + _IPPROTO_TCP + len(pkt) - thoff) % 0xFFFF == 0


class _Run:
    """Segments of one flow being merged: the first's header, the payloads."""

    __slots__ = ("first", "last", "thoff", "thlen", "gso_size", "sig", "next_seq", "payloads", "size", "open")

    def __init__(self, pkt: bytes, thoff: int, thlen: int, plen: int, sig: int) -> None:
        self.first = pkt
        self.last = pkt
        self.thoff = thoff
        self.thlen = thlen
        self.gso_size = plen
        self.sig = sig
        self.next_seq = (_TCP_SEQ.unpack_from(pkt, thoff + 4)[0] + plen) & 0xFFFFFFFF
        self.payloads = [pkt[thoff + thlen :]]
        self.size = len(pkt)
        # Nothing may follow a PSH (nor, later, a short segment).
        self.open = not pkt[thoff + 13] & TCP_PSH


def _flow_key(pkt: bytes) -> bytes | None:
    """Addresses and ports of a TCP packet that cannot be merged; b"" if it may
    be TCP but its ports are out of reach (fragments, IPv6 extension
    headers); None if it is certainly not TCP."""
    n = len(pkt)
    if n < 20:
        return None
    version = pkt[0] >> 4
    if version == 4:
        if pkt[9] != _IPPROTO_TCP:
            return None
        ihl = (pkt[0] & 0x0F) * 4
        if pkt[6] & 0x3F or pkt[7] or ihl < 20 or n < ihl + 4:
            return b""
        return pkt[12:20] + pkt[ihl : ihl + 4]
    if version == 6 and n >= 40:
        nh = pkt[6]
        if nh == _IPPROTO_TCP and n >= 44:
            return pkt[8:44]
        return None if nh in (_IPPROTO_UDP, 58, 59) else b""
    return None


def coalesce(packets: list[bytes], verify: bool = True) -> list[bytes]:
    """Frames (virtio_net_hdr + packet) for ``packets``, IP packets in arrival
    order, with consecutive TCP segments of a flow merged into super-packets.
    Packets of different flows may interleave; order within a flow is kept.

    ``verify=False`` merges segments without checking their TCP checksums: right
    for packets that a WireGuard AEAD just authenticated, which the Linux module
    marks CHECKSUM_UNNECESSARY for the same reason (drivers/net/wireguard/receive.c)."""
    out: list[bytes | _Run] = []
    runs: dict[bytes, _Run] = {}  # the run each flow's next segment may join
    for pkt in packets:
        cand = _tcp_candidate(pkt)
        if cand is None:
            key = _flow_key(pkt)
            if key:
                runs.pop(key, None)  # e.g. a FIN: nothing may be merged past it
            elif key is not None:
                runs.clear()
            out.append(pkt)
            continue
        thoff, thlen, plen = cand
        key = pkt[12:24] if thoff == 20 else pkt[8:44]
        hl = thoff + thlen
        sig = int.from_bytes(pkt[:hl], "big") & _MASKS[thoff, thlen]
        run = runs.get(key)
        if (
            run is not None
            and run.open
            and sig == run.sig
            and thlen == run.thlen
            and _TCP_SEQ.unpack_from(pkt, thoff + 4)[0] == run.next_seq
            and plen <= run.gso_size
            and run.size + plen <= MAX_IP_PACKET
            and (not verify or _valid(pkt, thoff))
            # The first segment is checked only once a second one joins it.
            and (not verify or len(run.payloads) > 1 or _valid(run.first, thoff))
        ):
            run.payloads.append(pkt[hl:])
            run.size += plen
            run.next_seq = (run.next_seq + plen) & 0xFFFFFFFF
            run.last = pkt
            run.open = plen == run.gso_size and not pkt[thoff + 13] & TCP_PSH
            continue
        run = _Run(pkt, thoff, thlen, plen, sig)
        runs[key] = run
        out.append(run)
    return [_HDR_NONE + item if isinstance(item, bytes) else _frame(item) for item in out]


def _frame(run: _Run) -> bytes:
    pkt = run.first
    if len(run.payloads) == 1:
        return _HDR_NONE + pkt
    thoff, thlen = run.thoff, run.thlen
    hl = thoff + thlen
    total = run.size
    tcp_len = total - thoff
    if thoff == 20:
        gso_type = VIRTIO_NET_HDR_GSO_TCPV4
        ip = bytearray(pkt[:20])
        _U16.pack_into(ip, 2, total)
        ip[10:12] = b"\x00\x00"
        _U16.pack_into(ip, 10, checksum(bytes(ip)))
        pseudo = pseudo_header_sum(pkt[12:16], pkt[16:20], _IPPROTO_TCP, tcp_len)
    else:
        gso_type = VIRTIO_NET_HDR_GSO_TCPV6
        ip = bytearray(pkt[:40])
        _U16.pack_into(ip, 4, tcp_len)
        pseudo = pseudo_header_sum(pkt[8:24], pkt[24:40], _IPPROTO_TCP, tcp_len)
    tcp = bytearray(pkt[thoff:hl])
    tcp[13] = run.last[thoff + 13]  # PSH of the last segment
    # CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum.
    _U16.pack_into(tcp, 16, pseudo or 0xFFFF)
    hdr = _HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, gso_type, hl, run.gso_size, thoff, 16)
    return b"".join((hdr, ip, tcp, *run.payloads))
