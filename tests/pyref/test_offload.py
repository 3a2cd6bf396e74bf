"""pyref's TUN offloads (harness/pyref/io/offload.py): checksums against a
slow reference, TSO super-packets split and verified word by word, coalesce
and split round trips, what coalesce refuses to merge, fuzzing, and a real
kernel check in a network namespace (root): a TUN with IFF_VNET_HDR and
TUNSETOFFLOAD must accept our NEEDS_CSUM packets and coalesced TCP
super-packets, and what it sends must split into valid segments.

The kernel check runs in a child process (`ip netns exec NS python THIS_FILE
kernel-check`) so the test process never leaves its own namespace."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import struct
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.pyref.io import offload
from harness.pyref.io.offload import (
    TCP_ACK,
    TCP_CWR,
    TCP_FIN,
    TCP_PSH,
    TCP_RST,
    TCP_SYN,
    TCP_URG,
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_NONE,
    VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_TCPV6,
    VNET_HDR_LEN,
    coalesce,
    split,
)
from tests.support.netns_child import run_in_namespace

HDR = struct.Struct("=BBHHHH")
TS_OPTS = b"\x01\x01\x08\x0a" + struct.pack("!II", 123456, 654321)  # NOP NOP timestamps

V4 = ("198.19.55.2", "198.19.55.1")
V6 = ("fd00:55::2", "fd00:55::1")


# -- slow reference ---------------------------------------------------------


def ref_sum(data: bytes) -> int:
    """Ones'-complement sum of 16-bit words, one word at a time (RFC 1071)."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ref_checksum(data: bytes) -> int:
    return ~ref_sum(data) & 0xFFFF


def ref_pseudo(pkt: bytes, proto: int) -> bytes:
    if pkt[0] >> 4 == 4:
        ihl = (pkt[0] & 15) * 4
        return pkt[12:20] + struct.pack("!BBH", 0, proto, len(pkt) - ihl)
    return pkt[8:40] + struct.pack("!IxxxB", len(pkt) - 40, proto)


def ref_check_ip_tcp(pkt: bytes) -> dict[str, int]:
    """Checks every length and checksum of an IPv4/IPv6 TCP packet the slow
    way and returns its TCP fields."""
    if pkt[0] >> 4 == 4:
        ihl = (pkt[0] & 15) * 4
        assert struct.unpack_from("!H", pkt, 2)[0] == len(pkt)
        assert ref_checksum(pkt[:ihl]) == 0, "IPv4 header checksum"
        assert pkt[9] == 6
        thoff = ihl
    else:
        assert struct.unpack_from("!H", pkt, 4)[0] == len(pkt) - 40
        assert pkt[6] == 6
        thoff = 40
    assert ref_checksum(ref_pseudo(pkt, 6) + pkt[thoff:]) == 0, "TCP checksum"
    sport, dport, seq, ack, doff, flags, win = struct.unpack_from("!HHIIBBH", pkt, thoff)
    thlen = (doff >> 4) * 4
    return {"seq": seq, "ack": ack, "flags": flags, "win": win, "thlen": thlen, "data": thoff + thlen}


# -- builders ----------------------------------------------------------------


def ip_header(
    version: int, proto: int, payload_len: int, ident: int = 0, ttl: int = 64, opts: bytes = b""
) -> bytes:
    if version == 4:
        src, dst = (ipaddress.IPv4Address(a).packed for a in V4)
        ihl = 5 + len(opts) // 4
        h = struct.pack(
            "!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + payload_len, ident, 0x4000, ttl, proto, 0, src, dst
        )
        h += opts
        return h[:10] + struct.pack("!H", ref_checksum(h)) + h[12:]
    src, dst = (ipaddress.IPv6Address(a).packed for a in V6)
    return struct.pack("!IHBB16s16s", 0x60000000, payload_len, proto, ttl, src, dst)


