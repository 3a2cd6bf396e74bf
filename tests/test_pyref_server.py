"""pyref's I/O glue (`server.py`) on its own: IPv6 zones between endpoints and sockaddrs."""

from __future__ import annotations

import socket

from harness.impl.pyref.server import Zones, sockaddr, source_endpoint


def test_a_zone_becomes_the_scope_id_of_the_sockaddr() -> None:
    """Python's sendto drops a zone left in the address text, so the glue moves it into
    the scope id: an interface name, else a decimal index, else 0 (Go's net resolves an
    AddrPort's zone so when wireguard-go's conn/bind_std.go sends)."""
    zones = Zones()
    lo = socket.if_nametoindex("lo")
    assert sockaddr(("fe80::1%lo", 5), zones) == ("fe80::1", 5, 0, lo)
    assert sockaddr(("fe80::1%7", 5), zones) == ("fe80::1", 5, 0, 7)
    assert sockaddr(("fe80::1%nosuch0", 5), zones) == ("fe80::1", 5, 0, 0)
    assert sockaddr(("fe80::1%4294967296", 5), zones) == ("fe80::1", 5, 0, 0)  # no 32-bit index
    assert sockaddr(("::ffff:1.2.3.4%lo", 5), zones) == ("::ffff:1.2.3.4", 5, 0, lo)
    assert sockaddr(("2001:db8::1", 5), zones) == ("2001:db8::1", 5)
    assert sockaddr(("1.2.3.4", 5), zones) == ("1.2.3.4", 5)


def test_a_scope_id_received_becomes_the_zone() -> None:
    """A datagram from a link-local address keeps its interface, as the interface's
    name (Go's UDPAddr.Zone, which wireguard-go's receive path keeps in the endpoint)."""
    zones = Zones()
    lo = socket.if_nametoindex("lo")
    assert source_endpoint(("fe80::1", 5, 0, lo), zones) == ("fe80::1%lo", 5)
    assert source_endpoint(("fe80::1", 5, 0, 4000000000), zones) == ("fe80::1%4000000000", 5)
    assert source_endpoint(("2001:db8::1", 5, 0, 0), zones) == ("2001:db8::1", 5)
    assert source_endpoint(("1.2.3.4", 5), zones) == ("1.2.3.4", 5)
    # and back: what was received is sent to the same interface
    assert sockaddr(source_endpoint(("fe80::1", 5, 0, lo), zones), zones) == ("fe80::1", 5, 0, lo)
