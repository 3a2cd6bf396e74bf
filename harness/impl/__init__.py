"""Implementation drivers, looked up by the name lab files use (imported lazily)."""

from __future__ import annotations

import importlib
import shlex

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


def program_argv(impl: ImplName, program: str) -> list[str]:
    """How a lab end's ``program`` for ``impl`` is run, the same for `lab check` and the
    run: pyref's is a command line split as a POSIX shell splits it (``python3 -m
    harness``); any other's is the path of one file, spaces and all, whatever the file
    is called (a wireguard-go build, ``C:\\...\\wireguard.exe``). ValueError (the
    reason) for one that cannot be run."""
    if not program.strip():
        raise ValueError("empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in program):
        raise ValueError("a control character in it")
    if impl is not ImplName.PYREF:
        return [program]
    try:
        argv = shlex.split(program)
    except ValueError as exc:  # "No closing quotation"
        raise ValueError(
            f"{str(exc).lower()}: pyref's program is a command line, split as a shell does"
        ) from None
    return argv


def driver_class(name: ImplName) -> type[Driver]:
    module, _, cls = DRIVERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
