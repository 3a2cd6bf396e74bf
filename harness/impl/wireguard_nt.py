"""WireGuardNT, the Windows kernel driver, driven through WireGuard for Windows.

The life cycle, on a `WindowsTarget`:

* `check`: ``wireguard.exe`` and ``wg.exe`` present; the client's version (file
  version of wireguard.exe), wg's, and the driver's (``wireguard.sys``).
* `prepare` (called by `up` once): optionally install a chosen MSI
  (``msiexec /i PATH DO_NOT_LAUNCH=1 /qn /norestart /l*v LOG``; the installed
  client is uninstalled first when the MSI is older, which the MSI refuses
  otherwise; uninstalling deletes WireGuard's ``Data`` folder beside
  wireguard.exe, its saved tunnels and log, and the whole registry key
  ``HKLM\\Software\\WireGuard``: wireguard-windows ``installer/wireguard.wxs``
  ``RemoveConfigFolder``, ``installer/customactions.c``), remove the installed
  driver (a newer installed driver would be reused; the flag depends on the
  client's version, `remove_driver_flag`: ``/removealladapters`` on 0.4.0 to
  0.4.10, which also deletes the other tunnels' adapters, ``/removedriver``
  from 0.4.11, which fails while another WireGuard adapter is in use), drop a
  chosen ``wireguard.dll`` beside
  wireguard.exe (only builds made without ``load_wgnt_from_rsrc`` load it from
  there: release builds embed theirs, wireguard-windows ``build.bat``), and set
  the 0.4.x clients' registry switch choosing kernel or userspace.
* `up`: inbound ping allowed on the tunnel's addresses (`WindowsTarget.allow_ping`:
  Windows puts the new network in the Public profile, which answers no echo
  request, and the client adds no rule for it: wireguard-windows
  ``docs/netquirk.md``), the configuration as a wg-quick file
  ``ROOT\\NAME.conf`` (the tunnel's name is the file's; SYSTEM and
  Administrators only, `WindowsTarget.put_secret`), ``wireguard
  /installtunnelservice PATH`` (service ``WireGuardTunnel$NAME``), then ``wg.exe
  show NAME dump`` polled until the interface has its key, port and peers.
* `dump`/`stats`: ``wg.exe show NAME dump`` and `parse_wg_dump`.
* `logs`: ``wireguard /dumplog`` cut to this tunnel's lines, with the start-up
  lines logged before the service knows the tunnel's name (`filter_dumplog`).
* `down`: ``wireguard /uninstalltunnelservice NAME`` whenever the service exists
  (safe twice and after a failed `up`), then a wait until Windows has deleted the
  service (uninstall only marks it for deletion; a new install finding it still
  stopping fails with "Tunnel already installed and running":
  ``manager/install.go`` ``UninstallTunnel``, ``InstallTunnel``), the ping rules,
  the configuration file and the registry switch removed.

Sources: wireguard-windows ``docs/enterprise.md`` and ``main.go`` (the flags),
``manager/install.go`` (the service name), ``conf/name.go`` (tunnel names),
``docs/adminregistry.md`` (v0.4.x); docs/windows.md.
Nothing here has run on a real Windows machine.
"""

from __future__ import annotations

import contextlib
import re

from harness.errors import InfraError, UsageError
from harness.impl import wgtools
from harness.impl.base import Driver, ImplInfo, ImplName
from harness.impl.config import InterfaceConfig
from harness.impl.windows import (
    REGISTRY_KEY,
    ClientImplementation,
    implementation_switch,
    remove_driver_flag,
    render_tunnel_conf,
    tunnel_name_problem,
)
from harness.parsers import ParseError
from harness.parsers.wgdump import InterfaceDump, parse_wg_dump
from harness.parsers.windows import (
    filter_dumplog,
    msi_version_from_name,
    parse_version,
    powershell_error_summary,
    version_from_text,
)
from harness.targets.base import wait_until
from harness.targets.windows.powershell import ps_quote
from harness.targets.windows.target import WindowsTarget

