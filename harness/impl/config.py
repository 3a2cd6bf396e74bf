"""The configuration a driver brings up, and its rendering for `wg setconf`.

Pure data and pure functions: tested without any host.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PeerConfig:
    public_key: str
    allowed_ips: tuple[str, ...]
    endpoint: str | None = None
    """``198.18.0.2:51821`` or ``[2001:2::2]:51821``."""
    preshared_key: str | None = field(default=None, repr=False)
    persistent_keepalive: int | None = None


@dataclass(frozen=True)
class InterfaceConfig:
    ifname: str
    private_key: str = field(repr=False)
    listen_port: int
    addresses: tuple[str, ...]
    """Inner addresses with prefix length, e.g. ``198.19.0.1/24``."""
    mtu: int
    peers: tuple[PeerConfig, ...] = ()


def format_endpoint(address: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 address."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def render_setconf(cfg: InterfaceConfig) -> str:
    """The configuration in the format `wg setconf` reads (no wg-quick keys)."""
    lines = ["[Interface]", f"PrivateKey = {cfg.private_key}", f"ListenPort = {cfg.listen_port}"]
    for peer in cfg.peers:
        lines += ["", "[Peer]", f"PublicKey = {peer.public_key}"]
        if peer.preshared_key:
            lines.append(f"PresharedKey = {peer.preshared_key}")
        if peer.allowed_ips:
            lines.append(f"AllowedIPs = {', '.join(peer.allowed_ips)}")
        if peer.endpoint:
            lines.append(f"Endpoint = {peer.endpoint}")
        if peer.persistent_keepalive:
            lines.append(f"PersistentKeepalive = {peer.persistent_keepalive}")
    return "\n".join(lines) + "\n"
