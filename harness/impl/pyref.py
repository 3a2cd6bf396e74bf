"""The `pyref` driver: wgharness's own WireGuard, started on a host with
`wgharness pyref IFNAME` and configured with `wg` like wireguard-go.

Given ``keylog`` (a path on the host), pyref appends the secrets of its
handshakes there in Wireshark's key-log format (``PYREF_KEYLOG``, see
`daemon`), so captures of its link can be decrypted."""

from __future__ import annotations

import re
import shlex
import sys

from harness.errors import InfraError
from harness.impl import program_argv, wgtools
from harness.impl.base import ImplInfo, ImplName
from harness.impl.userspace import UapiDaemonDriver
from harness.targets.base import Target
from harness.targets.ship import python_on


class Pyref(UapiDaemonDriver):
    name = ImplName.PYREF

    def __init__(
        self,
        host: Target,
        ifname: str,
        *,
        program: str | None = None,
        log_level: str = "error",
        keylog: str | None = None,
    ) -> None:
        super().__init__(host, ifname, log_level=log_level)
        self.keylog = keylog
        # The harness itself: a `wgharness` command the lab names, this interpreter on this
        # machine, or (another host) the harness's sources put there and run by its python3.
        self.program = program
        self.command = program_argv(self.name, program) if program else [sys.executable, "-m", "harness"]

    def argv(self) -> list[str]:
        return [*self.command, "pyref", self.ifname]

    def extra_env(self) -> dict[str, str]:
        return {"PYREF_KEYLOG": self.keylog} if self.keylog else {}

    def check(self) -> ImplInfo:
        if self.program is None:
            self.command = [*python_on(self.host), "-m", "harness"]
        result = self.host.run([*self.command, "--version"], timeout=30)
        missing = re.search(r"No module named '([\w.]+)'", result.stderr)
        if missing:
            raise InfraError(
                f"{self.host.name}: pyref needs the Python module {missing.group(1)} on this host "
                f"(Debian: python3-{missing.group(1).split('.')[0]}) and Python 3.11 or later"
            )
        out = result.stdout + result.stderr
        match = re.search(r"wgharness (\S+)", out)
        if not match:
            raise InfraError(f"{self.host.name}: cannot read the version of pyref: {out.strip()[:200]}")
        wgtools.version_of(self.host, ["wg", "--version"], "wireguard-tools")
        return ImplInfo(self.name, match.group(1), shlex.join(self.command))
