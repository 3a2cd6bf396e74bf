"""Parser for `wg show IF dump` (one interface), and a redactor for storing raw dumps.

The format (wireguard-tools `wg show IF dump`, also printed by wireguard-go's and
wireguard-nt's `wg`): tab-separated, one line for the interface, then one line
per peer; ``(none)`` stands for an empty value.

* interface: private-key, public-key, listen-port, fwmark (``off`` or a number,
  printed as ``0x..`` hex by wireguard-tools)
* peer: public-key, preshared-key, endpoint, allowed-ips (comma-separated),
  latest-handshake (unix seconds, 0 = never), transfer-rx, transfer-tx,
  persistent-keepalive (``off`` or seconds)

The private key is checked but never kept, and no error message quotes a
private or preshared key. ``(hidden)``, which ``redact_wg_dump`` puts in their
place, is accepted for both, so stored dumps parse too. `wg show all dump`
(interface name in front of every line) is not accepted.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from dataclasses import dataclass

from harness.parsers import ParseError

NONE = "(none)"
HIDDEN = "(hidden)"

INTERFACE_FIELDS = ("private-key", "public-key", "listen-port", "fwmark")
PEER_FIELDS = (
    "public-key",
    "preshared-key",
    "endpoint",
    "allowed-ips",
    "latest-handshake",
    "transfer-rx",
    "transfer-tx",
    "persistent-keepalive",
)


@dataclass(frozen=True)
class PeerDump:
    """One peer line of the dump."""

    public_key: str
    has_preshared_key: bool
    endpoint: str | None
    """``"198.18.0.2:51821"`` or ``"[fd00::1]:51820"``; None when the peer has none yet."""
    allowed_ips: tuple[str, ...]
    """As printed (``"198.19.0.2/32"``); () when the peer has none."""
    latest_handshake: int
    """Unix seconds; 0 = never."""
    rx_bytes: int
    tx_bytes: int
    persistent_keepalive: int | None
    """Seconds; None when off."""


@dataclass(frozen=True)
class InterfaceDump:
    """The interface line and its peers, in the order printed."""

    public_key: str
    """Empty when the interface has no private key yet (``(none)`` in the dump)."""
    listen_port: int
    fwmark: int | None
    """None when off (or 0)."""
    peers: tuple[PeerDump, ...]

    def peer(self, public_key: str) -> PeerDump | None:
        for p in self.peers:
            if p.public_key == public_key:
                return p
        return None


def parse_wg_dump(text: str) -> InterfaceDump:
    """Parse the output of `wg show IF dump`; ParseError names the line and field at fault."""
    lines = _split(text)
    if not lines:
        raise ParseError("wg dump: empty text, expected an interface line")
    lineno, first = lines[0]
    fields = _fields(first, lineno, INTERFACE_FIELDS)
    if fields[0] not in (NONE, HIDDEN):
        _key(fields[0], lineno, "private-key", secret=True)
    public_key = "" if fields[1] == NONE else _key(fields[1], lineno, "public-key")
    listen_port = _uint(fields[2], lineno, "listen-port", maximum=0xFFFF)
    fwmark = _fwmark(fields[3], lineno)

    peers: list[PeerDump] = []
    seen: set[str] = set()
    for lineno, line in lines[1:]:
        peer = _peer(_fields(line, lineno, PEER_FIELDS), lineno)
        if peer.public_key in seen:
            raise ParseError(f"wg dump line {lineno}: public-key: peer {peer.public_key} repeated")
        seen.add(peer.public_key)
        peers.append(peer)
    return InterfaceDump(public_key, listen_port, fwmark, tuple(peers))


def redact_wg_dump(text: str) -> str:
    """The same text with the interface private key and every preshared key replaced by
    ``(hidden)`` (``(none)`` stays). Line endings and blank lines are kept.

    Raises ParseError, rather than guess, when a line has the wrong number of fields:
    text that is not a dump may hold a key in an unexpected place.
    """
    out: list[str] = []
    first = True
    for lineno, raw in enumerate(text.splitlines(keepends=True), start=1):
        body = raw.rstrip("\r\n")
        ending = raw[len(body) :]
        if not body.strip():
            out.append(raw)
            continue
        if first:
            fields = _fields(body, lineno, INTERFACE_FIELDS)
            secret_index = 0
            first = False
        else:
            fields = _fields(body, lineno, PEER_FIELDS)
            secret_index = 1
        if fields[secret_index] != NONE:
            fields[secret_index] = HIDDEN
        out.append("\t".join(fields) + ending)
    return "".join(out)


def _split(text: str) -> list[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers."""
    return [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _fields(line: str, lineno: int, names: tuple[str, ...]) -> list[str]:
    fields = line.split("\t")
    if len(fields) != len(names):
        interface = names == INTERFACE_FIELDS
        hint = ""
        if interface and len(fields) == len(names) + 1:
            hint = " (`wg show all dump` output? pass one interface's dump)"
        raise ParseError(
            f"wg dump line {lineno}: {'interface' if interface else 'peer'} line has "
            f"{len(fields)} tab-separated fields, expected {len(names)} ({', '.join(names)}){hint}"
        )
    return fields


def _peer(fields: list[str], lineno: int) -> PeerDump:
    has_psk = fields[1] != NONE
    if has_psk and fields[1] != HIDDEN:
        _key(fields[1], lineno, "preshared-key", secret=True)
    keepalive = fields[7]
    return PeerDump(
        public_key=_key(fields[0], lineno, "public-key"),
        has_preshared_key=has_psk,
        endpoint=_endpoint(fields[2], lineno),
        allowed_ips=_allowed_ips(fields[3], lineno),
        latest_handshake=_uint(fields[4], lineno, "latest-handshake"),
        rx_bytes=_uint(fields[5], lineno, "transfer-rx"),
        tx_bytes=_uint(fields[6], lineno, "transfer-tx"),
        persistent_keepalive=(
            None
            if keepalive == "off"
            else _uint(keepalive, lineno, "persistent-keepalive", maximum=0xFFFF) or None
        ),
    )


def _key(value: str, lineno: int, field: str, *, secret: bool = False) -> str:
    """A base64 Curve25519 or preshared key (32 bytes); a secret one is never quoted."""
    shown = "the value" if secret else repr(value[:60])
    if len(value) != 44:
        raise ParseError(
            f"wg dump line {lineno}: {field}: {shown} is not a base64 32-byte key "
            f"({len(value)} characters, expected 44)"
        )
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ParseError(f"wg dump line {lineno}: {field}: {shown} is not a base64 32-byte key") from None
    if len(raw) != 32:
        raise ParseError(f"wg dump line {lineno}: {field}: {shown} does not decode to 32 bytes")
    return value


def _uint(value: str, lineno: int, field: str, maximum: int | None = None) -> int:
    if not (value.isascii() and value.isdigit()):
        raise ParseError(f"wg dump line {lineno}: {field}: {value[:60]!r} is not a non-negative integer")
    number = int(value)
    if maximum is not None and number > maximum:
        raise ParseError(f"wg dump line {lineno}: {field}: {number} is larger than {maximum}")
    return number


def _fwmark(value: str, lineno: int) -> int | None:
    if value == "off":
        return None
    if value[:2] in ("0x", "0X"):
        digits = value[2:]
        if not digits or not all(c in "0123456789abcdefABCDEF" for c in digits):
            raise ParseError(f"wg dump line {lineno}: fwmark: {value[:60]!r} is not a hex number")
        mark = int(digits, 16)
    else:
        mark = _uint(value, lineno, "fwmark")
    if mark > 0xFFFFFFFF:
        raise ParseError(f"wg dump line {lineno}: fwmark: {value[:60]!r} does not fit 32 bits")
    return mark or None


def _endpoint(value: str, lineno: int) -> str | None:
    """``ipv4:port`` or ``[ipv6]:port`` (the host is always numeric in a dump)."""
    if value == NONE:
        return None
    host, sep, port = value.rpartition(":")
    bad = ParseError(f"wg dump line {lineno}: endpoint: {value[:80]!r} is not ADDRESS:PORT or [ADDRESS]:PORT")
    if not sep or not (port.isascii() and port.isdigit()) or int(port) > 0xFFFF:
        raise bad
    try:
        if host.startswith("[") and host.endswith("]"):
            ipaddress.IPv6Address(host[1:-1])
        else:
            ipaddress.IPv4Address(host)
    except ValueError:
        raise bad from None
    return value


def _allowed_ips(value: str, lineno: int) -> tuple[str, ...]:
    if value == NONE:
        return ()
    items = tuple(value.split(","))
    for item in items:
        try:
            if "/" not in item:
                raise ValueError
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ParseError(
                f"wg dump line {lineno}: allowed-ips: {item[:80]!r} is not an address/prefix"
            ) from None
    return items
