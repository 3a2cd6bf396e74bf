"""wireguard-go, the userspace implementation in Go, on a Linux host."""

from __future__ import annotations

from harness.errors import InfraError
from harness.impl import program_argv, wgtools
from harness.impl.base import ImplInfo, ImplName
from harness.impl.userspace import UapiDaemonDriver
from harness.parsers.facts import parse_tool_version
from harness.targets.base import Target


class WireguardGo(UapiDaemonDriver):
    name = ImplName.WIREGUARD_GO

    def __init__(
        self, host: Target, ifname: str, *, program: str = "wireguard-go", log_level: str = "error"
    ) -> None:
        super().__init__(host, ifname, log_level=log_level)
        self.program = program

    def argv(self) -> list[str]:
        return [*program_argv(self.name, self.program), self.ifname]

    def check(self) -> ImplInfo:
        out = wgtools.version_of(
            self.host, [*program_argv(self.name, self.program), "--version"], "wireguard-go"
        )
        version = parse_tool_version("wireguard-go", out)
        if not version:
            raise InfraError(
                f"{self.host.name}: cannot read the version of {self.program}: {out.strip()[:200]}"
            )
        wgtools.version_of(self.host, ["wg", "--version"], "wireguard-tools")
        return ImplInfo(self.name, version, self.program)