def tcp_packet(
    version: int = 4,
    seq: int = 1000,
    ack: int = 5000,
    flags: int = TCP_ACK,
    payload: bytes = b"",
    sport: int = 40000,
    dport: int = 7777,
    opts: bytes = TS_OPTS,
    win: int = 512,
    ident: int = 0,
    ttl: int = 64,
    ip_opts: bytes = b"",
    csum: bool = True,
) -> bytes:
    """An IP/TCP packet with correct checksums (unless ``csum`` is False)."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (5 + len(opts) // 4) << 4, flags, win, 0, 0)
    tcp += opts + payload
    ip = ip_header(version, 6, len(tcp), ident, ttl, ip_opts)
    c = ref_checksum(ref_pseudo(ip + tcp, 6) + tcp) if csum else 0x1234
    return ip + tcp[:16] + struct.pack("!H", c) + tcp[18:]


def udp_packet(version: int, payload: bytes, sport: int = 4444, dport: int = 5555) -> bytes:
    """A UDP packet whose checksum field holds only the pseudo-header sum, as
    the kernel leaves it for NEEDS_CSUM (CHECKSUM_PARTIAL)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    pkt = ip_header(version, 17, len(udp)) + udp
    thoff = len(pkt) - len(udp)
    partial = ref_sum(ref_pseudo(pkt, 17))
    return pkt[: thoff + 6] + struct.pack("!H", partial) + pkt[thoff + 8 :]


def tso_frame(
    version: int, payload: bytes, gso_size: int, flags: int = TCP_ACK | TCP_PSH, seq: int = 1000
) -> bytes:
    """A TSO super-packet as the kernel hands it over: NEEDS_CSUM, the TCP
    checksum field holding the pseudo-header sum with length 0."""
    pkt = tcp_packet(version, seq=seq, flags=flags, payload=payload, ident=777, csum=False)
    thoff = 20 if version == 4 else 40
    partial = ref_sum(ref_pseudo(pkt, 6)[:-2] if version == 4 else pkt[8:40] + b"\x00\x00\x00\x06")
    pkt = pkt[: thoff + 16] + struct.pack("!H", partial) + pkt[thoff + 18 :]
    gso = VIRTIO_NET_HDR_GSO_TCPV4 if version == 4 else VIRTIO_NET_HDR_GSO_TCPV6
    hdr = HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, gso, thoff + 20 + len(TS_OPTS), gso_size, thoff, 16)
    return hdr + pkt


def segments(
    version: int, count: int, size: int, last: int | None = None, seq: int = 1000, **kw: object
) -> list[bytes]:
    """``count`` contiguous data segments of one flow, PSH on the last."""
    out = []
    for i in range(count):
        n = last if (last is not None and i == count - 1) else size
        flags = TCP_ACK | (TCP_PSH if i == count - 1 else 0)
        out.append(
            tcp_packet(version, seq=seq, flags=flags, payload=random.randbytes(n), ident=100 + i, **kw)  # type: ignore[arg-type]
        )
        seq += n
    return out


def parse_frame(frame: bytes) -> tuple[tuple[int, ...], bytes]:
    return HDR.unpack_from(frame), frame[VNET_HDR_LEN:]


# -- checksums ---------------------------------------------------------------


@given(st.binary(max_size=3000), st.integers(0, 0xFFFE))
def test_checksum_matches_reference(data: bytes, initial: int) -> None:
    padded = data + b"\x00" * (len(data) % 2)
    ref = ~ref_sum(padded + struct.pack("!H", initial)) & 0xFFFF  # an extra word adds ``initial``
    ours = offload.checksum(data, initial)
    assert ours == ref or (ref == 0 and ours == 0xFFFF)
    assert ref_sum(data) % 0xFFFF == offload.ones_sum(data)


def test_checksum_random_lengths_and_edges() -> None:
    rng = random.Random(1)
    for n in list(range(0, 70)) + [1419, 1420, 1421, 65535, 65536]:
        data = rng.randbytes(n)
        ref = ref_checksum(data)
        assert offload.checksum(data) in ((ref,) if ref else (0, 0xFFFF))
    assert offload.checksum(b"") == 0xFFFF
    assert offload.checksum(b"\x00" * 9) == 0xFFFF
    assert (
        offload.checksum(b"\xff\xff") == 0xFFFF
    )  # the sum is "negative zero": the checksum 0 is sent as 0xFFFF
    assert offload.checksum(b"\x12\x34\x56") == ref_checksum(b"\x12\x34\x56")


