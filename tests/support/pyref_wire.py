"""Two pyref devices wired together in memory (shared by the pyref tests)."""

from __future__ import annotations

import os

from harness.pyref.crypto import public_of
from harness.pyref.device import Device, Endpoint

A_EP: Endpoint = ("198.18.0.1", 51820)
B_EP: Endpoint = ("198.18.0.2", 51821)


def carry(
    a: Device, b: Device, out: list[tuple[bytes, Endpoint]], now: float = 0.0, src_of_a: Endpoint = A_EP
) -> list[bytes]:
    """Deliver a's datagrams to b and every answer back and forth, until quiet;
    the packets delivered on either side."""
    delivered: list[bytes] = []
    flights = [(b, d, src_of_a) for d, _ in out]
    while flights:
        dev, d, src = flights.pop(0)
        more, packets = dev.receive_datagram(d, src, now)
        delivered += packets
        other, my_src = (a, B_EP) if dev is b else (b, src_of_a)
        flights += [(other, m, my_src) for m, _ in more]
    return delivered


def pair() -> tuple[Device, Device]:
    """Two devices that know each other: a is 198.19.0.1 at A_EP, b 198.19.0.2 at B_EP."""
    ka, kb = os.urandom(32), os.urandom(32)
    a, b = Device(ka, os.urandom), Device(kb, os.urandom)
    a.add_peer(public_of(kb), ["198.19.0.2/32"], B_EP)
    b.add_peer(public_of(ka), ["198.19.0.1/32"], A_EP)
    return a, b
