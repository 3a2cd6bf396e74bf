"""The checks of a Windows host: one read-only PowerShell script (`windows_script`)
printing ``key=value`` lines, and the pure function that turns them into rows
(`windows_checks`), tested on outputs written from PowerShell's and
wireguard-windows' documented formats.

What is read, and where it is documented:

* ``$PSVersionTable.PSVersion``: Windows PowerShell 5.1 is what the harness's
  scripts are written for (``Get-NetFirewallRule``, ``Register-ScheduledTask``).
* The current token's membership of Administrators (``WindowsPrincipal.IsInRole``):
  OpenSSH for Windows gives an administrator's session its elevated token.
* OpenSSH's ``DefaultShell`` (``HKLM:\\SOFTWARE\\OpenSSH``; none: cmd.exe): the
  harness's command line is ``powershell -EncodedCommand``, which any of them runs.
* WireGuard for Windows' versions, as the wireguard-nt driver reads them
  (`harness.impl.wireguard_nt.versions_script`), held against the thresholds the
  driver follows (`harness.impl.windows.implementation_switch`: WireGuardNT from 0.4).
* iperf3.exe at the lab's path (``iperf3 = ...``) or on the PATH.
* The network profiles (``Get-NetConnectionProfile``'s ``NetworkCategory``) and the
  firewall's enabled profiles (``Get-NetFirewallProfile``): the harness adds its rules.
* Free space on the system drive (``Get-PSDrive``'s ``Free``, bytes).
"""

from __future__ import annotations

from harness.impl.base import ImplName
from harness.impl.windows import ClientImplementation, implementation_switch
from harness.impl.wireguard_go_windows import PROGRAM as WIREGUARD_GO_PROGRAM
from harness.impl.wireguard_nt import INSTALL_DIR, parse_versions, versions_script
from harness.lab.hostcheck.core import CheckVerdict, HostCheck, version_tuple
from harness.lab.hostcheck.needs import HostNeeds
from harness.targets.windows.powershell import ps_quote

POWERSHELL_MIN = (5, 1)
FREE_DISK_MIN = 1 << 30
"""A GiB free on the system drive: logs, captures and an MSI to install."""
CLIENT_URL = "https://download.wireguard.com/windows-client/"


def windows_script(needs: HostNeeds) -> str:
    """The read-only script whose ``key=value`` lines `windows_checks` reads."""
    iperf3 = needs.iperf3_path or "iperf3.exe"
    program = needs.go_windows_program or WIREGUARD_GO_PROGRAM
    nt = needs.nt_program
    install_dir = nt.rsplit("\\", 1)[0] if "\\" in nt else INSTALL_DIR  # as the driver takes it
    return (
        "'ps=' + $PSVersionTable.PSVersion.ToString()\n"
        "$id = [Security.Principal.WindowsIdentity]::GetCurrent()\n"
        "'user=' + $id.Name\n"
        "'admin=' + ([Security.Principal.WindowsPrincipal]$id).IsInRole("
        "[Security.Principal.WindowsBuiltInRole]::Administrator)\n"
        "'shell=' + (Get-ItemProperty -Path 'HKLM:\\SOFTWARE\\OpenSSH' -Name DefaultShell "
        "-ErrorAction SilentlyContinue).DefaultShell\n"
        + versions_script(install_dir)
        + f"$i = Get-Command -Name {ps_quote(iperf3)} -CommandType Application -ErrorAction SilentlyContinue "
        "| Select-Object -First 1\n"
        "'iperf3=' + $(if ($i) { $i.Source + ' ' + ((& $i.Source --version 2>&1 | Select-Object -First 1) "
        "-join '') })\n"
        f"$g = {ps_quote(program)}\n"
        "'wggo=' + $(if (Test-Path -LiteralPath $g) { 'present' })\n"
        "'wintun=' + $(if (Test-Path -LiteralPath (Join-Path (Split-Path -Parent $g) 'wintun.dll')) "
        "{ 'present' })\n"
        "'profiles=' + ((Get-NetConnectionProfile -ErrorAction SilentlyContinue | ForEach-Object "
        "{ [string]$_.InterfaceAlias + ':' + [string]$_.NetworkCategory }) -join ', ')\n"
        "'firewall=' + ((Get-NetFirewallProfile -ErrorAction SilentlyContinue | Where-Object "
        "{ $_.Enabled } | ForEach-Object { [string]$_.Name }) -join ', ')\n"
        "'drive=' + $env:SystemDrive\n"
        "'free=' + (Get-PSDrive -Name $env:SystemDrive.TrimEnd(':')).Free\n"
    )


