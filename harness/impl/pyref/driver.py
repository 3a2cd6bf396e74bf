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

INSTALL_ROOT = "/var/tmp/wgharness"
"""Where the harness installs itself on a remote host: one folder per content hash, kept for later runs."""


class Pyref(UapiDaemonDriver):
    name = "pyref"

    def __init__(
        self, host: Target, ifname: str, *, program: str | None = None, log_level: str = "error"
    ) -> None:
        super().__init__(host, ifname, log_level=log_level)
        # The harness itself: a `wgharness` command the lab names, this interpreter on this
        # machine, or (another host) the harness's sources put there and run by its python3.
        self.program = program
        self.command = shlex.split(program) if program else [sys.executable, "-m", "harness"]

    def argv(self) -> list[str]:
        return [*self.command, "pyref", self.ifname]

    def _install(self) -> list[str]:
        """Put the harness's sources on the host (once per version); the command that runs it."""
        from harness.bundle import bundle

        data, digest = bundle()
        home = f"{INSTALL_ROOT}/{digest}"
        if not self.host.run(["test", "-f", f"{home}/harness/__main__.py"]).ok:
            self.host.put(data, f"{home}.tar.gz", 0o644)
            self.host.check(["mkdir", "-p", home])
            self.host.check(["tar", "-xzf", f"{home}.tar.gz", "-C", home])
            self.host.run(["rm", "-f", f"{home}.tar.gz"])
        return ["env", f"PYTHONPATH={home}", "python3", "-m", "harness"]

    def check(self) -> ImplInfo:
        from harness.targets.local import LocalTarget

        if self.program is None and not isinstance(self.host, LocalTarget):
            self.command = self._install()
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
