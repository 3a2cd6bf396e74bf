"""Cryptokey routing: allowed IPs with longest-prefix match (WireGuard paper,
section 2). One table for IPv4 and IPv6; a prefix belongs to one peer at a
time (giving it to another peer takes it from the first), as in `wg set`."""

from __future__ import annotations

import ipaddress
from typing import Generic, TypeVar

P = TypeVar("P")
_Key = tuple[int, int, int]  # (version, prefix length, network bits)


def _key(prefix: str) -> _Key:
    net = ipaddress.ip_network(prefix, strict=False)
    bits = 32 if net.version == 4 else 128
    return (
        net.version,
        net.prefixlen,
        int(net.network_address) >> (bits - net.prefixlen) if net.prefixlen else 0,
    )


class AllowedIPs(Generic[P]):
    def __init__(self) -> None:
        # (version, prefix length) -> {network bits: peer}
        self._tables: dict[tuple[int, int], dict[int, P]] = {}
        # id(peer) -> its prefixes, in the order they were given (for `entries`)
        self._owned: dict[int, dict[_Key, None]] = {}

    def insert(self, prefix: str, peer: P) -> None:
        key = _key(prefix)
        table = self._tables.setdefault(key[:2], {})
        old = table.get(key[2])
        if old is not None and old is not peer:
            self._owned[id(old)].pop(key, None)
        table[key[2]] = peer
        self._owned.setdefault(id(peer), {})[key] = None

    def remove(self, prefix: str, peer: P) -> None:
        """Take ``prefix`` from ``peer``; nothing if another peer (or none) has it."""
        key = _key(prefix)
        table = self._tables.get(key[:2], {})
        if table.get(key[2]) is peer:
            del table[key[2]]
            self._owned[id(peer)].pop(key, None)

    def remove_peer(self, peer: P) -> None:
        for version, plen, bits in self._owned.pop(id(peer), {}):
            del self._tables[version, plen][bits]

    def entries(self, peer: P) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The prefixes ``peer`` has, masked, oldest first."""
        out: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for version, plen, bits in self._owned.get(id(peer), {}):
            width = 32 if version == 4 else 128
            address = bits << (width - plen) if plen else 0
            if version == 4:
                out.append(ipaddress.IPv4Network((address, plen)))
            else:
                out.append(ipaddress.IPv6Network((address, plen)))
        return out

    def lookup(self, address: bytes) -> P | None:
        """The peer for a raw 4- or 16-byte address, by longest prefix."""
        version, bits = (4, 32) if len(address) == 4 else (6, 128)
        value = int.from_bytes(address, "big")
        for plen in range(bits, -1, -1):
            table = self._tables.get((version, plen))
            if table:
                peer = table.get(value >> (bits - plen) if plen else 0)
                if peer is not None:
                    return peer
        return None
