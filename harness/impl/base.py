"""The life cycle every implementation driver has.

check (program present, version) -> up(config) -> stats() -> down().
`down` is safe to call at any point after construction, any number of times,
and removes everything `up` created, even after a failed `up`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from harness.impl.config import InterfaceConfig
from harness.parsers.wgdump import InterfaceDump, parse_wg_dump
from harness.targets.base import Target


class ImplName(StrEnum):
    """The implementations the harness drives, by the name lab files, ``--impl`` and
    the store use (`harness.impl.DRIVERS` has each one's driver)."""

    WIREGUARD_GO = "wireguard-go"
    PYREF = "pyref"
    """This harness's own implementation (`harness.pyref`)."""
    KERNEL = "kernel"
    """Linux's WireGuard module."""
    WIREGUARD_NT = "wireguard-nt"
    WIREGUARD_GO_WINDOWS = "wireguard-go-windows"

    @property
    def windows(self) -> bool:
        """Runs on Windows hosts only (every other implementation on POSIX hosts only)."""
        return self in (ImplName.WIREGUARD_NT, ImplName.WIREGUARD_GO_WINDOWS)


@dataclass(frozen=True)
class ImplInfo:
    name: ImplName
    version: str
    program: str
    """What runs: a program path or a kernel module name."""


class Driver(abc.ABC):
    name: ClassVar[ImplName]

    def __init__(self, host: Target, ifname: str) -> None:
        self.host = host
        self.ifname = ifname

    @abc.abstractmethod
    def check(self) -> ImplInfo:
        """Is the implementation usable on the host? Raises `InfraError` if not."""

    @abc.abstractmethod
    def up(self, cfg: InterfaceConfig) -> None:
        """Create the interface, configure keys, peers, addresses and MTU, set it up."""

    def dump(self) -> str:
        """The raw `wg show IF dump` text (contains the private key: redact before storing).
        Here: `wg` on the host, as every POSIX driver reads it."""
        from harness.impl import wgtools

        return wgtools.dump(self.host, self.ifname)

    def stats(self) -> InterfaceDump:
        """Per-peer handshake time and transfer counters."""
        return parse_wg_dump(self.dump())

    @abc.abstractmethod
    def down(self) -> None:
        """Remove the interface and stop whatever `up` started."""

    def logs(self) -> dict[str, bytes]:
        """Logs worth keeping with the run, by name."""
        return {}

    def pid(self) -> int | None:
        """The process that is the interface, on its host (a userspace implementation's
        daemon); None when the implementation is not one process (a kernel's)."""
        return None
