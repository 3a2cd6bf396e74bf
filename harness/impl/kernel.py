"""Linux kernel WireGuard: the interface is made by the kernel module
(`ip link add IF type wireguard`) and configured like every other with `wg`
and `ip` (`wgtools`). For hosts whose kernel has the module: VM guests and SSH
hosts; this machine's kernel has none."""

from __future__ import annotations

import re

from harness.errors import InfraError
from harness.impl import wgtools
from harness.impl.base import Driver, ImplInfo, ImplName
from harness.impl.config import InterfaceConfig
from harness.targets.base import Target
from harness.targets.ledger import Forget, ResourceKind, nothing


class KernelWireguard(Driver):
    name = ImplName.KERNEL

    def __init__(self, host: Target, ifname: str, *, program: str | None = None) -> None:
        super().__init__(host, ifname)
        self._created = False
        self._forget: Forget = nothing

    def check(self) -> ImplInfo:
        wgtools.version_of(self.host, ["wg", "--version"], "wireguard-tools")
        # The module's version (it is built into some kernels: then /sys/module has it once loaded).
        self.host.run(["modprobe", "wireguard"])
        version = self.host.run(["cat", "/sys/module/wireguard/version"])
        kernel = self.host.run(["uname", "-r"]).stdout.strip()
        if not version.ok:
            raise InfraError(f"{self.host.name}: no WireGuard in the kernel ({kernel or 'unknown kernel'}): "
                             "modprobe wireguard found no module")  # fmt: skip
        text = version.stdout.strip()
        return ImplInfo(
            self.name, f"{text} (linux {kernel})" if re.match(r"\d", text) else kernel, "wireguard.ko"
        )

    def up(self, cfg: InterfaceConfig) -> None:
        if cfg.ifname != self.ifname:
            raise ValueError("config is for another interface")
        forget = self.host.noted(ResourceKind.INTERFACE, self.ifname)
        try:
            self.host.check(["ip", "link", "add", "dev", self.ifname, "type", "wireguard"])
        except BaseException:
            forget()  # not made (it may be another's of the same name)
            raise
        self._forget, self._created = forget, True
        wgtools.configure(self.host, cfg)

    def down(self) -> None:
        if self._created:
            result = self.host.run(["ip", "link", "del", "dev", self.ifname])
            self._created = False
            if result.ok or "Cannot find device" in result.stderr:
                self._forget()
