"""A Linux TUN device for pyref (thin I/O; nothing protocol-related here).

The interface carries IP packets (IFF_TUN | IFF_NO_PI). With offloads
(the default), IFF_VNET_HDR and TUNSETOFFLOAD(CSUM, TSO4, TSO6) are set: every
read and write then starts with a virtio_net_hdr, a read may be a TCP
super-packet of up to 64 KiB, and a write may be one (`offload.py` cuts and
merges them). Ioctl numbers are from <linux/if_tun.h>.

The MTU belongs to the interface: a new one gets 1420 (`DEFAULT_MTU`, as
wireguard-go's CreateTUN gives its TUN), `read_mtu` asks the kernel for the
current one (SIOCGIFMTU, as wireguard-go's NativeTun.MTU), and a `LinkWatcher`
says when it may have changed (see there).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct

from harness.pyref.io.offload import IFF_VNET_HDR, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUNSETOFFLOAD
from harness.pyref.transport import DEFAULT_MTU

TUNSETIFF = 0x400454CA
TUNGETIFF = 0x800454D2
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFNAMSIZ = 16
# <linux/sockios.h>
SIOCGIFMTU = 0x8921
SIOCSIFMTU = 0x8922
# <linux/rtnetlink.h>, <linux/netlink.h>
RTMGRP_LINK = 0x1
RTM_NEWLINK = 16
_IFREQ_INT = struct.Struct("16si20x")  # struct ifreq (40 bytes on 64-bit): the name, then ifr_mtu
_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change


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
        set_mtu(tun_name(fd), DEFAULT_MTU)  # the kernel's TUN starts at 1500
    except OSError as exc:
        os.close(fd)
        raise TunError(f"cannot create TUN interface {name}: {exc.strerror}") from None
    return fd


def has_vnet_header(fd: int) -> bool:
    """Does this TUN descriptor (perhaps inherited) prefix packets with a virtio_net_hdr?"""
    ifr = fcntl.ioctl(fd, TUNGETIFF, bytes(struct.calcsize("16sH")))
    return bool(struct.unpack("16sH", ifr)[1] & IFF_VNET_HDR)


def tun_name(fd: int) -> str:
    """The interface's name now (TUNGETIFF: it follows `ip link set NAME name NEW`)."""
    ifr = fcntl.ioctl(fd, TUNGETIFF, bytes(struct.calcsize("16sH")))
    return struct.unpack("16sH", ifr)[0].rstrip(b"\0").decode()


def _mtu_ioctl(name: str, request: int, mtu: int = 0) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = fcntl.ioctl(s.fileno(), request, _IFREQ_INT.pack(name.encode(), mtu))
    return int(_IFREQ_INT.unpack(ifr)[1])


def read_mtu(name: str) -> int:
    """The MTU of interface ``name`` (SIOCGIFMTU); OSError if there is no such interface."""
    return _mtu_ioctl(name, SIOCGIFMTU)


def set_mtu(name: str, mtu: int) -> None:
    """Set the MTU of interface ``name`` (SIOCSIFMTU), as `ip link set NAME mtu N` does."""
    _mtu_ioctl(name, SIOCSIFMTU, mtu)


def link_changed(data: bytes, index: int) -> bool:
    """Whether the netlink messages in ``data`` (one read of an rtnetlink socket)
    include an RTM_NEWLINK about interface ``index`` (which an MTU change sends)."""
    at = 0
    while at + _NLMSGHDR.size <= len(data):
        length, kind = _NLMSGHDR.unpack_from(data, at)[:2]
        if length < _NLMSGHDR.size or at + length > len(data):
            return False  # cut short or garbled: nothing more can be read from it
        body = at + _NLMSGHDR.size
        fits = body + _IFINFOMSG.size <= at + length
        if kind == RTM_NEWLINK and fits and _IFINFOMSG.unpack_from(data, body)[2] == index:
            return True
        at += (length + 3) & ~3  # messages are aligned to 4 bytes (NLMSG_ALIGN)
    return False


class LinkWatcher:
    """An rtnetlink socket subscribed to link changes (RTMGRP_LINK), for a selector:
    it becomes readable when an interface of this namespace changes.

    Why this and not re-reading the MTU: `ip link set NAME mtu N` makes the kernel
    send RTM_NEWLINK to this group, so a change is seen at once, without a timer
    waking an idle tunnel and without a syscall per packet; a larger packet from
    the TUN would reveal only a raised MTU, never a lowered one. wireguard-go
    listens the same way (tun/tun_linux.go, routineNetlinkListener, which turns
    an RTM_NEWLINK for its interface into EventMTUUpdate). If the socket's buffer
    overflowed (ENOBUFS), messages were lost: `changed` then says yes, and the
    MTU is read again, which costs one ioctl.
    """

    def __init__(self, index: int) -> None:
        self.index = index
        """The interface watched (its index; `socket.if_nametoindex`)."""
        self.sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
        )
        try:
            self.sock.bind((0, RTMGRP_LINK))
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def changed(self) -> bool:
        """Read every pending message; whether the watched interface may have changed."""
        seen = False
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return seen
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                seen = True  # lost messages: one of them may have been ours
                continue
            if not data:
                return seen
            seen = link_changed(data, self.index) or seen

    def close(self) -> None:
        self.sock.close()