# -- split -------------------------------------------------------------------


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("mtu", [1500, 1280])
def test_split_tso(version: int, mtu: int) -> None:
    gso_size = 1448 if version == 4 else 1428
    payload = random.randbytes(65000 - 100)
    frame = tso_frame(version, payload, gso_size, flags=TCP_ACK | TCP_PSH | TCP_FIN | TCP_CWR, seq=0xFFFFF000)
    segs = split(frame, mtu)
    hl = (20 if version == 4 else 40) + 20 + len(TS_OPTS)
    seg = min(gso_size, mtu - hl)
    assert len(segs) == -(-len(payload) // seg)
    data = b""
    for i, s in enumerate(segs):
        assert len(s) <= mtu
        f = ref_check_ip_tcp(s)
        assert f["seq"] == (0xFFFFF000 + i * seg) & 0xFFFFFFFF  # wraps around
        last = i == len(segs) - 1
        assert f["flags"] == TCP_ACK | (TCP_PSH | TCP_FIN if last else 0) | (TCP_CWR if i == 0 else 0)
        assert s[f["data"] - len(TS_OPTS) : f["data"]] == TS_OPTS
        if version == 4:
            assert struct.unpack_from("!H", s, 4)[0] == 777 + i
        data += s[f["data"] :]
    assert data == payload


@pytest.mark.parametrize("version", [4, 6])
def test_split_needs_csum(version: int) -> None:
    pkt = udp_packet(version, b"hello, odd length")
    thoff = 20 if version == 4 else 40
    frame = HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE, 0, 0, thoff, 6) + pkt
    (out,) = split(frame, 1500)
    assert out[: thoff + 6] == pkt[: thoff + 6] and out[thoff + 8 :] == pkt[thoff + 8 :]
    assert ref_checksum(ref_pseudo(out, 17) + out[thoff:]) == 0
    # A TCP packet, its checksum field holding the pseudo-header sum.
    tcp = tcp_packet(version, payload=b"x" * 101, csum=False)
    tcp = tcp[: thoff + 16] + struct.pack("!H", ref_sum(ref_pseudo(tcp, 6))) + tcp[thoff + 18 :]
    (out,) = split(HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, thoff, 16) + tcp, 1500)
    ref_check_ip_tcp(out)


def test_split_plain_and_malformed() -> None:
    pkt = tcp_packet(payload=b"abc")
    assert split(bytes(VNET_HDR_LEN) + pkt, 1500) == [pkt]
    assert split(bytes(VNET_HDR_LEN) + pkt, len(pkt) - 1) == []  # over the MTU
    assert split(b"", 1500) == [] and split(bytes(VNET_HDR_LEN), 1500) == []
    assert split(HDR.pack(1, 0, 0, 0, 20, 200) + pkt, 1500) == []  # checksum field out of the packet
    good = tso_frame(4, random.randbytes(5000), 1000)
    assert len(split(good, 1500)) == 5
    assert split(good, 52) == []  # no room for payload
    assert len(split(good, 60)) == 625  # 8 bytes each
    bad_type = good[:1] + bytes([VIRTIO_NET_HDR_GSO_TCPV6]) + good[2:]  # an IPv4 packet said to be IPv6
    assert split(bad_type, 1500) == []
    assert split(good[:1] + b"\x05" + good[2:], 1500) == []  # USO: never enabled
    zero_gso = good[:4] + b"\x00\x00" + good[6:]
    assert split(zero_gso, 1500) == []
    assert split(good[: VNET_HDR_LEN + 52], 1500) == []  # headers only


# -- coalesce ----------------------------------------------------------------


