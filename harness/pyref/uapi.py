"""The cross-platform userspace configuration protocol ("UAPI"), sans-IO.

What `wg` speaks to a userspace WireGuard over /var/run/wireguard/IFNAME.sock,
answered here as wireguard-go answers it. Learnt from the protocol's page
(https://www.wireguard.com/xplatform/#configuration-protocol) and read in
wireguard-go's device/uapi.go, ipc/uapi_unix.go and conn/ (errno values,
parsing, what a failed line leaves behind) and Go's net/netip (the address
syntax it accepts and prints); no code copied.

Rules:
- A connection carries requests one after another until EOF: ``get=1\\n\\n``,
  or ``set=1\\n``, ``key=value`` lines and a blank line. `RequestSplitter` cuts
  the byte stream into requests; `handle` answers one. `Connection` does both,
  one request at a time (the I/O layer takes the next answer once the last
  one is sent, as wireguard-go's connection goroutine writes an answer before
  it reads on), and closes where wireguard-go closes.
- A pending request may grow to `MAX_REQUEST` bytes; beyond that the
  connection is closed without an answer (pyref's bound: wireguard-go streams a
  ``set`` and has none).
- Every answer ends ``errno=N\\n\\n``; N is 0 or a negative errno:
  -EPROTO (a line without ``=``), -EINVAL (bad key or value), -EADDRINUSE (the
  port or mark could not be applied), -EIO (a line of 64 KiB or more).
- A ``set`` is applied line by line, as wireguard-go does: the lines before a
  bad one stay applied; wireguard-go then reads the rest of the request as
  operations and hangs up, so `Connection` closes after a failed set.
- A line that is not ``get=1`` or ``set=1`` where a request starts gets no
  answer: wireguard-go closes the connection.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from harness.pyref.device import Device, PeerEntry

EPROTO = -errno.EPROTO
EINVAL = -errno.EINVAL
EADDRINUSE = -errno.EADDRINUSE
EIO = -errno.EIO

MAX_PEERS = 1 << 16
"""wireguard-go refuses to create more peers than this (device/peer.go, MaxPeers)."""
MAX_LINE = 64 * 1024
"""A ``set`` line this long (without its newline) overflows Go's bufio.Scanner: -EIO."""
MAX_REQUEST = 64 * 1024 * 1024
"""The most a request not yet complete may hold (pyref's bound; `wg setconf` of
`MAX_PEERS` peers with a few allowed IPs each sends some 15 MB)."""

GET = b"get=1\n"
SET = b"set=1\n"


class UAPIError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# -- values, parsed as Go parses them ------------------------------------------
_DIGITS = re.compile(r"[0-9]+")
_PREFIX_LENGTH = re.compile(r"0|[1-9][0-9]*")
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
_HEX_GROUP = re.compile(r"[0-9a-fA-F]+")


def parse_uint(value: str, bits: int) -> int:
    """strconv.ParseUint(value, 10, bits): decimal digits only, leading zeros allowed."""
    if not _DIGITS.fullmatch(value) or int(value) >= 1 << bits:
        raise ValueError(f"not a {bits}-bit unsigned number: {value!r}")
    return int(value)


def parse_key(value: str) -> bytes:
    """Exactly 32 bytes of hex, either case (wireguard-go's loadExactHex)."""
    if not _HEX_KEY.fullmatch(value):
        raise ValueError("a key is 64 hex digits")
    return bytes.fromhex(value)


def clamp(key: bytes) -> bytes:
    """X25519 clamping, which wireguard-go applies to a private key it is given."""
    b = bytearray(key)
    b[0] &= 248
    b[31] = (b[31] & 127) | 64
    return bytes(b)


@dataclass(frozen=True)
class Address:
    version: int  # 4, or 6 (IPv4-mapped IPv6 addresses stay IPv6, as in Go)
    value: int
    zone: str = ""

    def __str__(self) -> str:
        if self.version == 4:
            text = str(ipaddress.IPv4Address(self.value))
        elif self.value >> 32 == 0xFFFF:  # IPv4-mapped: Go prints the dotted quad
            text = "::ffff:" + str(ipaddress.IPv4Address(self.value & 0xFFFFFFFF))
        else:  # RFC 5952, as Go: the first longest run of two or more zero groups becomes ::
            text = ipaddress.IPv6Address(self.value).compressed
        return f"{text}%{self.zone}" if self.zone else text


