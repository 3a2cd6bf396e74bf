"""Configuring and reading a WireGuard interface on a Linux host with `wg` and `ip`.

Shared by every Linux driver (wireguard-go, pyref, the kernel module): they
differ only in how the interface comes to exist.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.errors import InfraError
from harness.impl.config import InterfaceConfig, render_setconf
from harness.targets.base import Target


def configure(host: Target, cfg: InterfaceConfig) -> None:
    """Keys and peers through `wg setconf` (the config goes in on stdin, never to a file),
    then addresses, MTU and link up through `ip`."""
    host.check(["wg", "setconf", cfg.ifname, "/dev/stdin"], input=render_setconf(cfg).encode())
    for address in cfg.addresses:
        host.check(["ip", "address", "add", address, "dev", cfg.ifname])
    host.check(["ip", "link", "set", "dev", cfg.ifname, "mtu", str(cfg.mtu), "up"])


def dump(host: Target, ifname: str, *, wg: str = "wg", explain: Callable[[str], str] = str.strip) -> str:
    """`wg show IF dump` on ``host`` (``wg``: the program, e.g. wg.exe's path on Windows;
    ``explain``: turns its stderr into the one line of the error)."""
    result = host.run([wg, "show", ifname, "dump"], timeout=30)
    if not result.ok:
        raise InfraError(f"{host.name}: `wg show {ifname} dump` failed: {explain(result.stderr)}")
    return result.stdout


def version_of(host: Target, argv: list[str], package: str) -> str:
    """What ``argv`` (a version command) prints; InfraError naming the package if absent."""
    result = host.run(argv, timeout=15)
    if result.status == 127 or "not found" in result.stderr and not result.stdout:
        raise InfraError(f"{host.name}: {argv[0]} not found (Debian package {package})")
    return result.stdout + result.stderr
