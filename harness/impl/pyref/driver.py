"""The `pyref` driver: wgharness's own WireGuard, started on a host with
`wgharness pyref IFNAME` and configured with `wg` like wireguard-go."""

from __future__ import annotations

import re
import shlex
import sys

from harness.errors import InfraError
from harness.impl import wgtools
from harness.impl.base import ImplInfo
from harness.impl.userspace import UapiDaemonDriver
from harness.targets.base import Target


class Pyref(UapiDaemonDriver):
    name = "pyref"

    def __init__(
        self, host: Target, ifname: str, *, program: str | None = None, log_level: str = "error"
    ) -> None:
        super().__init__(host, ifname, log_level=log_level)
        # The harness itself: this interpreter on a local host, or a `wgharness` command given by the lab.
        self.command = shlex.split(program) if program else [sys.executable, "-m", "harness"]

    def argv(self) -> list[str]:
        return [*self.command, "pyref", self.ifname]

    def check(self) -> ImplInfo:
        out = wgtools.version_of(self.host, [*self.command, "--version"], "wgharness (pyref)")
        match = re.search(r"wgharness (\S+)", out)
        if not match:
            raise InfraError(f"{self.host.name}: cannot read the version of pyref: {out.strip()[:200]}")
        wgtools.version_of(self.host, ["wg", "--version"], "wireguard-tools")
        return ImplInfo(self.name, match.group(1), shlex.join(self.command))
