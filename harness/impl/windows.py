"""What the harness writes for a Windows host and the rules it follows there:
pure functions.

* Tunnel names as wireguard-windows accepts them (``conf/name.go``).
* The old clients' registry switches between WireGuardNT and wireguard-go
  (``docs/adminregistry.md`` of v0.4.x) and the flag that removes the driver.
* The wg-quick configuration a tunnel service reads (wireguard-windows
  ``conf/parser.go``), with default routes split so the client's kill switch
  stays off, and the routes a userspace tunnel needs.

What Windows hosts print is read in `harness.parsers.windows`.
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum

from harness.impl.config import InterfaceConfig
from harness.parsers.windows import parse_version

# -- tunnel names ------------------------------------------------------------

TUNNEL_NAME = re.compile(r"[A-Za-z0-9_=+.-]{1,32}")
RESERVED_NAMES = (
    "CON", "PRN", "AUX", "NUL",
    *(f"COM{i}" for i in range(1, 10)),
    *(f"LPT{i}" for i in range(1, 10)),
)  # fmt: skip
"""Windows' reserved device names (wireguard-windows ``conf/name.go`` ``reservedNames``)."""


def tunnel_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a WireGuard for Windows tunnel name (it is also the
    name of the harness's file for it under ``C:\\ProgramData\\wgharness``), or None.

    The rules of wireguard-windows ``conf/name.go`` ``TunnelNameIsValid`` as of
    v1.1 and master: 1 to 32 of ``[A-Za-z0-9_=+.-]``, no leading or trailing dot
    (from v1.0), and not a reserved device name, whatever its case, alone or
    before a dot (``isReserved``: ``nul.x`` is reserved; master cuts at the
    first dot, v1.1 at the last, so master's rule covers both)."""
    if not TUNNEL_NAME.fullmatch(name):
        return "not 1 to 32 of A-Z a-z 0-9 _ = + . -"
    if name.startswith(".") or name.endswith("."):
        return "starts or ends with a dot"
    stem = name.split(".", 1)[0]
    if stem.upper() in RESERVED_NAMES:
        return f"{stem!r} is a reserved Windows device name"
    return None


# -- the old clients' registry switches ----------------------------------------


class ClientImplementation(StrEnum):
    """Which of its two data planes a WireGuard for Windows 0.4.x client is told to use."""

    KERNEL = "kernel"
    """WireGuardNT, the kernel driver."""
    USERSPACE = "userspace"
    """wireguard-go on Wintun."""


REGISTRY_KEY = r"HKLM:\Software\WireGuard"


def implementation_switch(
    client_version: str, implementation: ClientImplementation
) -> tuple[str, int] | None:
    """The ``HKLM\\Software\\WireGuard`` DWORD value that makes a client of
    ``client_version`` use ``implementation`` ("kernel" or "userspace"), or None when
    that client needs none. ValueError when the client has no such path.

    From wireguard-windows ``docs/adminregistry.md`` and ``conf/admin_windows.go``:
    v0.4.0–v0.4.7 use wireguard-go/Wintun unless ``ExperimentalKernelDriver`` is 1;
    v0.4.8 onwards prefer WireGuardNT unless ``UseUserspaceImplementation`` is 1
    (the issue says through v0.4.11; the v0.4.12 tag still reads the value, so the
    range here runs to the last 0.4 release); v0.5 removed wireguard-go, and
    clients before v0.4 have no kernel driver.
    """
    if implementation not in tuple(ClientImplementation):
        raise ValueError(f"implementation must be 'kernel' or 'userspace', not {implementation!r}")
    v = parse_version(client_version)
    kernel = implementation == ClientImplementation.KERNEL
    if v < (0, 4, 0):
        if kernel:
            raise ValueError(f"WireGuard for Windows {client_version} predates WireGuardNT (0.4)")
        return None
    if v < (0, 4, 8):
        return ("ExperimentalKernelDriver", 1 if kernel else 0)
    if v < (0, 5, 0):
        return ("UseUserspaceImplementation", 0 if kernel else 1)
    if not kernel:
        raise ValueError(
            f"WireGuard for Windows {client_version} has no userspace implementation (removed in 0.5): "
            "use the wireguard-go-windows driver"
        )
    return None


def remove_driver_flag(client_version: str) -> str:
    """The ``wireguard.exe`` flag that removes the installed WireGuardNT driver for
    a client of ``client_version``; ValueError for a client without one.

    wireguard-windows ``main.go``: v0.4 to v0.4.10 have ``/removealladapters``
    (it deletes every adapter of the client's pool, then the driver if no other
    pool has adapters: ``driver/driver_windows.go`` ``DeleteDriver`` of v0.4.10),
    ``/removedriver`` replaces it in v0.4.11 (``driver.Uninstall``:
    ``WireGuardDeleteDriver``, which removes the driver only while no WireGuard
    adapter is in use, and fails otherwise); clients before v0.4 have no
    WireGuardNT."""
    v = parse_version(client_version)
    if v < (0, 4, 0):
        raise ValueError(
            f"WireGuard for Windows {client_version} predates WireGuardNT (0.4): no driver to remove"
        )
    return "/removealladapters" if v < (0, 4, 11) else "/removedriver"


# -- the tunnel configuration ---------------------------------------------

_DEFAULT_SPLITS = {
    "0.0.0.0/0": ("0.0.0.0/1", "128.0.0.0/1"),
    "::/0": ("::/1", "8000::/1"),
}


def split_default_routes(allowed_ips: tuple[str, ...]) -> tuple[str, ...]:
    """Every ``/0`` replaced by its two ``/1`` halves. wireguard-windows turns its kill
    switch on for a single peer with a /0 allowed IP unless ``Table = off``
    (``tunnel/addressconfig.go`` ``enableFirewall``), which would cut the SSH
    session; the halves route the same traffic without it."""
    out: list[str] = []
    for item in allowed_ips:
        network = ipaddress.ip_network(item, strict=False)
        if network.prefixlen == 0:
            out.extend(_DEFAULT_SPLITS[str(network)])
        else:
            out.append(item)
    return tuple(out)


def render_tunnel_conf(cfg: InterfaceConfig, *, table_off: bool = False) -> str:
    """The wg-quick style file ``wireguard /installtunnelservice`` reads.

    With ``table_off`` the tunnel adds no routes at all (``Table = off``) and the
    allowed IPs are kept as given; otherwise /0 allowed IPs are split into /1
    halves (`split_default_routes`). CRLF line ends, as Notepad writes them (the
    parser accepts both).
    """
    lines = ["[Interface]", f"PrivateKey = {cfg.private_key}", f"ListenPort = {cfg.listen_port}"]
    if cfg.addresses:
        lines.append(f"Address = {', '.join(cfg.addresses)}")
    lines.append(f"MTU = {cfg.mtu}")
    if table_off:
        lines.append("Table = off")
    for peer in cfg.peers:
        lines += ["", "[Peer]", f"PublicKey = {peer.public_key}"]
        if peer.preshared_key:
            lines.append(f"PresharedKey = {peer.preshared_key}")
        allowed = peer.allowed_ips if table_off else split_default_routes(peer.allowed_ips)
        if allowed:
            lines.append(f"AllowedIPs = {', '.join(allowed)}")
        if peer.endpoint:
            lines.append(f"Endpoint = {peer.endpoint}")
        if peer.persistent_keepalive:
            lines.append(f"PersistentKeepalive = {peer.persistent_keepalive}")
    return "\r\n".join(lines) + "\r\n"


def routes_for(cfg: InterfaceConfig) -> tuple[str, ...]:
    """The routes a userspace tunnel needs besides its addresses' own prefixes: every
    peer's allowed IPs (with /0 split) not inside an interface address's network."""
    networks = [ipaddress.ip_interface(a).network for a in cfg.addresses]
    out: list[str] = []
    for peer in cfg.peers:
        for item in split_default_routes(peer.allowed_ips):
            net = ipaddress.ip_network(item, strict=False)
            covered = any(
                net.version == n.version and net.subnet_of(n)  # type: ignore[arg-type]
                for n in networks
            )
            if not covered and str(net) not in out:
                out.append(str(net))
    return tuple(out)
