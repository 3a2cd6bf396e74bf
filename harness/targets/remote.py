"""A POSIX host over SSH in a dry run (``target = "ssh"``, and the guest of
``target = "vm"``): `DryRemote` renders each command line exactly as `SshTarget`
would send it and writes it to the run's `DryRunLog`; nothing connects.
`harness.targets.make` chooses it for ``dry=`` a log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from harness.parsers.facts import HostFacts
from harness.targets.base import CommandResult, HostKind, Process, Target
from harness.targets.dry import DryProcess, DryRunLog

if TYPE_CHECKING:
    from harness.targets.ssh.spec import SshSpec
    from harness.targets.vm.image import Recipe
    from harness.targets.vm.qemu import VmSpec


class DryRemote(Target):
    """A POSIX host over SSH in a dry run: each command line exactly as `SshTarget`
    would send it, written down; nothing connects."""

    kind = HostKind.SSH

    def __init__(
        self, name: str, spec: SshSpec, dry: DryRunLog, *, booted: tuple[VmSpec, Recipe] | None = None
    ) -> None:
        from harness.targets.ssh.target import SshTarget

        super().__init__(name)
        self.dry = self._dry = dry  # _dry: the same, never None here
        self.url = spec.url
        self.booted = booted
        """A vm's spec: `setup` notes the QEMU command line that would boot it."""
        self._render = SshTarget(name, spec, _NoConduit(name))  # its rendering, over no connection
        self.sudo = spec.sudo
        self._where = f"{name} ({spec.url})"

    def describe(self, argv: Sequence[str]) -> str:
        return self._render.describe(argv)

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        log = self._dry
        stdin = f"  < ({len(input)} bytes on stdin)" if input is not None else ""
        log.record(self._where, self._render.command_line(argv, env) + stdin)
        return log.answer(argv)

    def sudo_probe(self) -> CommandResult:
        """`SshTarget.sudo_probe`, written down."""
        self._dry.record(self._where, "sudo -n true")
        return self._dry.answer(["sudo", "-n", "true"])

    def start(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Process:
        log = self._dry
        log.record(
            self._where,
            self._render.command_line(argv, env) + "  & (in the background, outliving the session)",
        )
        return DryProcess(argv, self._where, log)

    def put(self, data: bytes, path: str, mode: int = 0o600) -> None:
        how = "through sudo -n, the data on stdin" if self.sudo else "over SFTP"
        self._dry.note(self._where, f"write {path} ({len(data)} bytes, mode {mode:o}) {how}")

    def get(self, path: str) -> bytes:
        self._dry.note(self._where, f"read {path} " + ("through sudo -n" if self.sudo else "over SFTP"))
        return b""

    def setup(self) -> None:
        if self.booted is not None:
            from harness.targets.vm.qemu import render_boot

            self._dry.record(self._where, render_boot(*self.booted))
        self._dry.note(self._where, "connect over SSH (host key checked against known_hosts)"
                       + ("; `sudo -n true`: sudo must need no password" if self.sudo else ""))  # fmt: skip

    def teardown(self) -> None:
        self._dry.note(self._where, "remove the harness's temporary files; disconnect")

    def facts(self) -> HostFacts:
        self._dry.note(self._where, "collect facts (kernel or Windows build, CPU, NIC, tool versions)")
        return HostFacts(self.name, "", "", "", 0, 0, "")


class _NoConduit:
    """Lets a real target render command lines; never used to send one."""

    def __init__(self, name: str) -> None:
        self.name = name

    def exec(
        self, command: str, *, input: bytes | None = None, timeout: float | None = 60.0
    ) -> CommandResult:
        raise AssertionError("a dry run tried to send a command")

    def put(self, data: bytes, path: str, mode: int = 0o600) -> None:
        raise AssertionError("a dry run tried to write a file")

    def get(self, path: str) -> bytes:
        raise AssertionError("a dry run tried to read a file")

    def close(self) -> None:
        pass
