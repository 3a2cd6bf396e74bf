"""What Windows hosts print, and what the harness writes for them: pure functions.

Nothing here touches a host; `harness.targets.windows` and the Windows drivers
run the commands, these functions read and write the text. Every format is
learnt from its program's public source (named at each parser) and tested on
recorded output in ``tests/data/windows``; none was captured on a real Windows
machine by this project yet.

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
  Win32_OperatingSystem, Win32_ComputerSystem, Win32_Processor and
  Get-NetAdapter).
* The wg-quick configuration a tunnel service reads (wireguard-windows
  ``conf/parser.go``), with default routes split so the client's kill switch
  stays off, and the old clients' registry switches (``docs/adminregistry.md``
  of v0.4.x).
"""

from __future__ import annotations

import ipaddress
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from harness import virt
from harness.impl.config import InterfaceConfig
from harness.parsing import ParseError
from harness.targets.base import HostFacts

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


def parse_windows_facts(text: str) -> HostFacts:
    """HostFacts from the JSON the facts script (`harness.targets.windows.facts_script`) prints."""
    try:
        data = json.loads(text.lstrip("\ufeff"))
    except json.JSONDecodeError as exc:
        raise ParseError(f"windows facts: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ParseError("windows facts: expected a JSON object")
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
    )


# -- tunnel names ------------------------------------------------------------

TUNNEL_NAME = re.compile(r"[A-Za-z0-9_=+.-]{1,32}")
RESERVED_NAMES = (
    "CON", "PRN", "AUX", "NUL",
    *(f"COM{i}" for i in range(1, 10)),
    *(f"LPT{i}" for i in range(1, 10)),
)  # fmt: skip
"""Windows' reserved device names (wireguard-windows ``conf/name.go`` ``reservedNames``)."""


