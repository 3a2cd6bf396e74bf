"""A WireGuard device, sans-IO: peers, cryptokey routing and roaming.

Packets from the TUN side go in with `send_packet`; datagrams from the UDP
side go in with `receive_datagram` and their source. Out come datagrams with
the endpoint to send them to, and packets to deliver to the TUN side.
Nothing raises on bad input: it is dropped and counted.

Every handshake message (initiation, response) first passes the cookie gate
(`cookie.CookieChecker`): a bad MAC1 is dropped before any Diffie-Hellman;
under load (`LoadPolicy`: behind, by the handshake messages the caller says
are still waiting) a message without a valid MAC2 for its source gets
a cookie reply instead (paper, section 5.4.7; the kernel's receive.c), and
one with a valid MAC2 is dropped if its source address has sent more than its
share (`ratelimiter`: 20 a second, bursts of 5, as the kernel's ratelimiter.c).

With ``record_secrets``, the secrets of every handshake message a peer makes
are kept until `drain_secrets` hands them out (for a key log: `keylog`).
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network

from cryptography.exceptions import InvalidTag

from harness.pyref.cookie import DEFAULT_LOAD_POLICY, Admission, CookieChecker, LoadPolicy, source_bytes
from harness.pyref.crypto import TAG_LEN, public_of, static_static
from harness.pyref.keylog import HandshakeSecrets
from harness.pyref.messages import (
    COOKIE_REPLY,
    INITIATION,
    INITIATION_LEN,
    RESPONSE,
    RESPONSE_LEN,
    TRANSPORT,
    TRANSPORT_HEADER_LEN,
    MessageError,
    parse_initiation,
)
from harness.pyref.noise import HandshakeError, UnknownPeerError, consume_initiation
from harness.pyref.peer import Peer
from harness.pyref.routing import AllowedIPs
from harness.pyref.transport import DEFAULT_MTU, MAX_MTU

Endpoint = tuple[str, int]
_RECEIVER_COUNTER = struct.Struct("<IQ")


@dataclass
class DeviceCounters:
    no_route: int = 0
    no_endpoint: int = 0
    unknown_peer: int = 0
    not_allowed_source: int = 0
    malformed: int = 0
    bad_mac1: int = 0
    """Handshake messages not made for our public key, dropped before any Diffie-Hellman."""
    cookie_replies_sent: int = 0
    """Handshake messages answered with a cookie reply (under load, no valid MAC2)."""
    rate_limited: int = 0
    """Handshake messages dropped under load although their MAC2 was valid: their source
    address (IPv4, or IPv6 /64) had used up its 20 a second, bursts of 5 (the kernel's
    ratelimiter.c, consulted by cookie.c; `ratelimiter.RateLimiter`)."""
    unauthenticated: int = 0
    """Initiations with a valid MAC1 that did not decrypt."""
    no_private_key: int = 0
    """Packets and handshake messages dropped because the device has no private key yet."""


@dataclass(slots=True)
class PeerEntry:
    peer: Peer
    endpoint: Endpoint | None
    allowed: list[str]
    indices: set[int] = field(default_factory=set)
    """The receiver indices this entry has in the device's map."""
    static_static: bytes = field(default=bytes(32), repr=False)
    """DH(our static key, the peer's), computed when the peer or our key arrives and used
    by every initiation from the peer (the kernel's precomputed_static_static, noise.c);
    zeros while we have no key, or for a low-order peer key (its initiations are refused)."""
    tx_bytes: int = 0
    """Bytes of the datagrams handed out for this peer's endpoint (wireguard-go's SendBuffers)."""
    rx_bytes: int = 0
    """Bytes of the authenticated datagrams from this peer (wireguard-go's receive.go)."""


