"""Implementation drivers, looked up by the name lab files use (imported lazily)."""

from __future__ import annotations

import importlib

from harness.impl.base import Driver

DRIVERS: dict[str, str] = {
    "wireguard-go": "harness.impl.wireguard_go:WireguardGo",
    "pyref": "harness.impl.pyref:Pyref",
    "kernel": "harness.impl.kernel:KernelWireguard",
    "wireguard-nt": "harness.impl.wireguard_nt:WireguardNT",
    "wireguard-go-windows": "harness.impl.wireguard_go_windows:WireguardGoWindows",
}
WINDOWS_DRIVERS = ("wireguard-nt", "wireguard-go-windows")
"""Drivers for Windows hosts only; every other driver is for POSIX hosts."""
FIXED_MTU: dict[str, int] = {"wireguard-go-windows": 1420}
"""Drivers whose implementation runs at one MTU only: wireguard-go's Windows main
creates its TUN with MTU 0, which tun/tun_windows.go turns into 1420."""


def driver_class(name: str) -> type[Driver]:
    module, _, cls = DRIVERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