def tunnel_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a WireGuard for Windows tunnel name (it is also the
    name of the harness's file for it under ``C:\\ProgramData\\wgharness``), or None.

    The rules of wireguard-windows ``conf/name.go`` ``TunnelNameIsValid`` as of
    v1.1 and master: 1 to 32 of ``[A-Za-z0-9_=+.-]``, no leading or trailing dot
    (from v1.0), and not a reserved device name, whatever its case, alone or
    before a dot (``isReserved``: ``nul.x`` is reserved; master cuts at the
    first dot, v1.1 at the last, so master's rule covers both)."""
    if not TUNNEL_NAME.fullmatch(name):
        return "not 1 to 32 of A-Z a-z 0-9 _ = + . -"
    if name.startswith(".") or name.endswith("."):
        return "starts or ends with a dot"
    stem = name.split(".", 1)[0]
    if stem.upper() in RESERVED_NAMES:
        return f"{stem!r} is a reserved Windows device name"
    return None


# -- versions and the old clients' registry switches ----------------------


def parse_version(text: str) -> tuple[int, ...]:
    """``"0.4.10"`` -> (0, 4, 10); ``"0.5"`` -> (0, 5, 0). ValueError if not a version."""
    match = re.fullmatch(r"\s*v?(\d+(?:\.\d+)*)\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a version number")
    parts = tuple(int(p) for p in match.group(1).split("."))
    return parts + (0,) * (3 - len(parts)) if len(parts) < 3 else parts


REGISTRY_KEY = r"HKLM:\Software\WireGuard"


def implementation_switch(client_version: str, implementation: str) -> tuple[str, int] | None:
    """The ``HKLM\\Software\\WireGuard`` DWORD value that makes a client of
    ``client_version`` use ``implementation`` ("kernel" or "userspace"), or None when
    that client needs none. ValueError when the client has no such path.

    From wireguard-windows ``docs/adminregistry.md`` and ``conf/admin_windows.go``:
    v0.4.0–v0.4.7 use wireguard-go/Wintun unless ``ExperimentalKernelDriver`` is 1;
    v0.4.8 onwards prefer WireGuardNT unless ``UseUserspaceImplementation`` is 1
    (the issue says through v0.4.11; the v0.4.12 tag still reads the value, so the
    range here runs to the last 0.4 release); v0.5 removed wireguard-go, and
    clients before v0.4 have no kernel driver.
    """
    if implementation not in ("kernel", "userspace"):
        raise ValueError(f"implementation must be 'kernel' or 'userspace', not {implementation!r}")
    v = parse_version(client_version)
    kernel = implementation == "kernel"
    if v < (0, 4, 0):
        if kernel:
            raise ValueError(f"WireGuard for Windows {client_version} predates WireGuardNT (0.4)")
        return None
    if v < (0, 4, 8):
        return ("ExperimentalKernelDriver", 1 if kernel else 0)
    if v < (0, 5, 0):
        return ("UseUserspaceImplementation", 0 if kernel else 1)
    if not kernel:
        raise ValueError(
            f"WireGuard for Windows {client_version} has no userspace implementation (removed in 0.5): "
            "use the wireguard-go-windows driver"
        )
    return None


def remove_driver_flag(client_version: str) -> str:
    """The ``wireguard.exe`` flag that removes the installed WireGuardNT driver for
    a client of ``client_version``; ValueError for a client without one.

    wireguard-windows ``main.go``: v0.4 to v0.4.10 have ``/removealladapters``
    (it deletes every adapter of the client's pool, then the driver if no other
    pool has adapters: ``driver/driver_windows.go`` ``DeleteDriver`` of v0.4.10),
    ``/removedriver`` replaces it in v0.4.11 (``driver.Uninstall``:
    ``WireGuardDeleteDriver``, which removes the driver only while no WireGuard
    adapter is in use, and fails otherwise); clients before v0.4 have no
    WireGuardNT."""
    v = parse_version(client_version)
    if v < (0, 4, 0):
        raise ValueError(
            f"WireGuard for Windows {client_version} predates WireGuardNT (0.4): no driver to remove"
        )
    return "/removealladapters" if v < (0, 4, 11) else "/removedriver"


def msi_version_from_name(path: str) -> str:
    """The version in a download-server MSI name (``wireguard-amd64-0.5.3.msi``), '' if none."""
    name = re.split(r"[\\/]", path)[-1]
    return version_from_text(r"-(\d+(?:\.\d+)+)\.msi$", name)


# -- the tunnel configuration ---------------------------------------------

_DEFAULT_SPLITS = {
    "0.0.0.0/0": ("0.0.0.0/1", "128.0.0.0/1"),
    "::/0": ("::/1", "8000::/1"),
}


def split_default_routes(allowed_ips: tuple[str, ...]) -> tuple[str, ...]:
    """Every ``/0`` replaced by its two ``/1`` halves. wireguard-windows turns its kill
    switch on for a single peer with a /0 allowed IP unless ``Table = off``
    (``tunnel/addressconfig.go`` ``enableFirewall``), which would cut the SSH
    session; the halves route the same traffic without it."""
    out: list[str] = []
    for item in allowed_ips:
        network = ipaddress.ip_network(item, strict=False)
        if network.prefixlen == 0:
            out.extend(_DEFAULT_SPLITS[str(network)])
        else:
            out.append(item)
    return tuple(out)


def render_tunnel_conf(cfg: InterfaceConfig, *, table_off: bool = False) -> str:
    """The wg-quick style file ``wireguard /installtunnelservice`` reads.

    With ``table_off`` the tunnel adds no routes at all (``Table = off``) and the
    allowed IPs are kept as given; otherwise /0 allowed IPs are split into /1
    halves (`split_default_routes`). CRLF line ends, as Notepad writes them (the
    parser accepts both).
    """
    lines = ["[Interface]", f"PrivateKey = {cfg.private_key}", f"ListenPort = {cfg.listen_port}"]
    if cfg.addresses:
        lines.append(f"Address = {', '.join(cfg.addresses)}")
    lines.append(f"MTU = {cfg.mtu}")
    if table_off:
        lines.append("Table = off")
    for peer in cfg.peers:
        lines += ["", "[Peer]", f"PublicKey = {peer.public_key}"]
        if peer.preshared_key:
            lines.append(f"PresharedKey = {peer.preshared_key}")
        allowed = peer.allowed_ips if table_off else split_default_routes(peer.allowed_ips)
        if allowed:
            lines.append(f"AllowedIPs = {', '.join(allowed)}")
        if peer.endpoint:
            lines.append(f"Endpoint = {peer.endpoint}")
        if peer.persistent_keepalive:
            lines.append(f"PersistentKeepalive = {peer.persistent_keepalive}")
    return "\r\n".join(lines) + "\r\n"


def routes_for(cfg: InterfaceConfig) -> tuple[str, ...]:
    """The routes a userspace tunnel needs besides its addresses' own prefixes: every
    peer's allowed IPs (with /0 split) not inside an interface address's network."""
    networks = [ipaddress.ip_interface(a).network for a in cfg.addresses]
    out: list[str] = []
    for peer in cfg.peers:
        for item in split_default_routes(peer.allowed_ips):
            net = ipaddress.ip_network(item, strict=False)
            covered = any(
                net.version == n.version and net.subnet_of(n)  # type: ignore[arg-type]
                for n in networks
            )
            if not covered and str(net) not in out:
                out.append(str(net))
    return tuple(out)