class Device:
    def __init__(
        self,
        static_private: bytes | None,
        random: Callable[[int], bytes],
        mtu: int = DEFAULT_MTU,
        *,
        load_policy: LoadPolicy = DEFAULT_LOAD_POLICY,
        record_secrets: bool = False,
    ) -> None:
        # No key is the all-zero key, as in wireguard-go: no handshakes until one is set.
        self.static_private = static_private if static_private is not None else bytes(32)
        self.static_public = public_of(static_private) if static_private is not None else bytes(32)
        self.random = random
        self.mtu = 0
        """The interface's MTU, which padding never passes (0: unknown); change it with `set_mtu`."""
        self.listen_port = 0
        """The UDP port the I/O layer bound (0: none); kept here for the UAPI."""
        self.fwmark = 0
        """The socket mark for the I/O layer to apply (0: none); kept here for the UAPI."""
        self._wall_offset = 0.0
        self._cookies = CookieChecker(self.static_public, random, load_policy)
        self.peers: dict[bytes, PeerEntry] = {}
        self.routes: AllowedIPs[PeerEntry] = AllowedIPs()
        self.counters = DeviceCounters()
        # receiver index -> peer; refreshed after every call that can start a handshake,
        # stale entries dropped when looked up.
        self._by_index: dict[int, PeerEntry] = {}
        self._secrets: list[HandshakeSecrets] | None = [] if record_secrets else None
        self.set_mtu(mtu)

    def add_peer(
        self,
        public_key: bytes,
        allowed_ips: list[str],
        endpoint: Endpoint | None = None,
        *,
        psk: bytes = bytes(32),
        persistent_keepalive: float | None = None,
    ) -> Peer:
        self.remove_peer(public_key)
        on_secrets = self._secrets.append if self._secrets is not None else None
        peer = Peer(self.static_private, public_key, self.random, psk=psk,
                    persistent_keepalive=persistent_keepalive, mtu=self.mtu, on_secrets=on_secrets,
                    index_in_use=self._by_index.__contains__)  # fmt: skip
        peer.wall_offset = self._wall_offset
        entry = PeerEntry(peer, endpoint, list(allowed_ips))
        self._precompute(entry)
        self.peers[public_key] = entry
        for prefix in allowed_ips:
            self.routes.insert(prefix, entry)
        return peer

    def set_mtu(self, mtu: int) -> int:
        """Take the interface's new MTU (0: unknown), for every peer's padding from the
        next packet on; the MTU applied. As wireguard-go's RoutineTUNEventReader
        (device/tun.go): one above `MAX_MTU` is capped to it, a negative one is refused
        (ValueError) and the old one kept."""
        if mtu < 0:
            raise ValueError(f"MTU {mtu} is negative")
        self.mtu = min(mtu, MAX_MTU)
        for entry in self.peers.values():
            entry.peer.mtu = self.mtu
        return self.mtu

    @property
    def wall_offset(self) -> float:
        """Unix time minus the ``now`` the caller passes in: the core reads no clock,
        but initiation timestamps must be wall-clock (the I/O layer sets this once)."""
        return self._wall_offset

    @wall_offset.setter
    def wall_offset(self, offset: float) -> None:
        self._wall_offset = offset
        for entry in self.peers.values():
            entry.peer.wall_offset = offset

    def drain_secrets(self) -> list[HandshakeSecrets]:
        """The secrets of the handshake messages made since the last call, oldest
        first (always empty without ``record_secrets``)."""
        if not self._secrets:
            return []
        out = list(self._secrets)
        self._secrets.clear()
        return out

    def remove_peer(self, public_key: bytes) -> None:
        entry = self.peers.pop(public_key, None)
        if entry is not None:
            self.routes.remove_peer(entry)
            self._forget_indices(entry, set())

    # -- configuration (what the UAPI `set` needs; peers are updated in place) --
    @property
    def has_private_key(self) -> bool:
        return self.static_private != bytes(32)

    def set_private_key(self, static_private: bytes | None) -> None:
        """Replace the device's key (None or zeros: remove it). As wireguard-go's
        SetPrivateKey: a peer with the new public key is removed, the others keep
        their sessions for receiving but handshake again under the new key."""
        key = static_private if static_private is not None else bytes(32)
        if key == self.static_private:
            return
        public = public_of(key)
        self.remove_peer(public)
        self.static_private, self.static_public = key, public
        for entry in self.peers.values():
            entry.peer.set_static_private(key)
            self._precompute(entry)

    def _precompute(self, entry: PeerEntry) -> None:
        """The static-static DH with a peer, computed when the peer or our key arrives
        rather than in a handshake (as the kernel's wg_noise_precompute_static_static):
        kept in the entry for the initiations it sends us, and in `crypto.static_static`'s
        cache for those we send it."""
        entry.static_static = bytes(32)
        if self.has_private_key:
            with contextlib.suppress(ValueError):  # a low-order key: its handshakes fail anyway
                entry.static_static = static_static(self.static_private, entry.peer.peer_public)

    def _static_static_of(self, peer_public: bytes) -> bytes | None:
        """The precomputed static-static secret with a peer, None for a key that is no peer's
        (`noise.consume_initiation`'s ``lookup``)."""
        entry = self.peers.get(peer_public)
        return entry.static_static if entry is not None else None

    def add_allowed_ip(self, public_key: bytes, prefix: str) -> None:
        """Give ``prefix`` to a peer (taking it from any other)."""
        self.routes.insert(prefix, self.peers[public_key])

    def remove_allowed_ip(self, public_key: bytes, prefix: str) -> None:
        """Take ``prefix`` from a peer, if that peer has it."""
        self.routes.remove(prefix, self.peers[public_key])

    def clear_allowed_ips(self, public_key: bytes) -> None:
        self.routes.remove_peer(self.peers[public_key])

    def allowed_ips(self, public_key: bytes) -> list[IPv4Network | IPv6Network]:
        """A peer's prefixes, masked, oldest first."""
        return self.routes.entries(self.peers[public_key])

    def _forget_indices(self, entry: PeerEntry, keep: set[int]) -> None:
        for index in entry.indices - keep:
            if self._by_index.get(index) is entry:
                del self._by_index[index]
        entry.indices &= keep

    def _out(self, entry: PeerEntry, datagrams: list[bytes]) -> list[tuple[bytes, Endpoint]]:
        indices = entry.peer.local_indices()
        if indices != entry.indices:
            self._forget_indices(
                entry, indices
            )  # ended sessions and abandoned handshakes: the map stays bounded
            for index in indices - entry.indices:
                self._by_index[index] = entry
            entry.indices |= indices
        if not datagrams:
            return []
        if entry.endpoint is None:
            self.counters.no_endpoint += len(datagrams)
            return []
        entry.tx_bytes += sum(len(d) for d in datagrams)
        return [(d, entry.endpoint) for d in datagrams]

    def send_packet(self, packet: bytes, now: float) -> list[tuple[bytes, Endpoint]]:
        if len(packet) >= 20 and packet[0] >> 4 == 4:
            entry = self.routes.lookup(packet[16:20])
        elif len(packet) >= 40 and packet[0] >> 4 == 6:
            entry = self.routes.lookup(packet[24:40])
        else:
            entry = None
        if entry is None:
            self.counters.no_route += 1
            return []
        if not self.has_private_key:
            self.counters.no_private_key += 1
            return []
        out = entry.peer.send(packet, now)
        if len(out) == 1 and out[0][0] == TRANSPORT and entry.endpoint is not None:
            # the data path: one sealed packet, no handshake began, so no index changed
            entry.tx_bytes += len(out[0])
            return [(out[0], entry.endpoint)]
        return self._out(entry, out)

    def _entry_for_index(self, index: int) -> PeerEntry | None:
        # Every change to a peer's indices goes through `_out` (or `remove_peer`), which keeps
        # this map to the peer's live indices; a stale one finds no session in the peer.
        return self._by_index.get(index)

    @property
    def load_policy(self) -> LoadPolicy:
        """When this device asks for cookies; may be replaced at any time."""
        return self._cookies.policy

    @load_policy.setter
    def load_policy(self, policy: LoadPolicy) -> None:
        self._cookies.policy = policy

    def under_load(self, now: float) -> bool:
        """Whether a handshake message arriving now needs a valid MAC2."""
        return self._cookies.under_load(now)

    def _gate(self, datagram: bytes, source: Endpoint, now: float) -> list[tuple[bytes, Endpoint]] | None:
        """None if this handshake message may go on to Diffie-Hellman, else what to send instead."""
        expected = INITIATION_LEN if datagram[0] == INITIATION else RESPONSE_LEN
        if len(datagram) != expected or datagram[1:4] != bytes(3):
            self.counters.malformed += 1
            return []
        self._cookies.rekey(self.static_public)  # in case the key was changed since
        src = source_bytes(*source)
        admission = self._cookies.check(datagram, src, now)
        if admission is Admission.BAD_MAC1:
            self.counters.bad_mac1 += 1
            return []
        if admission is Admission.NEEDS_COOKIE:
            self.counters.cookie_replies_sent += 1
            return [(self._cookies.reply(datagram, src, now).encode(), source)]
        if admission is Admission.RATE_LIMITED:
            self.counters.rate_limited += 1
            return []
        return None

    def _receive_transport(
        self, datagram: bytes, source: Endpoint, now: float
    ) -> tuple[list[tuple[bytes, Endpoint]], list[bytes]]:
        """The data path: a transport datagram, checked and opened with as little as possible."""
        if len(datagram) < TRANSPORT_HEADER_LEN + TAG_LEN or datagram[1:4] != b"\0\0\0":
            self.counters.malformed += 1
            return [], []
        receiver, counter = _RECEIVER_COUNTER.unpack_from(datagram, 4)
        entry = self._by_index.get(receiver)
        if entry is None:
            self.counters.unknown_peer += 1
            return [], []
        peer = entry.peer
        confirming = peer.next
        out, packet, ok = peer.receive_transport(receiver, counter, datagram, now)
        if not ok:
            return [], []
        entry.endpoint = source  # roaming: authenticated, so the peer is where this came from
        entry.rx_bytes += len(datagram)
        replies = self._out(entry, out) if out or (confirming is not None and peer.next is None) else []
        if packet is None:
            return replies, []
        # cryptokey routing: the inner source must be one of this peer's allowed IPs
        if len(packet) >= 20 and packet[0] >> 4 == 4:
            owner = self.routes.lookup(packet[12:16])
        elif len(packet) >= 40 and packet[0] >> 4 == 6:
            owner = self.routes.lookup(packet[8:24])
        else:
            owner = None
        if owner is not entry:
            self.counters.not_allowed_source += 1
            return replies, []
        return replies, [packet]

    def receive_datagram(
        self, datagram: bytes, source: Endpoint, now: float, waiting: int = 0
    ) -> tuple[list[tuple[bytes, Endpoint]], list[bytes]]:
        """``waiting``: how many handshake messages (initiations, responses, cookie
        replies) the caller has read and not yet passed in, behind this one: the
        length of upstream's handshake queue, which decides whether the device is
        under load (`LoadPolicy`)."""
        kind = datagram[0] if datagram else 0
        if kind == TRANSPORT:
            return self._receive_transport(datagram, source, now)
        if waiting:
            self._cookies.observe(waiting, now)
        entry: PeerEntry | None = None
        if kind in (INITIATION, RESPONSE) and not self.has_private_key:
            self.counters.no_private_key += 1
            return [], []
        if kind in (INITIATION, RESPONSE):
            answer = self._gate(datagram, source, now)
            if answer is not None:
                return answer, []
        try:
            if kind == INITIATION:
                # The peer is looked up as soon as its static key is decrypted, before the
                # static-static DH and the timestamp (the kernel's noise.c): a stranger costs one DH.
                seen = consume_initiation(
                    self.static_private,
                    parse_initiation(datagram),
                    mac1_checked=True,
                    lookup=self._static_static_of,
                )
                entry = self.peers[seen.peer_public]
                out = entry.peer.accept_initiation(seen, now)
                if out:
                    entry.endpoint = source  # roaming: the latest authenticated source
                    entry.rx_bytes += len(datagram)
                return self._out(entry, out), []
            if kind in (RESPONSE, COOKIE_REPLY) and len(datagram) >= 12:
                index = int.from_bytes(datagram[8:12] if kind == RESPONSE else datagram[4:8], "little")
                entry = self._entry_for_index(index)
        except MessageError:
            self.counters.malformed += 1
            return [], []
        except UnknownPeerError:
            self.counters.unknown_peer += 1
            return [], []
        except (HandshakeError, InvalidTag):
            self.counters.unauthenticated += 1
            return [], []
        if entry is None:
            self.counters.unknown_peer += 1
            return [], []
        before = (
            entry.peer.counters.unauthenticated + entry.peer.counters.replayed + entry.peer.counters.malformed
        )
        out, _ = entry.peer.receive(datagram, now)  # a response or a cookie reply: no packet inside
        after = (
            entry.peer.counters.unauthenticated + entry.peer.counters.replayed + entry.peer.counters.malformed
        )
        if after == before and out:
            entry.endpoint = source  # roaming: authenticated, so the peer is where this came from
            entry.rx_bytes += len(datagram)
        return self._out(entry, out), []

    def deadline(self) -> float | None:
        if not self.has_private_key:
            return None
        times = [t for e in self.peers.values() if (t := e.peer.deadline()) is not None]
        return min(times) if times else None

    def tick(self, now: float) -> list[tuple[bytes, Endpoint]]:
        out: list[tuple[bytes, Endpoint]] = []
        if not self.has_private_key:
            return out
        for entry in self.peers.values():
            due = entry.peer.deadline()
            if due is not None and due <= now:
                out += self._out(entry, entry.peer.tick(now))
        return out
