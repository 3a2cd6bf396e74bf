"""pyref's TUN and the interface's MTU: link-change messages read from
rtnetlink (unit), and for real (root, a fresh network namespace): a new TUN
starts at 1420 as wireguard-go's does, its MTU is read back by name and
after a rename, a link watcher wakes for an MTU change of its interface and
not of another, and the server hands the new MTU to the device."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

from harness.pyref.io.tun import RTM_NEWLINK, link_changed
from tests.support.netns_child import run_in_namespace

RTM_NEWADDR = 20  # <linux/rtnetlink.h>
IFLA_MTU = 4  # <linux/if_link.h>


def newlink(index: int, mtu: int, kind: int = RTM_NEWLINK) -> bytes:
    """An rtnetlink message laid out as <linux/netlink.h> and <linux/rtnetlink.h> say:
    nlmsghdr, ifinfomsg, then one attribute (IFLA_MTU)."""
    body = struct.pack("=BxHiII", 0, 0xFFFE, index, 0x1043, 0) + struct.pack("=HHI", 8, IFLA_MTU, mtu)
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def test_link_changed_finds_its_interface_among_the_messages() -> None:
    """As wireguard-go's routineNetlinkListener (tun/tun_linux.go): an RTM_NEWLINK whose
    ifinfomsg names our index means our interface changed; others are not ours."""
    ours, other = newlink(7, 1280), newlink(3, 1280)
    assert link_changed(ours, 7)
    assert not link_changed(other, 7)
    assert link_changed(other + ours, 7)  # several messages in one read
    assert not link_changed(newlink(7, 1280, RTM_NEWADDR), 7)  # an address, not the link
    assert not link_changed(b"", 7)
    assert not link_changed(ours[:20], 7)  # cut short: the header claims more than there is
    assert not link_changed(struct.pack("=IHHII", 0, RTM_NEWLINK, 0, 0, 0) + ours, 7)  # a 0 length stops
    assert not link_changed(newlink(7, 1280)[:16] + bytes(4), 7)  # no room for an ifinfomsg


def tun_check() -> dict[str, object]:
    """Runs inside a fresh network namespace (a child process)."""
    import selectors
    import socket

    from harness.pyref.io.server import Server
    from harness.pyref.io.tun import LinkWatcher, open_tun, read_mtu, tun_name

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    def readable(watcher: LinkWatcher, timeout: float) -> bool:
        with selectors.DefaultSelector() as sel:
            sel.register(watcher, selectors.EVENT_READ)
            return bool(sel.select(timeout))

    res: dict[str, object] = {}
    ip("link", "set", "lo", "up")
    fd = open_tun("wghmtu0")
    res["created"] = read_mtu(tun_name(fd))
    watcher = LinkWatcher(socket.if_nametoindex("wghmtu0"))
    ip("link", "set", "dev", "lo", "mtu", "1400")  # another interface changes
    res["other_readable"] = readable(watcher, 2.0)
    res["other_changed"] = watcher.changed()
    ip("link", "set", "dev", "wghmtu0", "mtu", "1280")
    res["ours_readable"] = readable(watcher, 2.0)
    res["ours_changed"] = watcher.changed()
    res["after_change"] = read_mtu("wghmtu0")
    res["drained"] = watcher.changed()  # nothing new since
    watcher.close()
    ip("link", "set", "dev", "wghmtu0", "name", "wghmtu1")
    res["renamed"] = [tun_name(fd), read_mtu(tun_name(fd))]

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(f"\0wgh-tun-test-{os.getpid()}")  # abstract: no file to remove
    listener.listen(1)
    server = Server("wghmtu1", fd, listener)
    try:
        res["server_start"] = server.device.mtu
        ip("link", "set", "dev", "wghmtu1", "mtu", "1380", "up")
        for _ in range(20):  # one wakeup per event; the link may send a few (up, addresses)
            for key, _events in server.selector.select(0.2):
                key.data(key.fileobj)
            if server.device.mtu == 1380:
                break
        res["server_followed"] = server.device.mtu
    finally:
        server.close()
    return res


def test_tun_mtu_is_read_and_followed(integration: None, no_leftovers: None) -> None:
    res = run_in_namespace(__file__, "tun-check", name="tun", timeout=60)
    assert res["created"] == 1420  # wireguard-go's CreateTUN: DefaultMTU (device/tun.go), not the TUN's 1500
    assert res["other_readable"] and not res["other_changed"]  # woken, but it was lo
    assert res["ours_readable"] and res["ours_changed"] and res["after_change"] == 1280
    assert not res["drained"]
    assert res["renamed"] == ["wghmtu1", 1280]  # the name is asked of the TUN each time
    assert res["server_start"] == 1280 and res["server_followed"] == 1380


if __name__ == "__main__" and sys.argv[1:2] == ["tun-check"]:
    print(json.dumps(tun_check()))
