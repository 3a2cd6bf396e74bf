"""Lab hosts reached over SSH (``target = "ssh"`` or ``"windows"`` in a lab file).

`remote_target` turns a host's lab-file entry into a target. During a dry run
(`harness.dryrun`) the target is a `DryRemote` of the same kind: it connects
nowhere, and writes down each command line exactly as it would be sent.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from harness import dryrun
from harness.lab import SshHostSpec
from harness.parsers.facts import HostFacts
from harness.targets.base import CommandResult, Process, Target

if TYPE_CHECKING:
    from harness.targets.ssh import SshSpec
    from harness.vm.image import Recipe
    from harness.vm.qemu import VmSpec


def ssh_spec(spec: SshHostSpec) -> SshSpec:
    from harness.targets.ssh import SshSpec

    def expand(path: str | None) -> str | None:
        return os.path.expanduser(path) if path else None

    options = {
        "key_file": expand(spec.key),
        "host_key_policy": spec.host_key_policy,
        "connect_timeout": spec.connect_timeout,
    }
    if spec.known_hosts:
        options["known_hosts"] = expand(spec.known_hosts)
    jump = SshSpec.parse(spec.jump, **options) if spec.jump else None
    return SshSpec.parse(spec.url, jump=jump, **options)


def remote_target(name: str, kind: str, spec: SshHostSpec) -> Target:
    from harness.targets.ssh import SshTarget, SshTransport
    from harness.targets.windows import WindowsTarget

    ssh = ssh_spec(spec)
    target: Target
    if dryrun.active() is not None:
        if kind == "windows":
            from harness.targets.windows_dry import dry_windows_target

            target = dry_windows_target(name, ssh.url)
        else:
            target = DryRemote(name, ssh)
    elif kind == "windows":
        target = WindowsTarget(name, SshTransport(ssh, name=name))
    else:
        target = SshTarget(name, ssh)
    if spec.iperf3:
        target.tools = {**target.tools, "iperf3": spec.iperf3}
    return target


class DryRemote(Target):
    """A POSIX host over SSH in a dry run: each command line exactly as `SshTarget`
    would send it, written down; nothing connects."""

    kind = "ssh"

    def __init__(self, name: str, spec: SshSpec, *, booted: tuple[VmSpec, Recipe] | None = None) -> None:
        from harness.targets.ssh import SshTarget

        super().__init__(name)
        self.url = spec.url
        self.booted = booted
        """A vm's spec: `setup` notes the QEMU command line that would boot it."""
        self._render = SshTarget(name, spec, _NoTransport(name))  # its rendering, over no connection
        self._where = f"{name} ({spec.url})"

    def describe(self, argv: Sequence[str]) -> str:
        return self._render.describe(argv)

    def _log(self) -> dryrun.DryRunLog:
        log = dryrun.active()
        assert log is not None, "a DryRemote outside a dry run"
        return log

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        log = self._log()
        stdin = f"  < ({len(input)} bytes on stdin)" if input is not None else ""
        log.record(self._where, self._render.command_line(argv, env) + stdin)
        return log.answer(argv)

    def start(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Process:
        log = self._log()
        log.record(
            self._where,
            self._render.command_line(argv, env) + "  & (in the background, outliving the session)",
        )
        return dryrun.DryProcess(argv, self._where, log)

    def put(self, data: bytes, path: str, mode: int = 0o600) -> None:
        self._log().note(self._where, f"write {path} ({len(data)} bytes, mode {mode:o}) over SFTP")

    def get(self, path: str) -> bytes:
        self._log().note(self._where, f"read {path} over SFTP")
        return b""

    def setup(self) -> None:
        if self.booted is not None:
            from harness.vm.qemu import render_boot

            self._log().record(self._where, render_boot(*self.booted))
        self._log().note(self._where, "connect over SSH (host key checked against known_hosts)")

    def teardown(self) -> None:
        self._log().note(self._where, "remove the harness's temporary files; disconnect")

    def facts(self) -> HostFacts:
        self._log().note(self._where, "collect facts (kernel or Windows build, CPU, NIC, tool versions)")
        return HostFacts(self.name, "", "", "", 0, 0, "")


class _NoTransport:
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
