"""Implementation drivers, looked up by the name lab files use (imported lazily)."""

from __future__ import annotations

import importlib

from harness.impl.base import Driver, ImplName

DRIVERS: dict[ImplName, str] = {
    ImplName.WIREGUARD_GO: "harness.impl.wireguard_go:WireguardGo",
    ImplName.PYREF: "harness.impl.pyref:Pyref",
    ImplName.KERNEL: "harness.impl.kernel:KernelWireguard",
    ImplName.WIREGUARD_NT: "harness.impl.wireguard_nt:WireguardNT",
    ImplName.WIREGUARD_GO_WINDOWS: "harness.impl.wireguard_go_windows:WireguardGoWindows",
}
WINDOWS_DRIVERS = tuple(i for i in ImplName if i.windows)
"""Drivers for Windows hosts only (`ImplName.windows`); every other driver is for POSIX hosts."""
FIXED_MTU: dict[ImplName, int] = {ImplName.WIREGUARD_GO_WINDOWS: 1420}
"""Drivers whose implementation runs at one MTU only: wireguard-go's Windows main
creates its TUN with MTU 0, which tun/tun_windows.go turns into 1420."""


def driver_class(name: ImplName) -> type[Driver]:
    module, _, cls = DRIVERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