@pytest.mark.parametrize("version", [4, 6])
def test_coalesce_then_split_round_trips(version: int) -> None:
    segs = segments(version, 44, 1420 - (60 if version == 6 else 40) - len(TS_OPTS), last=333)
    frames = coalesce(segs)
    assert len(frames) == 1
    (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset), pkt = parse_frame(frames[0])
    thoff = 20 if version == 4 else 40
    assert flags == VIRTIO_NET_HDR_F_NEEDS_CSUM
    assert gso_type == (VIRTIO_NET_HDR_GSO_TCPV4 if version == 4 else VIRTIO_NET_HDR_GSO_TCPV6)
    assert (hdr_len, csum_start, csum_offset) == (thoff + 32, thoff, 16)
    assert gso_size == len(segs[0]) - thoff - 32
    assert len(pkt) == thoff + 32 + sum(len(s) - thoff - 32 for s in segs)
    if version == 4:
        assert struct.unpack_from("!H", pkt, 2)[0] == len(pkt) and ref_checksum(pkt[:20]) == 0
    else:
        assert struct.unpack_from("!H", pkt, 4)[0] == len(pkt) - 40
    # CHECKSUM_PARTIAL: the field holds the pseudo-header sum, so summing
    # from csum_start and storing the complement gives a valid packet.
    assert ref_sum(pkt[thoff + 16 : thoff + 18]) % 0xFFFF == ref_sum(ref_pseudo(pkt, 6)) % 0xFFFF
    assert split(frames[0], 1500) == segs


def test_coalesce_keeps_singles_and_non_tcp_alone() -> None:
    one = tcp_packet(payload=b"x" * 100)
    udp = udp_packet(4, b"u")
    frames = coalesce([one, udp, b"\x45junk"])
    assert frames == [bytes(10) + one, bytes(10) + udp, bytes(10) + b"\x45junk"]
    assert coalesce([]) == []


def merged_counts(frames: list[bytes], mtu: int = 1500) -> list[int]:
    """Segments per frame, as split would cut them again."""
    return [len(split(f, mtu)) if f[1] else 1 for f in frames]


def test_coalesce_refuses() -> None:
    a, b, c = segments(4, 3, 1000)
    assert merged_counts(coalesce([a, b, c])) == [3]
    assert merged_counts(coalesce([a, c])) == [1, 1]  # a gap in the sequence
    assert merged_counts(coalesce([b, a])) == [1, 1]  # out of order
    other = segments(4, 2, 1000, sport=40001)
    assert merged_counts(coalesce([a, other[1]])) == [1, 1]  # another flow
    for flag in (TCP_SYN, TCP_FIN, TCP_RST, TCP_URG, TCP_CWR, 0x40):
        odd = tcp_packet(seq=2000, flags=TCP_ACK | flag, payload=b"y" * 1000, ident=101)
        assert merged_counts(coalesce([a, odd])) == [1, 1], flag
    assert merged_counts(coalesce([a, tcp_packet(seq=2000, payload=b"y" * 1000, ack=5001)])) == [1, 1]
    assert merged_counts(coalesce([a, tcp_packet(seq=2000, payload=b"y" * 1000, win=513)])) == [1, 1]
    assert merged_counts(coalesce([a, tcp_packet(seq=2000, payload=b"y" * 1000, ttl=63)])) == [1, 1]
    longer_opts = TS_OPTS + b"\x01\x01\x01\x00"
    assert merged_counts(coalesce([a, tcp_packet(seq=2000, payload=b"y" * 1000, opts=longer_opts)])) == [1, 1]
    assert merged_counts(coalesce([a, tcp_packet(seq=2000, payload=b"y" * 1001)])) == [1, 1]  # longer
    assert merged_counts(coalesce([a, tcp_packet(seq=2000, payload=b"y" * 1000, csum=False)])) == [1, 1]
    bad_first = tcp_packet(seq=1000, payload=b"y" * 1000, csum=False)
    assert merged_counts(coalesce([bad_first, b, c])) == [1, 2]
    # Packets a WireGuard AEAD authenticated are trusted, as the Linux module trusts them.
    assert merged_counts(coalesce([bad_first, b, c], verify=False)) == [3]
    # IPv4 options: never merged.
    opt = [
        tcp_packet(seq=1000 + i * 1000, payload=b"z" * 1000, ip_opts=b"\x01\x01\x01\x00") for i in range(3)
    ]
    assert merged_counts(coalesce(opt)) == [1, 1, 1]
    # A short segment or a PSH ends a run.
    s = segments(4, 4, 1000)
    short = tcp_packet(seq=2000, payload=b"s" * 500)
    after = tcp_packet(seq=2500, payload=b"t" * 500)
    assert merged_counts(coalesce([s[0], short, after])) == [2, 1]
    psh = tcp_packet(seq=2000, flags=TCP_ACK | TCP_PSH, payload=b"p" * 1000)
    assert merged_counts(coalesce([s[0], psh, tcp_packet(seq=3000, payload=b"q" * 1000)])) == [2, 1]


