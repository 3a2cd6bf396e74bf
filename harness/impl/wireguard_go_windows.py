"""wireguard-go on Windows (with Wintun), the comparison for WireGuardNT.

wireguard-go's Windows main (``main_windows.go``) takes exactly one argument,
the interface name, creates a Wintun adapter of that name (``wintun.dll`` must
be beside the program), serves the UAPI on a named pipe and logs verbosely to
stdout (``DEBUG: (NAME) 2006/01/02 15:04:05 ...``). It has no ``--version``
(it would create an adapter named ``--version``), so its version is read from
its first log line after the start.

Its MTU is fixed: ``tun.CreateTUN(name, 0)`` (``main_windows.go``) makes the
device report 1420 (``tun/tun_windows.go`` ``CreateTUNWithRequestedGUID``:
``forcedMTU`` 1420 unless given), and the program takes no MTU. So a tunnel
MTU other than `FIXED_MTU` is refused (the lab file already refuses it) and the
adapter's IP MTU is set to the same 1420.

The life cycle, on a `WindowsTarget`:

* `check`: the program, ``wintun.dll`` beside it, and ``wg.exe`` present.
* `up`: inbound UDP to the listen port allowed for the program (Windows
  Firewall blocks it otherwise, and only WireGuard for Windows' own tunnel
  service gets a permit from the client: ``tunnel/firewall/rules.go``
  ``permitWireGuardService``), inbound ping on the tunnel's addresses
  (`WindowsTarget.allow_ping`), the program started as a background task
  (`WindowsTarget.start`: a scheduled task, so it outlives the SSH session),
  ``wg.exe show NAME dump`` polled until the pipe answers, keys and peers with
  ``wg.exe setconf NAME FILE`` (the `render_setconf` text, not wg-quick; the
  file SYSTEM and Administrators only), addresses with ``New-NetIPAddress``
  (which adds each address's on-link route), the other allowed IPs as routes
  with ``New-NetRoute`` (/0 split in halves), the MTU with ``netsh interface
  ipv4|ipv6 set subinterface NAME mtu=1420 store=active``.
* `down`: the routes removed, the task stopped and unregistered (the adapter
  goes with the process), the firewall rules and the setconf file removed.

Nothing here has run on a real Windows machine.
"""

from __future__ import annotations

import ipaddress
import re

from harness.errors import InfraError, UsageError
from harness.impl import FIXED_MTU as _FIXED_MTU
from harness.impl import wgtools
from harness.impl.base import Driver, ImplInfo, ImplName
from harness.impl.config import InterfaceConfig, render_setconf
from harness.impl.windows import routes_for, tunnel_name_problem
from harness.impl.wireguard_nt import INSTALL_DIR
from harness.parsers.windows import powershell_error_summary, version_from_text
from harness.targets.base import Process
from harness.targets.windows.powershell import ps_quote
from harness.targets.windows.target import WindowsTarget

PROGRAM = r"C:\wgharness\wireguard-go.exe"
FIXED_MTU = _FIXED_MTU[ImplName.WIREGUARD_GO_WINDOWS]
"""wireguard-go's MTU on Windows (``tun/tun_windows.go``: ``forcedMTU := 1420``)."""


def address_script(ifname: str, address: str) -> str:
    iface = ipaddress.ip_interface(address)
    return (
        f"$null = New-NetIPAddress -InterfaceAlias {ps_quote(ifname)} -IPAddress {ps_quote(str(iface.ip))} "
        f"-PrefixLength {iface.network.prefixlen} -PolicyStore ActiveStore\n"
    )


def route_script(ifname: str, prefix: str) -> str:
    return (
        f"$null = New-NetRoute -InterfaceAlias {ps_quote(ifname)} -DestinationPrefix {ps_quote(prefix)} "
        "-PolicyStore ActiveStore\n"
    )


def remove_routes_script(ifname: str, prefixes: tuple[str, ...]) -> str:
    lines = "".join(
        f"Remove-NetRoute -InterfaceAlias {ps_quote(ifname)} -DestinationPrefix {ps_quote(p)} "
        "-Confirm:$false -ErrorAction SilentlyContinue\n"
        for p in prefixes
    )
    return lines + "exit 0\n"


def mtu_argv(ifname: str, mtu: int, family: int) -> list[str]:
    return ["netsh", "interface", f"ipv{family}", "set", "subinterface", ifname, f"mtu={mtu}", "store=active"]