def _parse_ipv4(s: str) -> int:
    parts = s.split(".")
    if len(parts) != 4:
        raise ValueError("an IPv4 address has four fields")
    value = 0
    for part in parts:
        if not _DIGITS.fullmatch(part) or (len(part) > 1 and part[0] == "0") or int(part) > 255:
            raise ValueError(f"bad IPv4 field {part!r}")
        value = value << 8 | int(part)
    return value


def _parse_groups(part: str, last: bool) -> list[int]:
    """16-bit groups of one side of an IPv6 address; the last may be a dotted quad."""
    if not part:
        return []
    out: list[int] = []
    fields = part.split(":")
    for i, field in enumerate(fields):
        if last and i == len(fields) - 1 and "." in field:
            v4 = _parse_ipv4(field)
            out += [v4 >> 16, v4 & 0xFFFF]
        elif _HEX_GROUP.fullmatch(field) and int(field, 16) <= 0xFFFF:  # Go allows leading zeros
            out.append(int(field, 16))
        else:
            raise ValueError(f"bad IPv6 field {field!r}")
    return out


def parse_address(s: str) -> Address:
    """netip.ParseAddr: the first of '.', ':' or '%' decides IPv4 or IPv6."""
    first = next((c for c in s if c in ".:%"), "")
    if first == ".":
        return Address(4, _parse_ipv4(s))
    if first != ":":
        raise ValueError(f"not an IP address: {s!r}")
    s, percent, zone = s.partition("%")
    if percent and not zone:
        raise ValueError("empty zone")
    head, ellipsis, tail = s.partition("::")
    if ellipsis:
        groups = _parse_groups(head, False)
        after = _parse_groups(tail, True)
        if len(groups) + len(after) > 7:
            raise ValueError(":: must stand for at least one group")
        groups += [0] * (8 - len(groups) - len(after)) + after
    else:
        groups = _parse_groups(head, True)
        if len(groups) != 8:
            raise ValueError("an IPv6 address has eight groups")
    value = 0
    for g in groups:
        value = value << 16 | g
    return Address(6, value, zone)


def parse_prefix(s: str) -> tuple[Address, int]:
    """netip.ParsePrefix of Go 1.22 and later: address '/' bits; no zone. Not masked.

    The length is decimal digits without a sign or a leading zero ("0" itself
    is fine): Go 1.22 stopped taking all that strconv.Atoi takes (golang/go
    issue 63850), and wireguard-go's go.mod asks for Go 1.23.1 since
    0.0.20250515. (Debian 12's wireguard-go 0.0.20220316, built with Go 1.19,
    still takes ``/08``, ``/+8``, ``/-0``: answered -EINVAL here.)
    """
    addr_text, slash, bits_text = s.rpartition("/")
    if not slash:
        raise ValueError("no '/'")
    addr = parse_address(addr_text)
    if addr.zone:
        raise ValueError("a prefix has no zone")
    if not _PREFIX_LENGTH.fullmatch(bits_text):
        raise ValueError(f"bad prefix length {bits_text!r}")
    bits = int(bits_text)
    if not 0 <= bits <= (32 if addr.version == 4 else 128):
        raise ValueError("prefix length out of range")
    return addr, bits


def parse_endpoint(s: str) -> tuple[Address, int]:
    """netip.ParseAddrPort: ip:port or [ipv6]:port, numbers only. An IPv6 zone
    (``[fe80::1%eth0]:51820``, any non-empty text) is kept in the address."""
    host, colon, port_text = s.rpartition(":")
    if not colon or not host or not port_text:
        raise ValueError("not ip:port")
    bracketed = host[0] == "["
    if bracketed:
        if len(host) < 2 or host[-1] != "]":
            raise ValueError("missing ]")
        host = host[1:-1]
    port = parse_uint(port_text, 16)
    addr = parse_address(host)
    if bracketed != (addr.version == 6):
        raise ValueError("brackets go with IPv6 addresses, and only with them")
    return addr, port


def format_endpoint(host: str, port: int) -> str:
    """As Go's AddrPort.String: IPv6 in brackets."""
    with contextlib.suppress(ValueError):  # else not from us (a name?): shown as it is
        host = str(parse_address(host))
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _network_text(addr: Address, bits: int) -> str:
    """A prefix as the device's routing table takes it (host bits are masked there)."""
    if addr.version == 4:
        return f"{ipaddress.IPv4Address(addr.value)}/{bits}"
    return f"{ipaddress.IPv6Address(addr.value)}/{bits}"