INSTALL_DIR = r"C:\Program Files\WireGuard"
MSI_OK = (0, 3010)
"""msiexec's statuses for success (3010: success, a reboot is required)."""
SERVICE_GONE_TIMEOUT = 30.0
HOST_TIME_FORMAT = "yyyy-MM-dd HH:mm:ss.ffffff"
"""Get-Date's format for the ring logger's times (``2006-01-02 15:04:05.000000``
in Go's notation: ``ringlogger/ringlogger.go`` ``WriteTo``)."""


def tunnel_service(name: str) -> str:
    return f"WireGuardTunnel${name}"


def service_gone_script(name: str, timeout: float = SERVICE_GONE_TIMEOUT) -> str:
    """Wait until Windows has deleted tunnel ``name``'s service: Get-Service finds
    no such service. A service marked for deletion (ERROR_SERVICE_MARKED_FOR_DELETE,
    1072, while it stops or a handle to it is open) is waited for, as any other
    answer; prints ``gone``, or exits 3 with the service's last state after
    ``timeout`` seconds."""
    service = ps_quote(tunnel_service(name))
    steps = max(1, int(timeout * 4))
    return (
        "$state = 'unknown'\n"
        f"for ($i = 0; $i -lt {steps}; $i++) {{\n"
        "  $err = $null\n"
        f"  $s = Get-Service -Name {service} -ErrorAction SilentlyContinue -ErrorVariable err\n"
        "  if ($s) { $state = [string]$s.Status }\n"
        "  elseif (-not $err -or $err[0].CategoryInfo.Category -eq 'ObjectNotFound') { 'gone'; exit 0 }\n"
        "  else { $state = 'marked for deletion or unreadable: ' + $err[0].Exception.Message }\n"
        "  Start-Sleep -Milliseconds 250\n"
        "}\n"
        f"[Console]::Error.WriteLine({ps_quote(tunnel_service(name) + ' still there: ')} + $state); exit 3\n"
    )


def versions_script(install_dir: str) -> str:
    """Prints ``client=…``, ``wg=…``, ``nt=…`` lines ('' when absent)."""
    d = ps_quote(install_dir)
    return (
        "$v = { param($p) if (Test-Path -LiteralPath $p) { (Get-Item -LiteralPath $p).VersionInfo } }\n"
        f"$exe = Join-Path {d} 'wireguard.exe'; $wg = Join-Path {d} 'wg.exe'\n"
        "'client=' + (& $v $exe).ProductVersion\n"
        "'wg=' + $(if (Test-Path -LiteralPath $wg) { (& $wg --version 2>&1 | Select-Object -First 1) -join '' })\n"
        "'nt=' + (& $v (Join-Path $env:SystemRoot 'System32\\drivers\\wireguard.sys')).FileVersion\n"
    )


def parse_versions(text: str) -> dict[str, str]:
    out = {"client": "", "wg": "", "nt": ""}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() in out:
            out[key.strip()] = value.strip()
    out["wg"] = version_from_text(r"wireguard-tools v?(\S+)", out["wg"])
    return out


