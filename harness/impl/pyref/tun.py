"""A Linux TUN device for pyref (thin I/O; nothing protocol-related here).

The interface carries IP packets (IFF_TUN | IFF_NO_PI). With offloads
(the default), IFF_VNET_HDR and TUNSETOFFLOAD(CSUM, TSO4, TSO6) are set: every
read and write then starts with a virtio_net_hdr, a read may be a TCP
super-packet of up to 64 KiB, and a write may be one (`offload.py` cuts and
merges them). Ioctl numbers are from <linux/if_tun.h>.
"""

from __future__ import annotations

import fcntl
import os
import struct

from harness.impl.pyref.offload import IFF_VNET_HDR, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUNSETOFFLOAD

TUNSETIFF = 0x400454CA
TUNGETIFF = 0x800454D2
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFNAMSIZ = 16


class TunError(Exception):
    """The TUN device could not be created (one line, for the user)."""


def valid_ifname(name: str) -> str | None:
    """Why ``name`` cannot be an interface name, or None if it can."""
    if not name or len(name.encode()) >= IFNAMSIZ:
        return f"interface name must be 1 to {IFNAMSIZ - 1} bytes"
    if "/" in name or any(c.isspace() for c in name) or name in (".", ".."):
        return "interface name must not contain '/' or spaces, nor be '.' or '..'"
    return None


def open_tun(name: str, offload: bool = True) -> int:
    """A non-blocking file descriptor of a new TUN interface called ``name``."""
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise TunError(f"cannot open /dev/net/tun: {exc.strerror}") from None
    try:
        flags = IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if offload else 0)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags))
        if offload:
            fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
    except OSError as exc:
        os.close(fd)
        raise TunError(f"cannot create TUN interface {name}: {exc.strerror}") from None
    return fd


def has_vnet_header(fd: int) -> bool:
    """Does this TUN descriptor (perhaps inherited) prefix packets with a virtio_net_hdr?"""
    ifr = fcntl.ioctl(fd, TUNGETIFF, bytes(struct.calcsize("16sH")))
    return bool(struct.unpack("16sH", ifr)[1] & IFF_VNET_HDR)
