"""wireguard-go, the userspace implementation, on a Linux host.

Started in the foreground (WG_PROCESS_FOREGROUND=1) so the harness holds the
PID it must stop; its UAPI socket is /var/run/wireguard/IFNAME.sock, shared
by every namespace of the machine, which is why interface names are unique
across a lab.
"""

from __future__ import annotations

import time

from harness.errors import InfraError
from harness.facts import parse_tool_version
from harness.impl import wgtools
from harness.impl.base import Driver, ImplInfo
from harness.impl.config import InterfaceConfig
from harness.targets.base import Process, Target
from harness.wgdump import InterfaceDump

SOCKET_DIR = "/var/run/wireguard"
START_TIMEOUT = 10.0


class WireguardGo(Driver):
    name = "wireguard-go"

    def __init__(
        self, host: Target, ifname: str, *, program: str = "wireguard-go", log_level: str = "error"
    ) -> None:
        super().__init__(host, ifname)
        self.program = program
        self.log_level = log_level
        self._process: Process | None = None

    @property
    def socket_path(self) -> str:
        return f"{SOCKET_DIR}/{self.ifname}.sock"

    def check(self) -> ImplInfo:
        out = wgtools.version_of(self.host, [self.program, "--version"], "wireguard-go")
        version = parse_tool_version("wireguard-go", out)
        if not version:
            raise InfraError(
                f"{self.host.name}: cannot read the version of {self.program}: {out.strip()[:200]}"
            )
        wgtools.version_of(self.host, ["wg", "--version"], "wireguard-tools")
        return ImplInfo(self.name, version, self.program)

    def _socket_exists(self) -> bool:
        return self.host.run(["test", "-S", self.socket_path]).ok

    def up(self, cfg: InterfaceConfig) -> None:
        if cfg.ifname != self.ifname:
            raise ValueError("config is for another interface")
        if self._socket_exists():
            raise InfraError(
                f"{self.host.name}: {self.socket_path} exists: another wireguard-go serves "
                f"{self.ifname} on this machine"
            )
        env = {"WG_PROCESS_FOREGROUND": "1", "LOG_LEVEL": self.log_level}
        self._process = self.host.start([self.program, self.ifname], env=env)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._socket_exists():
            status = self._process.poll()
            if status is not None:
                err = self._process.output()[1].decode("utf-8", "replace").strip()
                raise InfraError(
                    f"{self.host.name}: wireguard-go {self.ifname} exited with {status}: {err[-300:]}"
                )
            if time.monotonic() > deadline:
                raise InfraError(
                    f"{self.host.name}: wireguard-go made no socket {self.socket_path} in {START_TIMEOUT:.0f}s"
                )
            time.sleep(0.02)
        wgtools.configure(self.host, cfg)

    def dump(self) -> str:
        return wgtools.dump(self.host, self.ifname)

    def stats(self) -> InterfaceDump:
        return wgtools.stats(self.host, self.ifname)

    def down(self) -> None:
        if self._process is not None:
            self._process.kill()
        # wireguard-go removes its socket when it exits cleanly; not when killed hard.
        if self._process is not None and self._socket_exists():
            self.host.run(["rm", "-f", self.socket_path])

    def logs(self) -> dict[str, bytes]:
        if self._process is None:
            return {}
        out, err = self._process.output()
        return {f"wireguard-go-{self.ifname}.log": out + err}