def test_coalesce_size_limit() -> None:
    segs = segments(4, 60, 1400)
    counts = merged_counts(coalesce(segs))
    assert sum(counts) == 60 and len(counts) == 2
    assert all(len(f) - VNET_HDR_LEN <= 0xFFFF for f in coalesce(segs))


def test_coalesce_interleaved_flows_keep_order() -> None:
    a = segments(4, 4, 1000)
    b = segments(6, 4, 1000, sport=40001)
    mixed = [a[0], b[0], a[1], b[1], a[2], b[2], a[3], b[3]]
    frames = coalesce(mixed)
    assert merged_counts(frames) == [4, 4]
    assert [p for f in frames for p in split(f, 1500)] == a + b
    # A packet of the flow that cannot be merged (a pure ACK, a FIN) ends its run.
    ack = tcp_packet(seq=3000, ack=5000)
    late = tcp_packet(seq=3000, payload=b"l" * 1000, ident=102)
    frames = coalesce([a[0], a[1], ack, late])
    assert merged_counts(frames) == [2, 1, 1]
    assert [p for f in frames for p in split(f, 1500)] == [a[0], a[1], ack, late]


# -- fuzzing -----------------------------------------------------------------


def mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    b = bytearray(data)
    for pos, val in edits:
        if b:
            b[pos % len(b)] = val
    return bytes(b)


EDITS = st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4)
SAMPLE_FRAMES = [
    tso_frame(4, bytes(range(256)) * 12, 1000),
    tso_frame(6, bytes(range(256)) * 12, 700),
    HDR.pack(1, 0, 0, 0, 20, 6) + udp_packet(4, b"abc"),
]
SAMPLE_PACKETS = segments(4, 4, 300) + segments(6, 3, 300) + [udp_packet(6, b"x")]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(-5, 70000))
def test_split_never_raises_on_junk(frame: bytes, mtu: int) -> None:
    for p in split(frame, mtu):
        assert len(p) <= mtu


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SAMPLE_FRAMES), EDITS, st.integers(0, 3000), st.integers(40, 2000))
def test_split_never_raises_on_mutations(
    frame: bytes, edits: list[tuple[int, int]], cut: int, mtu: int
) -> None:
    frame = mutate(frame, edits)
    for f in (frame, frame[: len(frame) - cut]):
        for p in split(f, mtu):
            assert len(p) <= mtu


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(SAMPLE_PACKETS), EDITS, st.integers(0, 400)), max_size=10))
def test_coalesce_never_raises(items: list[tuple[bytes, list[tuple[int, int]], int]]) -> None:
    packets = [mutate(p, e)[: len(p) - cut] for p, e, cut in items]
    # Nothing is lost: every packet goes out alone or as one of a super-packet's segments.
    assert sum(merged_counts(coalesce(packets), mtu=0xFFFF)) == len(packets)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=120), max_size=8))
def test_coalesce_never_raises_on_junk(packets: list[bytes]) -> None:
    assert len(coalesce(packets)) <= len(packets)


# -- the real kernel (root, in a namespace) ---------------------------------

SYN_OPTS = b"\x02\x04\x05\xb4\x01\x03\x03\x07"  # MSS 1460, NOP, window scale 7
TUN_NAME = "otun0"


