"""A Linux TUN device for pyref (thin I/O; nothing protocol-related here).

The interface carries bare IP packets (IFF_TUN | IFF_NO_PI): one read is one
packet, one write delivers one packet to the kernel. Ioctl numbers are from
<linux/if_tun.h>.
"""

from __future__ import annotations

import fcntl
import os
import struct

TUNSETIFF = 0x400454CA
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


def open_tun(name: str) -> int:
    """A non-blocking file descriptor of a new TUN interface called ``name``."""
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise TunError(f"cannot open /dev/net/tun: {exc.strerror}") from None
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError as exc:
        os.close(fd)
        raise TunError(f"cannot create TUN interface {name}: {exc.strerror}") from None
    return fd
