"""The kernel's side of shedding (`harness.pyref.shedding`): a classic BPF socket
filter that keeps one in K of the handshake messages from the sources in a
table and drops the rest before they reach pyref's UDP socket, and how full
that socket is.

The program (`program`, pure) sees the datagram from its UDP header on (the
WireGuard message type is byte 8) and the IP header at SKF_NET_OFF:
- a message type other than 1 or 2 (initiation, response) is kept: cookie
  replies, transport data, and what the core drops anyway;
- the source address (IPv4: the whole address; IPv6: its first 64 bits, as
  `ratelimiter.source_key`) is compared with each source of the table; no
  match is kept;
- a match is kept when a random number (SKF_AD_RANDOM) has its low log2(K)
  bits zero: one in K, K a power of two.
An empty table attaches nothing (`apply` detaches the filter instead), so a
socket that is not flooded sees every datagram, short ones too.

Linux only (SO_ATTACH_FILTER, SO_MEMINFO); `ctypes` only to pass the program's
address, as ``struct sock_fprog`` wants it.
"""

from __future__ import annotations

import contextlib
import ctypes
import socket
import struct
from collections.abc import Mapping

SO_ATTACH_FILTER = 26
SO_DETACH_FILTER = 27
SO_MEMINFO = 55
_MEMINFO = struct.Struct("9I")  # <linux/sock_diag.h> SK_MEMINFO_*: RMEM_ALLOC .. DROPS
SKF_NET_OFF = -0x100000
SKF_AD_RANDOM = -0x1000 + 56
# opcodes (<linux/filter.h>)
LD_W_ABS = 0x20
LD_B_ABS = 0x30
ALU_AND_K = 0x54
JEQ_K = 0x15
JGE_K = 0x35
RET_K = 0x06
KEEP = 0xFFFFFFFF
DROP = 0
TYPE_AT = 8  # the WireGuard message type, after the 8-byte UDP header
V4_SOURCE_AT = SKF_NET_OFF + 12
V6_SOURCE_AT = SKF_NET_OFF + 8

Instruction = tuple[int, int, int, int]
"""(code, jt, jf, k): ``struct sock_filter``."""


def _word(b: bytes) -> int:
    return int.from_bytes(b, "big")  # BPF_LD|BPF_W loads in network order


def program(table: Mapping[bytes, int], family: int) -> list[Instruction]:
    """The filter for a socket of ``family`` (AF_INET: the table's 4-byte sources;
    AF_INET6: its 8-byte /64 sources), empty if the table has none of them. K must
    be a power of two >= 2."""
    width = 4 if family == socket.AF_INET else 8
    sources = sorted((key, k) for key, k in table.items() if len(key) == width)
    if not sources:
        return []
    for _, k in sources:
        if k < 2 or k & (k - 1):
            raise ValueError(f"keep one in {k}: not a power of two >= 2")
    groups = sorted({k for _, k in sources})
    # Laid out as: head, one comparison per source, KEEP, then one tail per K.
    # A jump is an offset from the next instruction; labels are resolved below.
    code: list[tuple[int, int | str, int | str, int]] = [
        (LD_B_ABS, 0, 0, TYPE_AT),
        (JGE_K, "keep", 0, 3),  # cookie reply, transport...: kept
        (JGE_K, 0, "keep", 1),  # type 0: kept (the core counts it)
    ]
    for key, k in sources:
        if width == 4:
            code += [(LD_W_ABS, 0, 0, V4_SOURCE_AT), (JEQ_K, f"tail{k}", 0, _word(key))]
        else:
            code += [
                (LD_W_ABS, 0, 0, V6_SOURCE_AT),
                (JEQ_K, 0, 2, _word(key[:4])),
                (LD_W_ABS, 0, 0, V6_SOURCE_AT + 4),
                (JEQ_K, f"tail{k}", 0, _word(key[4:])),
            ]
    labels = {"keep": len(code)}
    code.append((RET_K, 0, 0, KEEP))
    for k in groups:
        labels[f"tail{k}"] = len(code)
        code += [  # jumps only go forward: each tail keeps or drops by itself
            (LD_W_ABS, 0, 0, SKF_AD_RANDOM),
            (ALU_AND_K, 0, 0, k - 1),
            (JEQ_K, 0, 1, 0),
            (RET_K, 0, 0, KEEP),
            (RET_K, 0, 0, DROP),
        ]
    out: list[Instruction] = []
    for at, (op, jt, jf, k) in enumerate(code):
        jumps = [labels[j] - at - 1 if isinstance(j, str) else j for j in (jt, jf)]
        if not all(0 <= j <= 255 for j in jumps):
            raise ValueError(f"table too large for one filter ({len(sources)} sources)")
        out.append((op, jumps[0], jumps[1], k & 0xFFFFFFFF))
    return out


def apply(sock: socket.socket, table: Mapping[bytes, int]) -> None:
    """Attach the filter for ``table`` to ``sock`` (replacing any), or detach it if the
    table has no source of the socket's family. Raises OSError if the kernel refuses."""
    instructions = program(table, sock.family)
    if not instructions:
        with contextlib.suppress(OSError):  # ENOENT: none attached
            sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
        return
    raw = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in instructions))
    fprog = struct.pack("@HP", len(instructions), ctypes.addressof(raw))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies the program


def fill(sock: socket.socket) -> tuple[int, int, int]:
    """(bytes queued, the receive buffer's size, datagrams dropped so far) of ``sock``
    (SO_MEMINFO: sk_rmem_alloc, sk_rcvbuf, sk_drops; the last wraps at 2**32)."""
    info = _MEMINFO.unpack(sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, _MEMINFO.size))
    return info[0], info[1], info[8]
