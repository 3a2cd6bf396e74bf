"""pyref's I/O loop: the sans-IO `Device` between a TUN device, UDP sockets
and the userspace configuration socket (thin glue, single-threaded).

One `selectors` loop waits on the TUN descriptor, one UDP socket per address
family (bound to the same port, as wireguard-go does), the UAPI listener and
its connections, with the device's next timer deadline as the timeout. Every
wakeup reads a batch, feeds it to the device with the current time, and sends
what comes out. Given a key log, the handshake secrets the device recorded
are written to it after each wakeup (`keylog`).

A flood that overflows a UDP socket is shed in front of it: the kernel keeps
one in K of the flooding source's handshake messages (`shedding`, `sockfilter`),
so the other peers' are read; ``PYREF_NO_SHED=1`` turns that off.

The device pads to the TUN's MTU: read at start, and again whenever the
kernel reports a change of the interface (`tun.LinkWatcher` in the same loop),
then handed to the core with `Device.set_mtu`.

Nothing here waits on a UAPI client: its socket is non-blocking, an answer
it does not read yet stays buffered (one answer: the next request is taken
once it is sent) and is written as the socket takes it, so a client that
stops reading, or stops half-way through a request, holds only its own
connection up.

An endpoint's IPv6 zone travels in its address text, as in Go's netip
(``fe80::1%eth0``); it becomes the scope id of the sockaddr here, and a
datagram received with a scope id gets it back as the interface's name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from harness.pyref import uapi
from harness.pyref.device import Device, Endpoint
from harness.pyref.io import offload, sockfilter
from harness.pyref.io.tun import LinkWatcher, has_vnet_header, read_mtu, tun_name
from harness.pyref.keylog import keylog_lines
from harness.pyref.shedding import Shedder, describe

BATCH = 256
"""Packets or datagrams read per wakeup before the other sources get a turn."""
_HANDSHAKE_TYPES = frozenset((1, 2, 3))  # initiation, response, cookie reply: upstream's handshake queue
BEHIND_FILL = 7 / 8
"""A socket this full when pyref wakes is behind: the kernel drops a datagram that
does not fit (udp's __udp_enqueue_schedule_skb), so what arrives is being lost."""
MAX_DATAGRAM = 65535
MAX_FRAME = offload.VNET_HDR_LEN + 65535
# UDP segmentation and receive offload (Linux >= 4.18 / 5.0; <linux/udp.h>): one
# sendmsg carries many equal-sized datagrams, one recvmsg returns many coalesced.
SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
GSO_MAX_BYTES = 65000
GSO_MAX_SEGMENTS = 64
_GRO_CMSG_SPACE = socket.CMSG_SPACE(4)


UAPI_RECV = 65536
"""Bytes read from a UAPI client at a time (read again once all its requests are answered)."""


class Zones:
    """IPv6 zones to scope ids and back (interface names, or decimal indices), remembered.

    `forget` after a send fails: an interface may have gone or been renamed."""

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self._name: dict[int, str] = {}

    def index(self, zone: str) -> int:
        """The scope id of ``zone``: an interface's index, else the number it is, else 0."""
        known = self._index.get(zone)
        if known is None:
            try:
                known = socket.if_nametoindex(zone)
            except OSError:
                known = int(zone) if zone.isascii() and zone.isdigit() and int(zone) < 1 << 32 else 0
            self._index[zone] = known
        return known

    def name(self, index: int) -> str:
        """The zone text of scope id ``index``: the interface's name, else the number."""
        known = self._name.get(index)
        if known is None:
            try:
                known = socket.if_indextoname(index)
            except OSError:
                known = str(index)
            self._name[index] = known
        return known

    def forget(self) -> None:
        self._index.clear()
        self._name.clear()


def sockaddr(endpoint: Endpoint, zones: Zones) -> tuple[str, int] | tuple[str, int, int, int]:
    """What sendto takes for ``endpoint``: an IPv6 zone becomes the scope id (Python
    would drop one left in the address text)."""
    ip, port = endpoint
    if "%" not in ip:
        return endpoint
    address, _, zone = ip.partition("%")
    return address, port, 0, zones.index(zone)


def source_endpoint(addr: tuple[str, int] | tuple[str, int, int, int], zones: Zones) -> Endpoint:
    """The endpoint a datagram came from (what recvmsg returns, either family): an IPv6
    scope id becomes the zone, as the interface's name."""
    if len(addr) == 4 and addr[3]:
        return f"{addr[0]}%{zones.name(addr[3])}", addr[1]
    return addr[0], addr[1]


@dataclass
class UapiClient:
    """One UAPI connection: the protocol state and the answer not yet written."""

    sock: socket.socket
    conn: uapi.Connection
    out: bytes = b""
    sent: int = 0
    """How much of ``out`` the socket took."""
    events: int = selectors.EVENT_READ


class Server:
    """Owns the descriptors it is given and closes them in `close`."""

    def __init__(
        self,
        ifname: str,
        tun_fd: int,
        uapi_listener: socket.socket,
        log: Callable[[str], None] = lambda _: None,
        keylog: TextIO | None = None,
    ) -> None:
        self.ifname = ifname
        self.tun_fd = tun_fd
        self.listener = uapi_listener
        self.log = log
        self.keylog = keylog
        """Where the handshake secrets go (Wireshark's key log), or None; not closed here."""
        self.device = Device(None, os.urandom, record_secrets=keylog is not None)
        self.device.wall_offset = time.time() - time.monotonic()
        self.sockets: dict[int, socket.socket] = {}
        self.shedder: Shedder | None = Shedder() if os.environ.get("PYREF_NO_SHED") != "1" else None
        """Which sources' handshake messages the kernel thins out in front of the sockets
        (`shedding`, applied with `sockfilter`); None: floods are not shed."""
        self._drops: dict[int, int] = {}
        """The kernel's drop count of each socket (by family) when last read."""
        self.selector = selectors.DefaultSelector()
        self._clients: dict[socket.socket, UapiClient] = {}
        self.zones = Zones()
        self.stopping = False
        self.gso = os.environ.get("PYREF_NO_OFFLOAD") != "1"
        """Batch sends with UDP GSO and receives with UDP GRO (off if the kernel refuses them)."""
        self.vnet = has_vnet_header(tun_fd)
        """The TUN does offloads: reads are cut with `offload.split`, writes merged with `offload.coalesce`."""
        self.listener.setblocking(False)
        self.selector.register(self.tun_fd, selectors.EVENT_READ, self._on_tun)
        self.selector.register(self.listener, selectors.EVENT_READ, self._on_accept)
        self.links: LinkWatcher | None = None
        """Tells when the interface changed, so its MTU is read again (None: it could not be opened)."""
        try:
            self.links = LinkWatcher(socket.if_nametoindex(tun_name(tun_fd)))
        except OSError as exc:
            log(f"cannot watch the interface ({exc.strerror}): MTU changes will not be followed")
        else:
            self.selector.register(self.links, selectors.EVENT_READ, self._on_link)
        self.read_mtu()  # after the watcher: a change in between is not missed
        self.device.listen_port = self.bind(0)

    # -- the interface's MTU -----------------------------------------------
    def read_mtu(self) -> None:
        """Give the device the TUN's MTU, if it changed (as wireguard-go's RoutineTUNEventReader)."""
        try:
            mtu = read_mtu(tun_name(self.tun_fd))
        except OSError as exc:  # the interface is going away: its reads end the loop
            self.log(f"cannot read the MTU: {exc.strerror}")
            return
        if mtu == self.device.mtu:
            return
        try:
            applied = self.device.set_mtu(mtu)
        except ValueError as exc:
            self.log(f"MTU not updated: {exc}")
            return
        self.log(f"MTU {applied}" + (f" (the interface's {mtu} capped)" if applied != mtu else ""))

    def _on_link(self, links: LinkWatcher) -> None:
        if links.changed():
            self.read_mtu()

    # -- UDP -------------------------------------------------------------
    def bind(self, port: int) -> int:
        """(Re)bind the UDP sockets to ``port`` (0: any free one); the port bound.
        Raises OSError (EADDRINUSE...) and keeps the old sockets if that fails."""
        if self.sockets and port == self.device.listen_port and port != 0:
            return port
        fresh: dict[int, socket.socket] = {}
        try:
            v4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            fresh[socket.AF_INET] = v4
            v4.bind(("0.0.0.0", port))
            bound = v4.getsockname()[1]
            try:
                v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            except OSError:
                v6 = None  # no IPv6 in this namespace: IPv4 only
            if v6 is not None:
                fresh[socket.AF_INET6] = v6
                v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    v6.bind(("::", bound))
                except OSError as exc:
                    if exc.errno != errno.EADDRNOTAVAIL:
                        raise
                    v6.close()  # IPv6 disabled on this host
                    del fresh[socket.AF_INET6]
        except OSError:
            for s in fresh.values():
                s.close()
            raise
        for s in self.sockets.values():
            self.selector.unregister(s)
            s.close()
        self.sockets = fresh
        self._drops.clear()
        if self.shedder is not None and self.shedder.table:
            self._shed(self.shedder.table)
        for s in fresh.values():
            s.setblocking(False)
            if self.gso:
                try:
                    s.setsockopt(SOL_UDP, UDP_GRO, 1)
                except OSError:
                    self.gso = False
            self.selector.register(s, selectors.EVENT_READ, self._on_udp)
        self.log(f"UDP bound to port {bound}")
        return bound

    def _send(self, out: list[tuple[bytes, Endpoint]]) -> None:
        """Send datagrams; runs of equal size to one endpoint go out as one GSO send."""
        i, n = 0, len(out)
        while i < n:
            datagram, endpoint = out[i]
            size = len(datagram)
            j = i + 1
            if self.gso:
                limit = min(n, i + GSO_MAX_SEGMENTS, i + GSO_MAX_BYTES // size)
                while j < limit and out[j][1] == endpoint and len(out[j][0]) == size:
                    j += 1
                # the last segment of a GSO send may be shorter than the others
                if j < n and j - i < GSO_MAX_SEGMENTS and out[j][1] == endpoint and len(out[j][0]) < size:
                    j += 1
            self._sendmsg([d for d, _ in out[i:j]], endpoint, size)
            i = j

    def _sendmsg(self, datagrams: list[bytes], endpoint: Endpoint, size: int) -> None:
        ip, port = endpoint
        sock = self.sockets.get(socket.AF_INET6 if ":" in ip else socket.AF_INET)
        if sock is None:
            return
        try:
            dest = sockaddr(endpoint, self.zones)
            if len(datagrams) == 1:
                sock.sendto(datagrams[0], dest)
            else:
                sock.sendmsg(datagrams, [(SOL_UDP, UDP_SEGMENT, size.to_bytes(2, "little"))], 0, dest)
        except OSError as exc:  # unreachable, buffer full: lost datagrams, as on a wire
            if "%" in ip:
                self.zones.forget()  # the interface may have gone or been renamed
            if len(datagrams) > 1 and exc.errno in (errno.EIO, errno.EINVAL, errno.ENOPROTOOPT):
                self.log(f"UDP GSO refused ({exc.strerror}): sending datagrams one by one")
                self.gso = False
                for d in datagrams:
                    self._sendmsg([d], endpoint, len(d))
            else:
                self.log(f"send to {ip}:{port} failed: {exc.strerror}")

    # -- event handlers --------------------------------------------------
    def _on_tun(self, _obj: object) -> None:
        now = time.monotonic()
        send_packet = self.device.send_packet
        out: list[tuple[bytes, Endpoint]] = []
        split = offload.split if self.vnet else None
        for _ in range(BATCH):
            try:
                frame = os.read(self.tun_fd, MAX_FRAME)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in (errno.EBADFD, errno.EIO, errno.ENODEV):
                    self.log(f"TUN device gone: {exc.strerror}")
                    self.stopping = True
                    break
                raise
            if split is None:
                out += send_packet(frame, now)
            else:
                # Cut by the gso_size the kernel chose for this interface's MTU, limited only
                # by the largest IP packet: as wireguard-go's gsoSplit and the kernel's
                # skb_gso_segment, which do not look at the MTU; a packet longer than the
                # MTU is sent, padded by the modulo rule (transport.padding_length).
                for packet in split(frame, offload.MAX_IP_PACKET):
                    out += send_packet(packet, now)
        self._send(out)

    def _on_udp(self, sock: socket.socket) -> None:
        """Read what is waiting (up to BATCH datagrams, GRO super-datagrams cut into
        their segments), then hand it to the core in order. What was read is pyref's
        handshake queue: each handshake message goes in with the number of handshake
        messages still behind it, which is how the core tells it is under load.
        How full the socket was, what the kernel dropped, and the initiations and
        responses by source go to the shedder, whose table is applied when it changes."""
        now = time.monotonic()
        shedder = self.shedder
        behind, dropped = False, 0
        if shedder is not None:
            queued, size, drops = sockfilter.fill(sock)
            behind = queued >= size * BEHIND_FILL
            dropped = (drops - self._drops.get(sock.family, 0)) & 0xFFFFFFFF
            self._drops[sock.family] = drops
        read: list[tuple[bytes, Endpoint]] = []
        by_host: dict[str, int] = {}
        handshakes = 0
        for _ in range(BATCH):
            try:
                data, ancillary, _flags, addr = sock.recvmsg(MAX_DATAGRAM, _GRO_CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # ICMP errors surface here (connection refused): nothing to read
                continue
            if not data:  # an empty datagram: nothing to cut into segments, nothing for the core
                continue
            source = source_endpoint(addr, self.zones)
            segment = len(data)
            for level, kind, value in ancillary:
                if level == SOL_UDP and kind == UDP_GRO:
                    segment = int.from_bytes(value[:4], "little") or segment
            for offset in range(0, len(data), segment):
                datagram = data[offset : offset + segment] if segment < len(data) else data
                read.append((datagram, source))
                if datagram[0] in _HANDSHAKE_TYPES:
                    handshakes += 1
                    if datagram[0] != 3:  # what a flood sends, and the filter thins: not cookie replies
                        by_host[source[0]] = by_host.get(source[0], 0) + 1
        receive = self.device.receive_datagram
        out: list[tuple[bytes, Endpoint]] = []
        delivered: list[bytes] = []
        for datagram, source in read:
            if handshakes and datagram[0] in _HANDSHAKE_TYPES:
                handshakes -= 1
                replies, packets = receive(datagram, source, now, handshakes)
            else:
                replies, packets = receive(datagram, source, now)
            if replies:
                out += replies
            if packets:
                delivered += packets
        self._send(out)
        self._deliver(delivered)
        if shedder is not None:
            table = shedder.observe(len(read), by_host, dropped, behind, now)
            if table is not None:
                self._shed(table)

    def _shed(self, table: dict[bytes, int]) -> None:
        """Apply the shedder's table to every socket, and say what changed."""
        for s in self.sockets.values():
            try:
                sockfilter.apply(s, table)
            except (OSError, ValueError) as exc:  # the kernel drops at random, as it would without
                self.log(f"socket filter not applied ({exc}): floods are not shed")
        if table:
            shed = ", ".join(f"{describe(key)} 1 in {k}" for key, k in sorted(table.items()))
            self.log(f"flooded: keeping {shed} of the handshake messages")
        else:
            self.log("no flood: every handshake message is read")

    def _deliver(self, packets: list[bytes]) -> None:
        """Write decrypted packets to the TUN, TCP segments merged into super-packets if it offloads."""
        frames = offload.coalesce(packets, verify=False) if self.vnet else packets
        write, tun = os.write, self.tun_fd
        for frame in frames:
            with contextlib.suppress(BlockingIOError):
                write(tun, frame)

    def _on_accept(self, _obj: object) -> None:
        try:
            sock, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        sock.setblocking(False)
        client = UapiClient(sock, uapi.Connection(self.device, self.bind, self.set_mark))
        self._clients[sock] = client
        self.selector.register(sock, selectors.EVENT_READ, self._on_uapi)

    def _close_client(self, client: UapiClient) -> None:
        self.selector.unregister(client.sock)
        del self._clients[client.sock]
        client.sock.close()

    def _on_uapi(self, sock: socket.socket) -> None:
        """The client's socket can be read (no answer pending) or written (one is)."""
        client = self._clients[sock]
        if not client.out:
            try:
                data = sock.recv(UAPI_RECV)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # reset: the end of what it sent, as EOF is
                data = b""
            if data:
                client.conn.feed(data)
            else:
                client.conn.feed_eof()
        self._serve(client)

    def _serve(self, client: UapiClient) -> None:
        """Write what the socket takes, answering the waiting requests one after another;
        then wait for whatever can move this client on, or close it if nothing can."""
        conn = client.conn
        now, wall = time.monotonic(), time.time()
        while True:
            if client.sent < len(client.out):
                try:
                    client.sent += client.sock.send(memoryview(client.out)[client.sent :])
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:  # the client went away
                    self._close_client(client)
                    return
                continue
            client.out, client.sent = b"", 0
            answer = conn.answer(now, wall)
            if answer is None:
                break
            client.out = answer
        if conn.closed and not client.out:
            self._close_client(client)
            return
        events = selectors.EVENT_WRITE if client.out else selectors.EVENT_READ
        if events != client.events:
            self.selector.modify(client.sock, events, self._on_uapi)
            client.events = events

    def set_mark(self, mark: int) -> None:
        """Apply a fwmark to the UDP sockets (SO_MARK; 0 clears it)."""
        for s in self.sockets.values():
            s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)

    # -- the loop --------------------------------------------------------
    def run(self) -> None:
        """Serve until `stop` is called (from a signal handler) or the TUN device goes away."""
        select = self.selector.select
        device = self.device
        while not self.stopping:
            deadline = device.deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            for key, _ in select(timeout):
                key.data(key.fileobj)
            if deadline is not None:
                now = time.monotonic()
                if now >= deadline:
                    self._send(device.tick(now))
            if self.keylog is not None:
                self._write_secrets(self.keylog)

    def _write_secrets(self, keylog: TextIO) -> None:
        try:
            for secrets in self.device.drain_secrets():
                keylog.write(keylog_lines(secrets))
                keylog.flush()
        except OSError as exc:  # a full disk must not stop the tunnel: the key log stops instead
            self.log(f"key log write failed, no more secrets are written: {exc.strerror}")
            self.keylog = None

    def stop(self) -> None:
        self.stopping = True

    def close(self) -> None:
        for client in list(self._clients.values()):
            self._close_client(client)
        for s in self.sockets.values():
            s.close()
        self.sockets = {}
        if self.links is not None:
            self.links.close()
        self.selector.close()
        self.listener.close()
        with contextlib.suppress(OSError):
            os.close(self.tun_fd)