class WireguardGoWindows(Driver):
    """wireguard-go.exe on ``host``. Options: ``program`` (path of wireguard-go.exe on
    the host; wintun.dll beside it), ``wg`` (path of wg.exe), ``up_timeout``."""

    name = ImplName.WIREGUARD_GO_WINDOWS
    host: WindowsTarget

    def __init__(
        self,
        host: WindowsTarget,
        ifname: str,
        *,
        program: str = PROGRAM,
        wg: str = INSTALL_DIR + "\\wg.exe",
        up_timeout: float = 20.0,
    ) -> None:
        problem = tunnel_name_problem(ifname) or (
            None if re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", ifname) else "not 1 to 32 of A-Z a-z 0-9 _ . -"
        )
        if problem:
            # The name is also that of a file (NAME.setconf): Windows' reserved names are out.
            raise UsageError(
                f"{ifname!r} is not a usable adapter name for wireguard-go on Windows: {problem}"
            )
        super().__init__(host, ifname)
        self.program = program
        self.wg = wg
        self.up_timeout = up_timeout
        self.version = ""
        self._process: Process | None = None
        self._routes: tuple[str, ...] = ()
        self._rules: list[str] = []

    @property
    def setconf_path(self) -> str:
        return self.host.path(f"{self.ifname}.setconf")

    def check(self) -> ImplInfo:
        folder = self.program.rsplit("\\", 1)[0]
        script = "".join(
            f"if (-not (Test-Path -LiteralPath {ps_quote(p)})) {{ 'missing ' + {ps_quote(p)} }}\n"
            for p in (self.program, folder + "\\wintun.dll", self.wg)
        )
        missing = [
            line[8:] for line in self.host.check_ps(script, "looking for wireguard-go").stdout.splitlines()
        ]
        missing = [m.strip() for m in missing if m.strip()]
        if missing:
            raise InfraError(f"{self.host.name}: not found: {', '.join(missing)}")
        return ImplInfo(self.name, self.version or "unknown until started", self.program)

    def up(self, cfg: InterfaceConfig) -> None:
        if cfg.ifname != self.ifname:
            raise ValueError("config is for another interface")
        if cfg.mtu != FIXED_MTU:
            raise UsageError(
                f"{self.host.name}: wireguard-go on Windows runs at MTU {FIXED_MTU} (tun/tun_windows.go), "
                f"not {cfg.mtu}: set the tunnel's mtu to {FIXED_MTU}"
            )
        if not self._rules:
            self._rules = [
                self.host.allow_inbound(cfg.listen_port, "UDP", "wireguard-go", program_path=self.program),
                *self.host.allow_ping(cfg.addresses, f"{self.name} {self.ifname}"),
            ]
        self._process = self.host.start([self.program, self.ifname])
        self._wait_pipe()
        self.version = version_from_text(r"Starting wireguard-go version v?(\S+)", self._log())
        self.host.mkdir(self.host.root)
        self.host.put_secret(render_setconf(cfg).encode(), self.setconf_path)
        self.host.check([self.wg, "setconf", self.ifname, self.setconf_path])
        for address in cfg.addresses:
            self.host.check_ps(address_script(self.ifname, address), f"adding {address} to {self.ifname}")
        self._routes = routes_for(cfg)
        for prefix in self._routes:
            self.host.check_ps(route_script(self.ifname, prefix), f"adding route {prefix} via {self.ifname}")
        families = sorted({ipaddress.ip_interface(a).version for a in cfg.addresses} or {4})
        for family in families:
            self.host.check(mtu_argv(self.ifname, cfg.mtu, family))

    def _wait_pipe(self) -> None:
        assert self._process is not None
        self._process.wait_ready(
            lambda: self.host.run([self.wg, "show", self.ifname, "dump"], timeout=30).ok,
            self.up_timeout,
            f"wireguard-go {self.ifname} to answer `wg show`",
            interval=0.5,
        )

    def dump(self) -> str:
        return wgtools.dump(self.host, self.ifname, wg=self.wg, explain=powershell_error_summary)

    def _log(self) -> str:
        if self._process is None:
            return ""
        out, err = self._process.output()
        return (out + err).decode("utf-8", "replace")

    def logs(self) -> dict[str, bytes]:
        if self._process is None:
            return {}
        return {f"{self.name}-{self.ifname}.log": self._log().encode()}

    def down(self) -> None:
        if self._routes:
            self.host.run_ps(remove_routes_script(self.ifname, self._routes))
            self._routes = ()
        if self._process is not None:
            self._process.kill()
        for rule in self._rules:
            self.host.remove_rule(rule)
        self._rules = []
        self.host.remove(self.setconf_path)