# -- framing ---------------------------------------------------------------------
class RequestSplitter:
    """Cuts what a client sends into requests, as wireguard-go's IpcHandle reads them.

    `feed` returns the requests completed so far, `eof` the one the end of the
    stream completes (a ``set`` without its blank line is still applied). After
    something that is not a request, or once a pending request holds more than
    ``max_request`` bytes, `closed` is True and the rest is ignored.
    """

    def __init__(self, max_request: int = MAX_REQUEST) -> None:
        self._buf = bytearray()
        self._scanned = 0  # how far into a pending set request lines were checked
        self.max_request = max_request
        self.closed = False

    def feed(self, data: bytes) -> list[bytes]:
        if self.closed:
            return []
        self._buf += data
        out: list[bytes] = []
        while not self.closed:
            request = self._next()
            if request is None:
                break
            out.append(request)
        if len(self._buf) > self.max_request:  # what is left is a request not yet complete
            self.closed = True
            self._buf.clear()
        return out

    def eof(self) -> list[bytes]:
        """The end of the stream: a pending ``set`` is answered, anything else dropped."""
        if self.closed:
            return []
        self.closed = True
        if self._buf.startswith(SET):
            return [bytes(self._buf)]
        return []

    def _take(self, n: int) -> bytes:
        request = bytes(self._buf[:n])
        del self._buf[:n]
        self._scanned = 0
        return request

    def _next(self) -> bytes | None:
        nl = self._buf.find(b"\n")
        if nl < 0:
            if len(self._buf) > MAX_LINE:  # no operation is that long: stop buffering
                self.closed = True
            return None
        op = bytes(self._buf[: nl + 1])
        if op == GET:
            # wireguard-go reads exactly one more byte; if it is not '\n' the answer is
            # -EINVAL and reading resumes after it.
            return self._take(nl + 2) if len(self._buf) >= nl + 2 else None
        if op != SET:
            self.closed = True  # wireguard-go logs "invalid UAPI operation" and hangs up
            return None
        pos = max(self._scanned, nl + 1)
        while True:
            end = self._buf.find(b"\n", pos)
            if end < 0:
                if len(self._buf) - pos >= MAX_LINE:  # Go's scanner gives up here: -EIO, hang up
                    self.closed = True
                    return self._take(len(self._buf))
                self._scanned = pos
                return None
            line = self._buf[pos:end]
            if end - pos >= MAX_LINE:
                self.closed = True
                return self._take(end + 1)
            if line in (b"", b"\r"):  # bufio.ScanLines drops one trailing CR
                return self._take(end + 1)
            pos = end + 1


# -- get ---------------------------------------------------------------------------
def _get(device: Device, now: float, wall: float) -> str:
    lines: list[str] = []
    if device.has_private_key:
        lines.append(f"private_key={device.static_private.hex()}")
    if device.listen_port:
        lines.append(f"listen_port={device.listen_port}")
    if device.fwmark:
        lines.append(f"fwmark={device.fwmark}")
    for public_key, entry in device.peers.items():
        peer = entry.peer
        lines.append(f"public_key={public_key.hex()}")
        lines.append(f"preshared_key={peer.psk.hex()}")
        lines.append("protocol_version=1")
        if entry.endpoint is not None:
            lines.append(f"endpoint={format_endpoint(*entry.endpoint)}")
        sec = nsec = 0
        if peer.handshake_completed is not None:  # monotonic in the core; wall-clock here
            when = max(wall - (now - peer.handshake_completed), 0.0)
            sec = int(when)
            nsec = min(int((when - sec) * 1e9), 999_999_999)
        lines.append(f"last_handshake_time_sec={sec}")
        lines.append(f"last_handshake_time_nsec={nsec}")
        lines.append(f"tx_bytes={entry.tx_bytes}")
        lines.append(f"rx_bytes={entry.rx_bytes}")
        lines.append(f"persistent_keepalive_interval={int(peer.persistent_keepalive or 0)}")
        for net in device.allowed_ips(public_key):
            addr = Address(net.version, int(net.network_address))
            lines.append(f"allowed_ip={addr}/{net.prefixlen}")
    return "".join(line + "\n" for line in lines)


# -- set ---------------------------------------------------------------------------
@dataclass
class _PeerInProgress:
    """The peer a ``set`` is configuring (wireguard-go's ipcSetPeer)."""

    public_key: bytes
    entry: PeerEntry | None  # None: a placeholder whose lines are checked, not applied
    created: bool = False