class WireguardNT(Driver):
    """WireGuardNT on ``host``.

    Options: ``install_dir`` (where wireguard.exe and wg.exe are), ``msi`` (a path
    on the host of an MSI to install; ``msi_version`` when its name does not say,
    e.g. ``wireguard-amd64-0.5.3.msi``), ``remove_driver`` (remove the installed
    WireGuardNT driver before the tunnel starts: ``wireguard /removedriver``, or
    ``/removealladapters`` on clients 0.4.0 to 0.4.10; it fails while another
    WireGuard adapter is in use), ``dll`` (a path on the host of a
    wireguard.dll to put beside wireguard.exe), ``implementation`` (a `ClientImplementation`,
    "kernel" or "userspace": the 0.4.x registry switch; None sets nothing), ``table_off``
    (``Table = off`` instead of splitting /0 allowed IPs), ``up_timeout``,
    ``program`` (a lab end's ``program``: the path of wireguard.exe, whose folder
    becomes ``install_dir``).
    """

    name = ImplName.WIREGUARD_NT
    host: WindowsTarget

    def __init__(
        self,
        host: WindowsTarget,
        ifname: str,
        *,
        install_dir: str = INSTALL_DIR,
        msi: str | None = None,
        msi_version: str | None = None,
        remove_driver: bool = False,
        dll: str | None = None,
        implementation: ClientImplementation | None = None,
        table_off: bool = False,
        up_timeout: float = 30.0,
        program: str | None = None,
    ) -> None:
        problem = tunnel_name_problem(ifname)
        if problem:
            # wireguard-windows conf/name.go: the tunnel name is the file name.
            raise UsageError(f"{ifname!r} is not a WireGuard for Windows tunnel name: {problem}")
        if implementation is not None and implementation not in tuple(ClientImplementation):
            raise UsageError(f"implementation must be 'kernel' or 'userspace', not {implementation!r}")
        super().__init__(host, ifname)
        # A lab's `program` for this end: the path of wireguard.exe (wg.exe beside it).
        self.install_dir = program.rsplit("\\", 1)[0] if program and "\\" in program else install_dir
        self.msi = msi
        self.msi_version = msi_version or (msi_version_from_name(msi) if msi else "")
        if msi and not self.msi_version:
            raise UsageError(f"cannot tell the version of {msi}: give msi_version")
        self.remove_driver = remove_driver
        self.dll = dll
        self.implementation = None if implementation is None else ClientImplementation(implementation)
        self.table_off = table_off
        self.up_timeout = up_timeout
        self.versions: dict[str, str] = {}
        self._prepared = False
        self._switch: str | None = None
        self._msi_log: str | None = None
        self._rules: list[str] = []
        self._installed_at: str | None = None
        """The host's local time just before /installtunnelservice (`filter_dumplog`)."""

    # -- paths -------------------------------------------------------------
    @property
    def wireguard(self) -> str:
        return self.install_dir + "\\wireguard.exe"

    @property
    def wg(self) -> str:
        return self.install_dir + "\\wg.exe"

    @property
    def conf_path(self) -> str:
        return self.host.path(f"{self.ifname}.conf")

    # -- check -------------------------------------------------------------
    def read_versions(self) -> dict[str, str]:
        result = self.host.check_ps(versions_script(self.install_dir), "reading WireGuard versions")
        self.versions = parse_versions(result.stdout)
        return self.versions

    def check(self) -> ImplInfo:
        versions = self.read_versions()
        if not versions["client"]:
            raise InfraError(f"{self.host.name}: {self.wireguard} not found (install WireGuard for Windows)")
        if not versions["wg"]:
            raise InfraError(f"{self.host.name}: {self.wg} not found or prints no version")
        nt = versions["nt"] or "not loaded yet"
        return ImplInfo(self.name, f"{versions['client']} (WireGuardNT {nt})", self.wireguard)

    # -- installation ------------------------------------------------------
    def needs_uninstall(self, installed: str) -> bool:
        """Going to an older build: the MSI refuses a downgrade, so uninstall first."""
        return bool(self.msi and installed) and parse_version(installed) > parse_version(self.msi_version)

    def install_commands(self, installed: str, product_code: str = "") -> list[list[str]]:
        """The msiexec argvs that go from ``installed`` ('' for none) to the chosen MSI."""
        if not self.msi:
            return []
        log = self.host.path(f"msi-{self.ifname}.log")
        commands = []
        if self.needs_uninstall(installed):
            commands.append(["msiexec.exe", "/x", product_code, "/qn", "/norestart"])
        commands.append(["msiexec.exe", "/i", self.msi, "DO_NOT_LAUNCH=1", "/qn", "/norestart", "/l*v", log])
        return commands

    def _product_code(self) -> str:
        script = (
            "Get-ItemProperty -Path 'HKLM:\\Software\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\*' "
            "-ErrorAction SilentlyContinue | Where-Object { $_.DisplayName -eq 'WireGuard' } | "
            "Select-Object -First 1 -ExpandProperty PSChildName\n"
        )
        code = self.host.check_ps(script, "finding the installed WireGuard's product code").stdout.strip()
        if not re.fullmatch(r"\{[0-9A-Fa-f-]{36}\}", code):
            raise InfraError(f"{self.host.name}: no product code for the installed WireGuard ({code[:60]!r})")
        return code

    def install(self) -> None:
        """Install the chosen MSI (no-op without one)."""
        if not self.msi:
            return
        self._msi_log = self.host.path(f"msi-{self.ifname}.log")
        installed = self.read_versions()["client"]
        code = self._product_code() if self.needs_uninstall(installed) else ""
        for argv in self.install_commands(installed, code):
            result = self.host.run(argv, gui=True, timeout=600)
            if result.status not in MSI_OK:
                raise InfraError(
                    f"{self.host.name}: `{' '.join(argv)}` exited with {result.status} "
                    f"(see {self._msi_log} on the host)"
                )
        now = self.read_versions()["client"]
        if not now or parse_version(now) != parse_version(self.msi_version):
            raise InfraError(f"{self.host.name}: installed {self.msi} but wireguard.exe reports {now!r}")

    def prepare(self) -> None:
        """Install, remove the driver, drop the DLL, set the registry switch (once)."""
        if self._prepared:
            return
        self.install()
        if self.remove_driver:
            client = self.versions.get("client") or self.read_versions()["client"]
            try:
                flag = remove_driver_flag(client)
            except ValueError as exc:
                raise UsageError(f"{self.host.name}: remove_driver: {exc}") from None
            self.host.check([self.wireguard, flag], gui=True)
        if self.dll:
            self.host.check_ps(
                f"Copy-Item -LiteralPath {ps_quote(self.dll)} "
                f"-Destination {ps_quote(self.install_dir + chr(92) + 'wireguard.dll')} -Force\n",
                f"copying {self.dll} beside wireguard.exe",
            )
        if self.implementation:
            client = self.versions.get("client") or self.read_versions()["client"]
            try:
                switch = implementation_switch(client, self.implementation)
            except ValueError as exc:
                raise UsageError(f"{self.host.name}: {exc}") from None
            if switch:
                value_name, value = switch
                self.host.check_ps(registry_set_script(value_name, value), f"setting {value_name}")
                self._switch = value_name
        self._prepared = True

    # -- up ----------------------------------------------------------------
    def up(self, cfg: InterfaceConfig) -> None:
        if cfg.ifname != self.ifname:
            raise ValueError("config is for another interface")
        self.prepare()
        self.host.mkdir(self.host.root)
        if not self._rules:
            self._rules = self.host.allow_ping(cfg.addresses, f"{self.name} {self.ifname}")
        self.host.put_secret(render_tunnel_conf(cfg, table_off=self.table_off).encode(), self.conf_path)
        self._installed_at = self.host_time()
        self.host.check([self.wireguard, "/installtunnelservice", self.conf_path], gui=True)
        self.wait_up(cfg)

    def host_time(self) -> str | None:
        """The host's local time in the ring logger's format, None if it cannot tell."""
        result = self.host.run_ps(f"Get-Date -Format {ps_quote(HOST_TIME_FORMAT)}\n", timeout=30)
        text = result.stdout.strip()
        return text if result.ok and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", text) else None

    def wait_up(self, cfg: InterfaceConfig) -> InterfaceDump:
        """Poll the dump until the interface has the configured port and peers."""
        last = ""

        def configured() -> InterfaceDump | None:
            nonlocal last
            result = self.host.run([self.wg, "show", self.ifname, "dump"], timeout=30)
            if not result.ok:
                last = powershell_error_summary(result.stderr)
                return None
            try:
                dump = parse_wg_dump(result.stdout)
            except ParseError as exc:
                last = str(exc)
                return None
            if dump.listen_port == cfg.listen_port and len(dump.peers) == len(cfg.peers):
                return dump
            last = f"port {dump.listen_port}, {len(dump.peers)} peers"
            return None

        dump = wait_until(configured, self.up_timeout, interval=0.5)
        if dump is None:
            log = filter_dumplog(self._dumplog(), self.ifname, self._installed_at)
            tail = " | ".join(log.splitlines()[-5:])
            raise InfraError(
                f"{self.host.name}: tunnel {self.ifname} not up after {self.up_timeout:.0f}s "
                f"(wg show: {last or 'nothing'}); log: {tail or 'no lines for it'}"
            )
        return dump

    # -- reading ------------------------------------------------------------
    def dump(self) -> str:
        return wgtools.dump(self.host, self.ifname, wg=self.wg, explain=powershell_error_summary)

    def _dumplog(self) -> str:
        result = self.host.run([self.wireguard, "/dumplog"], gui=True, timeout=60)
        return result.stdout if result.ok else ""

    def logs(self) -> dict[str, bytes]:
        log = filter_dumplog(self._dumplog(), self.ifname, self._installed_at)
        out = {f"{self.name}-{self.ifname}.log": log.encode()}
        if self._msi_log:
            with contextlib.suppress(OSError, InfraError):
                out[f"msiexec-{self.ifname}.log"] = self.host.get(self._msi_log)
        return out

    # -- down ----------------------------------------------------------------
    def service_exists(self) -> bool:
        result = self.host.run_ps(
            f"if (Get-Service -Name {ps_quote(tunnel_service(self.ifname))} -ErrorAction SilentlyContinue) "
            "{ 'present' } else { 'absent' }\n"
        )
        return result.stdout.strip() == "present"

    def down(self) -> None:
        try:
            if self.service_exists():
                self._uninstall()
        finally:
            for rule in self._rules:
                self.host.remove_rule(rule)
            self._rules = []
            self._cleanup()

    def _uninstall(self) -> None:
        """``/uninstalltunnelservice``, then wait for the service to be deleted; an
        uninstall that fails is an error only if the service then stays."""
        result = self.host.run([self.wireguard, "/uninstalltunnelservice", self.ifname], gui=True)
        gone = self.host.run_ps(service_gone_script(self.ifname), timeout=SERVICE_GONE_TIMEOUT + 30)
        if gone.ok:
            return
        why = powershell_error_summary(gone.stderr) or "the service is still there"
        if not result.ok:
            why = (
                f"`wireguard /uninstalltunnelservice {self.ifname}` exited with {result.status}: "
                f"{powershell_error_summary(result.stderr)}; {why}"
            )
        raise InfraError(f"{self.host.name}: {why}")

    def _cleanup(self) -> None:
        self.host.remove(self.conf_path)
        if self._switch:
            self.host.run_ps(
                f"Remove-ItemProperty -Path {ps_quote(REGISTRY_KEY)} -Name {ps_quote(self._switch)} "
                "-ErrorAction SilentlyContinue\nexit 0\n"
            )
            self._switch = None


def registry_set_script(value_name: str, value: int) -> str:
    key = ps_quote(REGISTRY_KEY)
    return (
        f"if (-not (Test-Path -LiteralPath {key})) {{ $null = New-Item -Path {key} -Force }}\n"
        f"$null = New-ItemProperty -Path {key} -Name {ps_quote(value_name)} -PropertyType DWord "
        f"-Value {int(value)} -Force\n"
    )
