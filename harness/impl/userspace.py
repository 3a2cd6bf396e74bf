"""Drivers of userspace implementations that serve the cross-platform UAPI
socket /var/run/wireguard/IFNAME.sock (wireguard-go, pyref) on a Linux host.

Such a program is started in the foreground (WG_PROCESS_FOREGROUND=1) so the
harness holds the PID it must stop; the socket directory is shared by every
namespace of the machine, which is why interface names are unique across a
lab. Once the socket answers, the interface is configured like any other
with `wg` and `ip` (`wgtools`). A subclass says only how to start its program
and how to read its version.
"""

from __future__ import annotations

import abc

from harness.errors import InfraError
from harness.impl import wgtools
from harness.impl.base import Driver
from harness.impl.config import InterfaceConfig
from harness.targets.base import Process, Target
from harness.targets.ledger import Forget, ResourceKind

SOCKET_DIR = "/var/run/wireguard"
START_TIMEOUT = 10.0


class UapiDaemonDriver(Driver):
    def __init__(self, host: Target, ifname: str, *, log_level: str = "error") -> None:
        super().__init__(host, ifname)
        self.log_level = log_level
        self._process: Process | None = None
        self._forget_socket: Forget | None = None

    @abc.abstractmethod
    def argv(self) -> list[str]:
        """The command that creates the interface and its socket, staying in the foreground."""

    def extra_env(self) -> dict[str, str]:
        """Environment the program gets besides the foreground and log-level settings."""
        return {}

    @property
    def socket_path(self) -> str:
        return f"{SOCKET_DIR}/{self.ifname}.sock"

    def _socket_exists(self) -> bool:
        return self.host.run(["test", "-S", self.socket_path]).ok

    def up(self, cfg: InterfaceConfig) -> None:
        if cfg.ifname != self.ifname:
            raise ValueError("config is for another interface")
        if self._socket_exists():
            raise InfraError(
                f"{self.host.name}: {self.socket_path} exists: another process serves "
                f"{self.ifname} on this machine"
            )
        env = {**self.extra_env(), "WG_PROCESS_FOREGROUND": "1", "LOG_LEVEL": self.log_level}
        self._forget_socket = self.host.noted(ResourceKind.SOCKET, self.ifname, path=self.socket_path)
        self._process = self.host.start(self.argv(), env=env)
        self._process.wait_ready(
            self._socket_exists,
            START_TIMEOUT,
            f"{self.name} {self.ifname} to make its socket {self.socket_path}",
        )
        wgtools.configure(self.host, cfg)

    def down(self) -> None:
        if self._process is not None:
            self._process.kill()
        # A clean exit removes the socket; a hard kill does not.
        if self._process is not None and self._socket_exists():
            self.host.run(["rm", "-f", self.socket_path])
        if self._forget_socket is not None:
            self._forget_socket()
            self._forget_socket = None

    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def logs(self) -> dict[str, bytes]:
        if self._process is None:
            return {}
        out, err = self._process.output()
        return {f"{self.name}-{self.ifname}.log": out + err}
