"""Cryptokey routing: allowed IPs with longest-prefix match (WireGuard paper,
section 2). One table for IPv4 and IPv6; a prefix belongs to one peer at a
time (giving it to another peer takes it from the first), as in `wg set`."""

from __future__ import annotations

import ipaddress
from typing import Generic, TypeVar

P = TypeVar("P")


class AllowedIPs(Generic[P]):
    def __init__(self) -> None:
        # (version, prefix length) -> {network bits: peer}
        self._tables: dict[tuple[int, int], dict[int, P]] = {}

    def insert(self, prefix: str, peer: P) -> None:
        net = ipaddress.ip_network(prefix, strict=False)
        bits = 32 if net.version == 4 else 128
        key = int(net.network_address) >> (bits - net.prefixlen) if net.prefixlen else 0
        self._tables.setdefault((net.version, net.prefixlen), {})[key] = peer

    def remove_peer(self, peer: P) -> None:
        for table in self._tables.values():
            for key in [k for k, v in table.items() if v is peer]:
                del table[key]

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
