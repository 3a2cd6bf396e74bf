"""What Windows hosts print, read by pure functions.

Nothing here touches a host; `harness.targets.windows` and the Windows drivers
run the commands, these functions read the text (what the harness writes for a
Windows host is in `harness.impl.windows`). Every format is learnt from its
program's public source (named at each parser) and tested on recorded output in
``tests/data/windows``; none was captured on a real Windows machine by this
project yet.

* PowerShell's standard error: plain error records, or CLIXML (``#< CLIXML``)
  when powershell.exe's stderr is a pipe, as it is under OpenSSH without a
  terminal (PowerShell/PowerShell#5912, #16678; ansible's
  ``plugins/shell/powershell.py`` parses the same). `powershell_error_summary`
  makes one line of either.
* ``wireguard /dumplog``: the ring logger's lines (wireguard-windows
  ``ringlogger/ringlogger.go`` ``WriteTo``: ``"%s: %s\\n"`` with the time as
  ``2006-01-02 15:04:05.000000``; a line is ``[TAG] text``, TAG ``MGR`` for the
  manager, ``TUN`` for tunnel services, whose text starts ``[NAME] `` once the
  tunnel's configuration is loaded: ``tunnel/service.go`` ``log.SetPrefix``).
* The facts script's JSON (``ConvertTo-Json -Compress`` of properties of
  Win32_OperatingSystem, Win32_ComputerSystem, Win32_Processor, Get-NetAdapter
  and Get-NetTCPSetting, and the active power plan as ``powercfg
  /getactivescheme`` prints it), and the lab-link script's JSON (the interface
  ``Find-NetRoute`` picks, with Get-NetAdapterLso, -Rsc and -ChecksumOffload).
* Version numbers: the client's, and the one in an MSI's name.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from harness.parsers import ParseError, virt
from harness.parsers.facts import HostFacts

# -- PowerShell error output ------------------------------------------------

CLIXML_HEADER = "#< CLIXML"
_CLIXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def _clixml_unescape(text: str) -> str:
    """Undo the ``_xHHHH_`` escapes of CLIXML strings (UTF-16 code units, so
    surrogate pairs are joined)."""
    units = _CLIXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    return units.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def decode_clixml(text: str) -> str:
    """The error stream's text from CLIXML stderr (progress records dropped); other
    text is returned unchanged. Text outside the ``<Objs>`` blocks (a native
    program's own stderr) is kept."""
    if CLIXML_HEADER not in text:
        return text
    out: list[str] = []
    rest = text.replace(CLIXML_HEADER, "")
    for match in re.finditer(r"(?s)(.*?)(<Objs\b.*?</Objs>)", rest):
        before, block = match.group(1), match.group(2)
        if before.strip():
            out.append(before.strip("\r\n") + "\n")
        try:
            root = ET.fromstring(block)
        except ET.ParseError:
            out.append(block)
            continue
        for element in root:
            if element.tag.endswith("}S") and element.get("S") == "Error":
                out.append(_clixml_unescape(element.text or ""))
    tail = re.sub(r"(?s).*</Objs>", "", rest) if "</Objs>" in rest else rest
    if tail.strip():
        out.append(tail.strip("\r\n") + "\n")
    return "".join(out).replace("\r\n", "\n")


def powershell_error_summary(stderr: str) -> str:
    """One line for an error PowerShell printed: the first line of the first error
    record (``Get-Item : Cannot find path ...``), with the continuation lines a
    console wraps long messages into joined back; the last non-blank line for
    other text; '' for none. ``At line:``, the code excerpt and the
    ``+ CategoryInfo`` lines are dropped (the command is named by the caller)."""
    lines = [line.rstrip() for line in decode_clixml(stderr).splitlines()]
    message: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not stripped:
            if message:
                break
            continue
        if stripped.startswith("At line:") or stripped.startswith("At ") and " char:" in stripped:
            break
        if stripped.startswith("+ ") or stripped == "+":
            break
        message.append(stripped)
    if message:
        return " ".join(message)
    meaningful = [line.strip() for line in lines if line.strip()]
    return meaningful[-1] if meaningful else ""


# -- wireguard /dumplog -----------------------------------------------------

_DUMPLOG_LINE = re.compile(
    r"^(?P<time>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}): \[(?P<tag>[A-Z]{1,5})\] (?P<text>.*)$"
)
_TUNNEL_PREFIX = re.compile(r"^\[(?P<name>[A-Za-z0-9_=+.-]{1,32})\] (?P<message>.*)$")


@dataclass(frozen=True)
class DumplogLine:
    """One line of ``wireguard /dumplog``."""

    time: str
    """As printed: local time, ``2024-05-03 10:11:12.123456``."""
    tag: str
    """``MGR`` (manager service), ``TUN`` (a tunnel service) or another ring logger tag."""
    tunnel: str | None
    """The tunnel the line is about (``[NAME] `` prefix), None for none."""
    message: str
    raw: str


def parse_dumplog(text: str) -> list[DumplogLine]:
    """The lines of ``wireguard /dumplog``; a line that does not have the ring
    logger's shape raises ParseError naming it (blank lines are skipped)."""
    out: list[DumplogLine] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        match = _DUMPLOG_LINE.match(raw)
        if not match:
            raise ParseError(f"dumplog line {lineno}: {raw[:80]!r} is not 'TIME: [TAG] TEXT'")
        body = match.group("text")
        tunnel = None
        prefixed = _TUNNEL_PREFIX.match(body)
        if prefixed:
            tunnel, body = prefixed.group("name"), prefixed.group("message")
        out.append(DumplogLine(match.group("time"), match.group("tag"), tunnel, body, raw))
    return out


def filter_dumplog(text: str, tunnel: str, since: str | None = None) -> str:
    """The lines of ``tunnel``'s service, as printed: those with its ``[NAME] ``
    prefix and, when ``since`` (the host's local time when the harness installed
    the service, in the log's format) is given, the service's start-up lines.

    A tunnel service sets its prefix only once its configuration is loaded
    (wireguard-windows ``tunnel/service.go`` ``Execute``: ``conf.LoadFromPath``,
    then ``log.SetPrefix``), so a configuration it cannot load is reported in
    ``[TUN]`` lines without a prefix (the combined error, then ``Shutting
    down``). The start-up window keeps such unprefixed ``[TUN]`` lines from
    ``since`` up to this tunnel's first prefixed line or the first unprefixed
    ``Shutting down`` (included); another tunnel service failing in that window
    would be kept too. Manager (``[MGR]``) lines and other tunnels' lines are
    dropped; lines of other shapes (a truncated first line) are dropped, never
    fatal."""
    kept = []
    window = since is not None
    for raw in text.splitlines():
        try:
            lines = parse_dumplog(raw)
        except ParseError:
            continue
        if not lines:
            continue
        line = lines[0]
        if line.tunnel == tunnel:
            if since is not None and line.time >= since:
                window = False
            kept.append(raw)
        elif (
            window and since is not None and line.tag == "TUN" and line.tunnel is None and line.time >= since
        ):
            kept.append(raw)
            window = line.message != "Shutting down"
    return "".join(line + "\n" for line in kept)


# -- facts -------------------------------------------------------------------


def _str(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _list(value: Any) -> list[Any]:
    """ConvertTo-Json prints a one-element array as the element itself
    when the array was not wrapped in @(): accept both."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


ARCHITECTURES = {"AMD64": "x86_64", "ARM64": "aarch64", "x86": "i686"}


def version_from_text(pattern: str, text: str) -> str:
    match = re.search(pattern, text or "")
    return match.group(1) if match else ""


def _object(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text.lstrip("\ufeff"))
    except json.JSONDecodeError as exc:
        raise ParseError(f"{what}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ParseError(f"{what}: expected a JSON object")
    return data


def _per_template(templates: list[Any], key: str) -> str:
    """``Datacenter=CUBIC, Internet=CUBIC``: one TCP setting property over the
    templates that have it, sorted by template name."""
    pairs = ((_str(t.get("SettingName")), _str(t.get(key))) for t in templates if isinstance(t, dict))
    return ", ".join(f"{name}={value}" for name, value in sorted(pairs) if name and value)


def power_plan(text: str) -> str:
    """The plan's name from ``powercfg /getactivescheme``: ``Power Scheme GUID:
    381b4222-f694-41f0-9685-ff5bb260df2e  (Balanced)`` -> ``Balanced``; '' if absent."""
    return version_from_text(r"\(([^()]*)\)\s*$", text.strip())


def parse_windows_facts(text: str) -> HostFacts:
    """HostFacts from the JSON the facts script (`harness.targets.windows.powershell.facts_script`) prints."""
    data = _object(text, "windows facts")
    os_info = data.get("os") or {}
    cpus = _list(data.get("cpu"))
    build = _str(os_info.get("BuildNumber"))
    ubr = _str(data.get("ubr"))
    windows_build = f"{build}.{ubr}" if build and ubr else build
    version = _str(os_info.get("Version"))
    kernel = f"{version.rsplit('.', 1)[0]}.{windows_build}" if version.count(".") >= 2 else version
    nics = []
    for nic in _list(data.get("nics")):
        if not isinstance(nic, dict):
            continue
        desc = _str(nic.get("InterfaceDescription"))
        if desc.startswith(("WireGuard Tunnel", "Wintun Userspace Tunnel")):
            continue
        speed = _str(nic.get("LinkSpeed"))
        nics.append(f"{_str(nic.get('Name'))}: {desc} ({_str(nic.get('Status'))}, {speed})")
    tools = {
        "wireguard": _str(data.get("wireguard")),
        "wg": version_from_text(r"wireguard-tools v?(\S+)", _str(data.get("wg"))),
        "iperf3": version_from_text(r"iperf (\S+)", _str(data.get("iperf3"))),
    }
    system = data.get("system") if isinstance(data.get("system"), dict) else {}
    extra = {
        "windows_build": windows_build,
        "client_version": tools["wireguard"],
        "nt_version": _str(data.get("nt")),
        "nic": "; ".join(nics),
    }
    if system:
        extra["system"] = f"{_str(system.get('Manufacturer'))} {_str(system.get('Model'))}".strip()
    templates = _list(data.get("tcp"))
    autotuning = _per_template(templates, "AutoTuningLevelLocal")
    return HostFacts(
        hostname=_str(data.get("hostname")),
        kernel=kernel,
        os=_str(os_info.get("Caption")),
        cpu_model=_str(cpus[0].get("Name")) if cpus and isinstance(cpus[0], dict) else "",
        cores=sum(_int(c.get("NumberOfLogicalProcessors")) for c in cpus if isinstance(c, dict)),
        memory_bytes=_int(os_info.get("TotalVisibleMemorySize")) * 1024,
        arch=ARCHITECTURES.get(_str(data.get("arch")), _str(data.get("arch"))),
        tools=tools,
        extra=extra,
        virtualization=virt.classify_windows(
            _str(system.get("Manufacturer")),
            _str(system.get("Model")),
            system.get("HypervisorPresent") is True,
        )
        if system
        else "",
        tcp_congestion_control=_per_template(templates, "CongestionProvider"),
        socket_buffers={"autotuning": autotuning} if autotuning else {},
        cpu_governor=power_plan(_str(data.get("powerplan"))),
    )


WINDOWS_OFFLOADS = (
    ("lso-ipv4", "LsoIPv4"),
    ("lso-ipv6", "LsoIPv6"),
    ("rsc-ipv4", "RscIPv4"),
    ("rsc-ipv6", "RscIPv6"),
    ("checksum-tcp-ipv4", "ChecksumTcpIPv4"),
    ("checksum-udp-ipv4", "ChecksumUdpIPv4"),
    ("uso-ipv4", "UsoIPv4"),
)
"""(offload as `HostFacts.link_offloads` names it, the link script's JSON key): large
send (LSO), receive segment coalescing (RSC), checksum offload (``Disabled``,
``TxEnabled``, ``RxEnabled``, ``RxTxEnabled``) and UDP segmentation (USO, Windows
Server 2022 and Windows 11 on)."""


def parse_windows_link(text: str) -> tuple[str, dict[str, str]]:
    """(interface, offloads) from the link script's JSON
    (`harness.targets.windows.powershell.link_script`): yes/no as ``on``/``off``,
    checksum offload as Windows names it; a property the adapter lacks is left out."""
    data = _object(text, "windows link")
    offloads = {}
    for name, key in WINDOWS_OFFLOADS:
        value = data.get(key)
        if isinstance(value, bool):
            offloads[name] = "on" if value else "off"
        elif _str(value):
            offloads[name] = _str(value)
    return _str(data.get("interface")), offloads


# -- versions ----------------------------------------------------------------


def parse_version(text: str) -> tuple[int, ...]:
    """``"0.4.10"`` -> (0, 4, 10); ``"0.5"`` -> (0, 5, 0). ValueError if not a version."""
    match = re.fullmatch(r"\s*v?(\d+(?:\.\d+)*)\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a version number")
    parts = tuple(int(p) for p in match.group(1).split("."))
    return parts + (0,) * (3 - len(parts)) if len(parts) < 3 else parts


def msi_version_from_name(path: str) -> str:
    """The version in a download-server MSI name (``wireguard-amd64-0.5.3.msi``), '' if none."""
    name = re.split(r"[\\/]", path)[-1]
    return version_from_text(r"-(\d+(?:\.\d+)+)\.msi$", name)