class _Set:
    def __init__(
        self,
        device: Device,
        now: float,
        bind: Callable[[int], int],
        set_mark: Callable[[int], None] | None,
    ) -> None:
        self.device = device
        self.now = now
        self.bind = bind
        self.set_mark = set_mark
        self.peer: _PeerInProgress | None = None

    def run(self, body: str) -> int:
        lines = body.split("\n")
        # A final piece without its newline is a line the end of the stream ended.
        try:
            for raw in lines if lines[-1] else lines[:-1]:
                if len(raw) >= MAX_LINE:
                    raise UAPIError(EIO, "line too long")
                line = raw[:-1] if raw.endswith("\r") else raw
                if line == "":
                    break
                key, eq, value = line.partition("=")
                if not eq:
                    raise UAPIError(EPROTO, f"failed to parse line {line!r}")
                if key == "public_key":
                    self._public_key(value)
                elif self.peer is None:
                    self._device_line(key, value)
                else:
                    self._peer_line(self.peer, key, value)
        except UAPIError as exc:
            return exc.code
        return 0

    def _device_line(self, key: str, value: str) -> None:
        device = self.device
        if key == "private_key":
            try:
                private = parse_key(value)
            except ValueError as exc:
                raise UAPIError(EINVAL, f"private_key: {exc}") from None
            device.set_private_key(clamp(private) if any(private) else None)
        elif key == "listen_port":
            try:
                port = parse_uint(value, 16)
            except ValueError as exc:
                raise UAPIError(EINVAL, f"listen_port: {exc}") from None
            try:
                device.listen_port = self.bind(port)
            except OSError as exc:
                raise UAPIError(EADDRINUSE, f"listen_port: {exc}") from None
        elif key == "fwmark":
            try:
                mark = parse_uint(value, 32)
            except ValueError as exc:
                raise UAPIError(EINVAL, f"fwmark: {exc}") from None
            if mark != device.fwmark:
                device.fwmark = mark
                if self.set_mark is not None:
                    try:
                        self.set_mark(mark)
                    except OSError as exc:
                        raise UAPIError(EADDRINUSE, f"fwmark: {exc}") from None
        elif key == "replace_peers":
            if value != "true":
                raise UAPIError(EINVAL, f"replace_peers={value!r}")
            for public_key in list(device.peers):
                device.remove_peer(public_key)
        else:
            raise UAPIError(EINVAL, f"invalid device key {key!r}")

    def _public_key(self, value: str) -> None:
        try:
            public_key = parse_key(value)
        except ValueError as exc:
            raise UAPIError(EINVAL, f"public_key: {exc}") from None
        device = self.device
        if public_key == device.static_public:  # ourselves: lines checked, not applied
            self.peer = _PeerInProgress(public_key, None)
            return
        entry = device.peers.get(public_key)
        created = entry is None
        if entry is None:
            if len(device.peers) >= MAX_PEERS:
                raise UAPIError(EINVAL, "too many peers")
            device.add_peer(public_key, [])
            entry = device.peers[public_key]
        self.peer = _PeerInProgress(public_key, entry, created)

    def _true(self, key: str, value: str) -> None:
        if value != "true":
            raise UAPIError(EINVAL, f"{key}={value!r}")

    def _peer_line(self, p: _PeerInProgress, key: str, value: str) -> None:
        device = self.device
        entry = p.entry
        if key == "update_only":
            self._true(key, value)
            if p.created and entry is not None:
                device.remove_peer(p.public_key)
                p.entry = None
        elif key == "remove":
            self._true(key, value)
            if entry is not None:
                device.remove_peer(p.public_key)
            p.entry = None
        elif key == "preshared_key":
            try:
                psk = parse_key(value)
            except ValueError as exc:
                raise UAPIError(EINVAL, f"preshared_key: {exc}") from None
            if entry is not None:
                entry.peer.psk = psk
        elif key == "endpoint":
            try:
                addr, port = parse_endpoint(value)
            except ValueError as exc:
                raise UAPIError(EINVAL, f"endpoint {value!r}: {exc}") from None
            if entry is not None:
                entry.endpoint = (str(addr), port)
        elif key == "persistent_keepalive_interval":
            try:
                secs = parse_uint(value, 16)
            except ValueError as exc:
                raise UAPIError(EINVAL, f"persistent_keepalive_interval: {exc}") from None
            if entry is not None:  # turning it on sends a keepalive at once
                entry.peer.set_persistent_keepalive(secs or None, self.now)
        elif key == "replace_allowed_ips":
            self._true(key, value)
            if entry is not None:
                device.clear_allowed_ips(p.public_key)
        elif key == "allowed_ip":
            remove = value.startswith("-")
            try:
                addr, bits = parse_prefix(value[1:] if remove else value)
            except ValueError as exc:
                raise UAPIError(EINVAL, f"allowed_ip {value!r}: {exc}") from None
            if entry is not None:
                if remove:
                    device.remove_allowed_ip(p.public_key, _network_text(addr, bits))
                else:
                    device.add_allowed_ip(p.public_key, _network_text(addr, bits))
        elif key == "protocol_version":
            if value != "1":
                raise UAPIError(EINVAL, f"protocol_version={value!r}")
        else:
            raise UAPIError(EINVAL, f"invalid peer key {key!r}")