def kernel_check(version: int) -> dict[str, object]:
    """Runs inside a fresh network namespace (a child process): talks to the
    kernel through a TUN with IFF_VNET_HDR and offloads over IPv4 or IPv6,
    and reports what it saw."""
    import fcntl
    import select
    import socket
    import threading
    import time

    from harness.pyref.io.tun import IFF_NO_PI, IFF_TUN, TUNSETIFF

    def sh(*args: str) -> None:
        subprocess.run(args, check=True, capture_output=True)

    sh("ip", "link", "set", "lo", "up")
    # As little of the kernel's own traffic on the TUN as can be: no IPv6 for
    # the IPv4 check, no link-local address, router solicitation or DAD for IPv6.
    for conf in ("all", "default"):
        if version == 4:
            sh("sysctl", "-qw", f"net.ipv6.conf.{conf}.disable_ipv6=1")
        else:
            for knob in ("addr_gen_mode=1", "accept_ra=0", "router_solicitations=0", "accept_dad=0"):
                sh("sysctl", "-qw", f"net.ipv6.conf.{conf}.{knob}")
    family, addrs = (socket.AF_INET, V4) if version == 4 else (socket.AF_INET6, V6)
    thoff = 20 if version == 4 else 40
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    flags = IFF_TUN | IFF_NO_PI | offload.IFF_VNET_HDR
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", TUN_NAME.encode(), flags))
    fcntl.ioctl(fd, offload.TUNSETOFFLOAD, offload.TUN_F_CSUM | offload.TUN_F_TSO4 | offload.TUN_F_TSO6)
    sh("ip", "link", "set", TUN_NAME, "up", "mtu", "1500")
    prefix = f"{addrs[1]}/{24 if version == 4 else 64}"
    sh("ip", "addr", "add", prefix, "dev", TUN_NAME, *(["nodad"] if version == 6 else []))
    # IPv6 installs the local route from a work queue: wait until packets to the address are ours.
    deadline = time.monotonic() + 5
    while b"local" not in subprocess.run(["ip", "route", "get", addrs[1]], capture_output=True).stdout:
        assert time.monotonic() < deadline, f"{addrs[1]} never became local"
        time.sleep(0.01)
    res: dict[str, object] = {}

    def read_packets(timeout: float) -> list[tuple[tuple[int, ...], list[bytes]]]:
        """Frames read within ``timeout`` (stops after the first batch): header and split packets."""
        out = []
        while select.select([fd], [], [], timeout)[0]:
            frame = os.read(fd, 70000)
            pkts = split(frame, 1500)
            if pkts and pkts[0][9 if version == 4 else 6] == 6:  # TCP: not MLD and the like
                out.append((HDR.unpack_from(frame), pkts))
            timeout = 0.05
        return out

    # (1) UDP: the kernel drops the packet when the checksum field holds only the
    # pseudo-header sum, and accepts the same packet marked NEEDS_CSUM.
    u = socket.socket(family, socket.SOCK_DGRAM)
    u.bind((addrs[1], 5555))
    u.settimeout(1.0)
    os.write(fd, bytes(VNET_HDR_LEN) + udp_packet(version, b"unmarked"))
    os.write(
        fd, HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, thoff, 6) + udp_packet(version, b"needs-csum")
    )
    udp_got = [u.recv(100)]
    with contextlib.suppress(TimeoutError):
        udp_got.append(u.recv(100))
    res["udp_received"] = [p.decode() for p in udp_got]
    u.close()

    # (2) TCP: handshake through the TUN, then one coalesced super-packet.
    lst = socket.socket(family, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind((addrs[1], 7777))
    lst.listen(1)
    lst.settimeout(3.0)
    isn = 0x10000000
    syn = tcp_packet(version, seq=isn, ack=0, flags=TCP_SYN, opts=SYN_OPTS, win=65535)
    os.write(fd, bytes(VNET_HDR_LEN) + syn)
    synack = None
    for hdr, pkts in read_packets(2.0):
        for p in pkts:
            f = ref_check_ip_tcp(p)
            if f["flags"] == TCP_SYN | TCP_ACK and f["ack"] == isn + 1:
                synack = f
                res["synack_vnet_flags"] = hdr[0]
    assert synack is not None, "no SYN-ACK"
    srv = synack["seq"] + 1
    os.write(fd, bytes(VNET_HDR_LEN) + tcp_packet(version, seq=isn + 1, ack=srv, opts=b"", win=65535))
    conn, _ = lst.accept()
    conn.settimeout(3.0)
    segs = segments(version, 24, 1200, seq=isn + 1, ack=srv, opts=b"", win=65535)
    sent = b"".join(s[thoff + 20 :] for s in segs)
    frames = coalesce(segs)
    res["coalesced_frames"] = len(frames)
    res["coalesced_gso_type"] = frames[0][1]
    os.write(fd, frames[0])
    got = b""
    while len(got) < len(sent):
        chunk = conn.recv(65536)
        if not chunk:
            break
        got += chunk
    res["tcp_payload_ok"] = got == sent
    acks = [ref_check_ip_tcp(p)["ack"] for _, pkts in read_packets(1.0) for p in pkts]
    res["kernel_acked"] = (isn + 1 + len(sent)) in acks

    # (3) The kernel sends 64 KiB: split its super-packets and ACK them.
    data = random.randbytes(65536)
    sender = threading.Thread(target=conn.sendall, args=(data,))
    sender.start()
    ours = isn + 1 + len(sent)
    received = bytearray()
    tso_frames = max_frame = seg_count = max_seg = 0
    for _ in range(200):
        batch = read_packets(2.0)
        if not batch:
            break
        for hdr, pkts in batch:
            tso_frames += hdr[1] != VIRTIO_NET_HDR_GSO_NONE
            assert pkts, f"split refused a frame with header {hdr}"
            max_frame = max(max_frame, sum(len(p) - thoff - 20 for p in pkts) + thoff + 20)
            for p in pkts:
                f = ref_check_ip_tcp(p)  # raises on any bad checksum or length
                seg_count += 1
                max_seg = max(max_seg, len(p))
                if f["seq"] == srv + len(received):
                    received += p[f["data"] :]
        ack = tcp_packet(version, seq=ours, ack=srv + len(received), opts=b"", win=65535)
        os.write(fd, bytes(VNET_HDR_LEN) + ack)
        if len(received) >= len(data):
            break
    sender.join(5.0)
    res.update(
        tso_frames=tso_frames,
        max_frame=max_frame,
        segments=seg_count,
        max_segment=max_seg,
        payload_64k_ok=bytes(received) == data,
    )
    conn.close()
    lst.close()
    os.close(fd)
    return res


@pytest.mark.parametrize("version", [4, 6])
def test_kernel_accepts_and_sends_offloads(version: int, integration: None, no_leftovers: None) -> None:
    res = run_in_namespace(__file__, "kernel-check", str(version), name="offload")
    # Unmarked, the pseudo-header-only checksum is wrong and the packet dropped;
    # marked NEEDS_CSUM, the kernel trusts it: the offload contract holds.
    assert res["udp_received"] == ["needs-csum"]
    assert res["synack_vnet_flags"] & VIRTIO_NET_HDR_F_NEEDS_CSUM  # split filled in the checksum
    gso_type = VIRTIO_NET_HDR_GSO_TCPV4 if version == 4 else VIRTIO_NET_HDR_GSO_TCPV6
    assert res["coalesced_frames"] == 1 and res["coalesced_gso_type"] == gso_type
    assert res["tcp_payload_ok"] and res["kernel_acked"]
    assert res["payload_64k_ok"]
    assert res["tso_frames"] > 0 and res["max_frame"] > 1500, res  # the kernel did send super-packets
    assert res["max_segment"] <= 1500


if __name__ == "__main__" and sys.argv[1:2] == ["kernel-check"]:
    print(json.dumps(kernel_check(int(sys.argv[2]))))
