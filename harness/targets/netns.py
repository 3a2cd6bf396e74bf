"""A lab host that is a network namespace on this machine.

It shares the file system and programs with the machine, so only commands are
wrapped (`ip netns exec NAME ...`). Setup notes the namespace in the lab's record, then creates it with its
loopback up; teardown stops anything still running inside it (by PID: they
can only be processes the lab started) and deletes it, which also removes
every interface in it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Sequence
from dataclasses import replace

from harness.errors import InfraError
from harness.parsers.facts import HostFacts
from harness.targets.base import CommandResult, HostKind, wait_until
from harness.targets.dry import DryRunLog
from harness.targets.ledger import Forget, ResourceKind, nothing
from harness.targets.local import LocalTarget


class NetnsTarget(LocalTarget):
    kind = HostKind.NETNS

    def __init__(self, name: str, namespace: str, *, dry: DryRunLog | None = None) -> None:
        super().__init__(name, dry=dry)
        self.namespace = namespace
        self._created = False
        self._root = LocalTarget("root", dry=dry)
        self._forget: Forget = nothing

    def wrap(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv]

    def translate(self, result: CommandResult) -> CommandResult:
        # `ip netns exec` exits 1 when it cannot exec the program; report 127 as a shell would.
        if (
            result.status == 1
            and result.stderr_bytes.startswith(b'exec of "')
            and (b"No such file or directory" in result.stderr_bytes)
        ):
            return replace(result, status=127)
        return result

    def setup(self) -> None:
        self._forget = self.noted(ResourceKind.NAMESPACE, self.namespace)
        result = self._root.run(["ip", "netns", "add", self.namespace])
        if not result.ok:
            self._forget()  # not made (it may be another's of the same name)
            raise InfraError(
                f"{self.name}: cannot create network namespace {self.namespace}: {result.stderr.strip()}"
            )
        self._created = True
        self.check(["ip", "link", "set", "lo", "up"])

    def pids(self) -> list[int]:
        result = self._root.run(["ip", "netns", "pids", self.namespace])
        return [int(p) for p in result.stdout.split() if p.isdigit()] if result.ok else []

    def teardown(self) -> None:
        if not self._created:
            return
        leftovers = self.pids()
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if leftovers and not wait_until(lambda: not self.pids(), 3.0):
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not self.pids(), 3.0)
        result = self._root.run(["ip", "netns", "del", self.namespace])
        if not result.ok and "No such file" not in result.stderr:
            raise InfraError(
                f"{self.name}: cannot delete namespace {self.namespace}: {result.stderr.strip()}"
            )
        self._created = False
        self._forget()

    def facts(self) -> HostFacts:
        facts = super().facts()
        return replace(facts, extra={**facts.extra, "namespace": self.namespace})
