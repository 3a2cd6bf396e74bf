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


CACHE_SIZE = 4096
"""Addresses whose lookup result is remembered (the data path looks up the same few)."""


class AllowedIPs(Generic[P]):
    def __init__(self) -> None:
        # (version, prefix length) -> {network bits: peer}
        self._tables: dict[tuple[int, int], dict[int, P]] = {}
        # id(peer) -> its prefixes, in the order they were given (for `entries`)
        self._owned: dict[int, dict[_Key, None]] = {}
        # version -> prefix lengths that have entries, longest first
        self._lengths: dict[int, list[int]] = {4: [], 6: []}
        # raw address -> lookup result; emptied on every change
        self._cache: dict[bytes, P | None] = {}

    def _changed(self) -> None:
        self._cache.clear()
        for version in (4, 6):
            self._lengths[version] = sorted(
                (plen for (v, plen), table in self._tables.items() if v == version and table), reverse=True
            )

    def insert(self, prefix: str, peer: P) -> None:
        key = _key(prefix)
        table = self._tables.setdefault(key[:2], {})
        old = table.get(key[2])
        if old is not None and old is not peer:
            self._owned[id(old)].pop(key, None)
        table[key[2]] = peer
        self._owned.setdefault(id(peer), {})[key] = None
        self._changed()

    def remove(self, prefix: str, peer: P) -> None:
        """Take ``prefix`` from ``peer``; nothing if another peer (or none) has it."""
        key = _key(prefix)
        table = self._tables.get(key[:2], {})
        if table.get(key[2]) is peer:
            del table[key[2]]
            self._owned[id(peer)].pop(key, None)
            self._changed()

    def remove_peer(self, peer: P) -> None:
        for version, plen, bits in self._owned.pop(id(peer), {}):
            del self._tables[version, plen][bits]
        self._changed()

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
        try:
            return self._cache[address]
        except KeyError:
            pass
        version, bits = (4, 32) if len(address) == 4 else (6, 128)
        value = int.from_bytes(address, "big")
        found: P | None = None
        for plen in self._lengths[version]:
            found = self._tables[version, plen].get(value >> (bits - plen) if plen else 0)
            if found is not None:
                break
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[address] = found
        return found