# -- requests ------------------------------------------------------------------------
def handle(
    device: Device,
    request: bytes,
    now: float,
    wall: float,
    bind: Callable[[int], int],
    *,
    set_mark: Callable[[int], None] | None = None,
) -> bytes:
    """The whole answer to one request from `RequestSplitter`, ``errno=N\\n\\n`` last.

    ``now`` is the core's monotonic time, ``wall`` the unix time at the same
    instant. ``bind(port)`` (re)binds the UDP socket(s) and returns the port
    bound (0: any) or raises OSError; ``set_mark(mark)`` applies a fwmark or
    raises OSError. Returns b"" for something that is not a request (wireguard-go
    answers nothing and hangs up). Never raises on what the client sent.
    """
    if request.startswith(GET):
        if request != GET + b"\n":
            return b"errno=%d\n\n" % EINVAL  # "trailing character in UAPI get"
        return (_get(device, now, wall) + "errno=0\n\n").encode()
    if request.startswith(SET):
        # Go strings are bytes: latin-1 keeps every byte, so nothing fails to decode.
        code = _Set(device, now, bind, set_mark).run(request[len(SET) :].decode("latin-1"))
        return b"errno=%d\n\n" % code
    return b""


class Connection:
    """One client connection to ``device``: bytes in, answers out one request at
    a time, and whether to hang up. ``bind`` and ``set_mark`` are as for `handle`.

    `feed` / `feed_eof` take what the client sent; `answer` answers the oldest
    request waiting. The I/O layer asks for the next answer only once the last
    one is sent, so a client that does not read holds one answer, not one per
    request it pipelined. `receive` / `eof` do both at once, for callers that
    can always send.
    """

    def __init__(
        self,
        device: Device,
        bind: Callable[[int], int],
        set_mark: Callable[[int], None] | None = None,
        *,
        max_request: int = MAX_REQUEST,
    ) -> None:
        self.device = device
        self.bind = bind
        self.set_mark = set_mark
        self.splitter = RequestSplitter(max_request)
        self._waiting: deque[bytes] = deque()
        self.closed = False
        """No more answers: close the connection (after sending what was returned)."""

    @property
    def waiting(self) -> bool:
        """Requests are waiting for `answer`."""
        return bool(self._waiting)

    def feed(self, data: bytes) -> None:
        """More bytes from the client."""
        if not self.closed:
            self._waiting += self.splitter.feed(data)
            self._settle()

    def feed_eof(self) -> None:
        """The client finished sending: a pending ``set`` becomes a request."""
        if not self.closed:
            self._waiting += self.splitter.eof()
            self._settle()

    def _settle(self) -> None:
        if self.splitter.closed and not self._waiting:
            self.closed = True

    def answer(self, now: float, wall: float) -> bytes | None:
        """The answer to the oldest waiting request, or None if none waits."""
        if self.closed or not self._waiting:
            return None
        request = self._waiting.popleft()
        out = handle(self.device, request, now, wall, self.bind, set_mark=self.set_mark)
        if not out or (request.startswith(SET) and not out.startswith(b"errno=0\n")):
            self.closed = True  # wireguard-go hangs up after a failed set
            self._waiting.clear()
        self._settle()
        return out

    def _answers(self, now: float, wall: float) -> bytes:
        out = b""
        while (answer := self.answer(now, wall)) is not None:
            out += answer
        return out

    def receive(self, data: bytes, now: float, wall: float) -> bytes:
        """The answers to the requests ``data`` completes."""
        self.feed(data)
        return self._answers(now, wall)

    def eof(self, now: float, wall: float) -> bytes:
        """The client finished sending: the answer to a pending ``set``, if any."""
        self.feed_eof()
        out = self._answers(now, wall)
        self.closed = True
        return out