def _values(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.lstrip("\ufeff").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and key.strip() not in out:
            out[key.strip()] = value.strip()
    return out


def windows_checks(needs: HostNeeds, text: str) -> list[HostCheck]:
    """The rows of a Windows host from what `windows_script` printed there."""
    host, v = needs.host, _values(text)
    rows = []
    ps = v.get("ps", "")
    if not ps:
        rows.append(HostCheck(host, "PowerShell", "", CheckVerdict.UNKNOWN))
    elif version_tuple(ps) < POWERSHELL_MIN:
        rows.append(HostCheck(host, "PowerShell", ps, CheckVerdict.TOO_OLD,
                              "install Windows Management Framework 5.1"))  # fmt: skip
    else:
        rows.append(HostCheck(host, "PowerShell", ps, CheckVerdict.OK))
    user = v.get("user", "") or "?"
    rows.append(
        HostCheck(host, "Administrator", user, CheckVerdict.OK)
        if v.get("admin", "").lower() == "true"
        else HostCheck(
            host,
            "Administrator",
            f"{user}: not elevated",
            CheckVerdict.MISSING,
            "log in over SSH as a member of Administrators",
        )
    )
    shell = v.get("shell", "")
    rows.append(HostCheck(host, "OpenSSH default shell", shell or "cmd.exe (none set)", CheckVerdict.OK))
    rows.extend(wireguard_checks(needs, parse_versions(text)))
    rows.append(iperf3_check(needs, v.get("iperf3", "")))
    if ImplName.WIREGUARD_GO_WINDOWS in needs.impls:
        rows.extend(wireguard_go_checks(host, needs.go_windows_program or WIREGUARD_GO_PROGRAM, v))
    profiles, firewall = v.get("profiles", ""), v.get("firewall", "")
    found = f"network {profiles or '?'}; firewall on for {firewall or 'none'}"
    rows.append(
        HostCheck(host, "firewall profile", found, CheckVerdict.OK if profiles else CheckVerdict.UNKNOWN)
    )
    rows.append(disk_check(host, v.get("drive", "") or "C:", v.get("free", "")))
    return rows


def wireguard_checks(needs: HostNeeds, versions: dict[str, str]) -> list[HostCheck]:
    """WireGuard for Windows' client and wg.exe against what the lab's drivers do."""
    host = needs.host
    client, wg, nt = versions.get("client", ""), versions.get("wg", ""), versions.get("nt", "")
    install = f"install WireGuard for Windows ({CLIENT_URL})"
    rows = []
    if not client:
        rows.append(HostCheck(host, "WireGuard for Windows", "", CheckVerdict.MISSING, install))
    elif ImplName.WIREGUARD_NT in needs.impls:
        rows.append(client_check(host, client, nt))
    else:
        rows.append(HostCheck(host, "WireGuard for Windows", client, CheckVerdict.OK))
    rows.append(
        HostCheck(host, "wg.exe", wg, CheckVerdict.OK)
        if wg
        else HostCheck(host, "wg.exe", "", CheckVerdict.MISSING, install)
    )
    return rows


def client_check(host: str, client: str, nt: str) -> HostCheck:
    """The client's version against the wireguard-nt driver's path: WireGuardNT from
    0.4; 0.4.x told by a registry switch the driver sets; 0.5 onwards always."""
    driver = f", WireGuardNT {nt}" if nt else ", WireGuardNT not loaded yet"
    try:
        switch = implementation_switch(client, ClientImplementation.KERNEL)
    except ValueError:
        return HostCheck(host, "WireGuard for Windows", client, CheckVerdict.TOO_OLD,
                         f"WireGuardNT needs 0.4 or later: update from {CLIENT_URL}")  # fmt: skip
    how = f"kernel driver via registry {switch[0]}={switch[1]}" if switch else "kernel driver"
    return HostCheck(host, "WireGuard for Windows", f"{client}{driver} ({how})", CheckVerdict.OK)


def wireguard_go_checks(host: str, program: str, v: dict[str, str]) -> list[HostCheck]:
    """wireguard-go.exe at its path and wintun.dll beside it."""
    folder = program.rsplit("\\", 1)[0]
    rows = []
    for key, check, path in (("wggo", "wireguard-go.exe", program), ("wintun", "wintun.dll", folder)):
        rows.append(
            HostCheck(host, check, path, CheckVerdict.OK)
            if v.get(key) == "present"
            else HostCheck(host, check, path, CheckVerdict.MISSING, f"put {check} in {folder}")
        )
    return rows


def iperf3_check(needs: HostNeeds, found: str) -> HostCheck:
    """iperf3.exe: ``PATH VERSION-LINE`` or ''."""
    host = needs.host
    where = needs.iperf3_path or "iperf3.exe on the PATH"
    if not found:
        fix = (f"put iperf3.exe at {needs.iperf3_path}" if needs.iperf3_path
               else "put iperf3.exe on the PATH, or give its path as the host's iperf3")  # fmt: skip
        return HostCheck(host, "iperf3.exe", where, CheckVerdict.MISSING, fix)
    path, _, rest = found.partition(" ")
    version = rest.split("iperf ", 1)[1].split()[0] if "iperf " in rest else ""
    shown = f"{version} at {path}" if version else path
    if needs.iperf3_min and version and version_tuple(version) < needs.iperf3_min:
        minimum = ".".join(map(str, needs.iperf3_min))
        return HostCheck(host, "iperf3.exe", shown, CheckVerdict.TOO_OLD, f"iperf3 {minimum} or later")
    return HostCheck(host, "iperf3.exe", shown, CheckVerdict.OK)


def disk_check(host: str, drive: str, free: str) -> HostCheck:
    if not free.isdigit():
        return HostCheck(host, "free disk", f"{drive} unknown", CheckVerdict.UNKNOWN)
    gib = int(free) / (1 << 30)
    found = f"{gib:.1f} GiB on {drive}"
    if int(free) < FREE_DISK_MIN:
        return HostCheck(host, "free disk", found, CheckVerdict.MISSING, f"free at least 1 GiB on {drive}")
    return HostCheck(host, "free disk", found, CheckVerdict.OK)
