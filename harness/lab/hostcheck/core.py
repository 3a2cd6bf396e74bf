"""The checks themselves, pure: a `HostCheck` row per thing a host needs, computed
from what one read-only script printed there (`posix_script`, `posix_checks`),
and the table a person reads (`render_table`), with the exit status of
``wgharness lab check --hosts`` (`exit_status`).

Rules of this module: nothing here runs a command or reads a file; every row
names its host and check, what was found, a `CheckVerdict` and, unless it is
ok, the fix in one line. A verdict is ``unknown`` only where the host could not
tell (no kernel configuration to read): unknown never stops a run.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from harness.errors import EXIT_FAILED, EXIT_INFRA, EXIT_OK
from harness.lab.hostcheck.needs import PYTHON_MIN, HostNeeds
from harness.parsers.facts import sections
from harness.results.render.summary import table
from harness.targets.base import HostKind


class CheckVerdict(StrEnum):
    """What a check found, as the table prints it."""

    OK = "ok"
    MISSING = "missing"
    TOO_OLD = "too old"
    UNKNOWN = "unknown"

    @property
    def blocks(self) -> bool:
        """A run of the lab cannot work with it."""
        return self in (CheckVerdict.MISSING, CheckVerdict.TOO_OLD)


REACH = "reachable"
"""The check every remote host has first: could it be logged in to at all."""


@dataclass(frozen=True)
class HostCheck:
    """One row of the table."""

    host: str
    check: str
    """What was checked: ``wireguard-go``, ``/dev/net/tun``, ``sudo``..."""
    found: str
    """The version, path or value found ('' when nothing was)."""
    verdict: CheckVerdict
    fix: str = ""
    """How to put it right, one line ('' when ok)."""

    @property
    def line(self) -> str:
        """The row as one line, for an error message."""
        found = f" ({self.found})" if self.found else ""
        fix = f": {self.fix}" if self.fix else ""
        return f"{self.host}: {self.check} {self.verdict}{found}{fix}"


@dataclass(frozen=True)
class Tool:
    """A POSIX program a lab may need: how its version is printed and read, and how
    to install it on Debian."""

    version_args: str
    pattern: str
    package: str


TOOLS: dict[str, Tool] = {
    "ip": Tool("-V", r"iproute2-(?:ss)?v?([0-9][^\s,]*)", "iproute2"),
    "tc": Tool("-V", r"iproute2-(?:ss)?v?([0-9][^\s,]*)", "iproute2"),
    "wireguard-go": Tool("--version", r"wireguard-go v?(\S+)", "wireguard-go"),
    "wg": Tool("--version", r"wireguard-tools v?(\S+)", "wireguard-tools"),
    "iperf3": Tool("--version", r"iperf (\d\S*)", "iperf3"),
    "tcpdump": Tool("--version", r"tcpdump version (\S+)", "tcpdump"),
    "ethtool": Tool("--version", r"ethtool version (\S+)", "ethtool"),
    "tshark": Tool("--version", r"TShark \(Wireshark\) (\S+)", "tshark"),
    "qemu-system-x86_64": Tool("--version", r"QEMU emulator version (\S+)", "qemu-system-x86 qemu-utils"),
    "debootstrap": Tool("--version", r"debootstrap (\S+)", "debootstrap"),
}

KERNEL_FEATURES: dict[str, tuple[str, str]] = {
    "tbf": ("NET_SCH_TBF", "sch_tbf"),
    "netem": ("NET_SCH_NETEM", "sch_netem"),
    "wireguard": ("WIREGUARD", "wireguard"),
}
"""Kernel features by check: (config option without ``CONFIG_``, module)."""


# -- the POSIX script ----------------------------------------------------------


def posix_script(needs: HostNeeds) -> str:
    """The one read-only shell script a POSIX host runs: sections ``@name`` that
    `posix_checks` reads."""
    lines = [
        'echo "@uid"; id -u',
        'echo "@user"; id -un',
        'echo "@tun"; [ -c /dev/net/tun ] && echo "character device"',
        'echo "@netns"; ip netns list >/dev/null 2>&1 && echo listed',
        'echo "@kconfig"; { zcat /proc/config.gz 2>/dev/null || cat "/boot/config-$(uname -r)" 2>/dev/null; }'
        " | grep -E '^(# )?CONFIG_(NET_SCH_TBF|NET_SCH_NETEM|WIREGUARD)[= ]'",
        'echo "@modules"; for m in sch_tbf sch_netem wireguard; do [ -d "/sys/module/$m" ] && echo "$m loaded";'
        ' find "/lib/modules/$(uname -r)/kernel" -name "$m.ko*" 2>/dev/null | head -n 1 | sed "s|^|$m file |";'
        " done",
    ]
    for name in needs.tools:
        tool = TOOLS[name]
        lines.append(f'echo "@tool {name}"; command -v {name} && {name} {tool.version_args} 2>&1 | head -n 3')
    for program in needs.programs:
        quoted = shlex.quote(program)
        lines.append(f'echo "@program {program}"; [ -x {quoted} ] && echo executable')
    if needs.pyref_python:
        lines.append(
            'echo "@python"; python3 -c \'import sys; print("%d.%d.%d" % sys.version_info[:3]); '
            'import cryptography; print("cryptography " + cryptography.__version__)\' 2>&1 | tail -n 2'
        )
    if needs.kind is HostKind.VM:
        lines.append(
            'echo "@kvm"; [ -e /dev/kvm ] && echo present; [ -r /dev/kvm ] && [ -w /dev/kvm ] && echo usable'
        )
        image = shlex.quote(needs.image + "/manifest.json")
        lines.append(f'echo "@image"; [ -f {image} ] && echo cached')
        lines.append(
            'echo "@tool debootstrap"; command -v debootstrap && debootstrap --version 2>&1 | head -n 1'
        )
    return "\n".join(lines) + "\nexit 0\n"


def version_tuple(text: str) -> tuple[int, ...]:
    """``3.12.1`` -> (3, 12, 1); the leading digits of each part ('' -> ())."""
    parts = []
    for piece in text.split("."):
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def _install(package: str) -> str:
    return f"apt install {package}"


def tool_check(host: str, name: str, output: str, minimum: tuple[int, ...] | None = None) -> HostCheck:
    """A tool from its section: ``command -v`` (the path) then its version output."""
    tool = TOOLS[name]
    lines = output.splitlines()
    if not lines or not lines[0].startswith("/"):
        return HostCheck(host, name, "", CheckVerdict.MISSING, _install(tool.package))
    path = lines[0].strip()
    match = re.search(tool.pattern, "\n".join(lines[1:]))
    version = match.group(1) if match else ""
    found = f"{version} at {path}" if version else path
    if minimum is not None and version and version_tuple(version) < minimum:
        return HostCheck(
            host,
            name,
            found,
            CheckVerdict.TOO_OLD,
            f"{name} {_dotted(minimum)} or later ({_install(tool.package)})",
        )
    return HostCheck(host, name, found, CheckVerdict.OK)


def kernel_feature(host: str, check: str, feature: str, s: dict[str, str], fix: str) -> HostCheck:
    """A kernel feature from the kernel's configuration (``CONFIG_X=y``: built in; ``=m``:
    a module, which must be there) and its modules (loaded, or a file to load)."""
    option, module = KERNEL_FEATURES[feature]
    config = re.search(rf"^(# )?CONFIG_{option}(=(\w)| is not set)", s.get("kconfig", ""), re.M)
    modules = s.get("modules", "").splitlines()
    loaded = f"{module} loaded" in modules
    file = next((line.split(" ", 2)[2] for line in modules if line.startswith(f"{module} file ")), "")
    if loaded:
        return HostCheck(host, check, f"module {module} loaded", CheckVerdict.OK)
    if config and config.group(3) == "y":
        return HostCheck(host, check, "built into the kernel", CheckVerdict.OK)
    if file:
        return HostCheck(host, check, f"module {file}", CheckVerdict.OK)
    if config and config.group(3) == "m":
        return HostCheck(
            host, check, f"CONFIG_{option}=m, no {module} module installed", CheckVerdict.MISSING, fix
        )
    if config:
        return HostCheck(host, check, f"CONFIG_{option} is not set", CheckVerdict.MISSING, fix)
    return HostCheck(host, check, "no kernel configuration readable", CheckVerdict.UNKNOWN)


ROOT_FIX = "log in as root, or set sudo = true in the lab's host (passwordless sudo)"


def posix_checks(needs: HostNeeds, text: str) -> list[HostCheck]:
    """The rows of a POSIX host (local, netns, ssh; vm: this machine) from what
    `posix_script` printed there."""
    host = needs.host
    s = sections(text)
    rows: list[HostCheck] = []
    uid, user = s.get("uid", ""), s.get("user", "") or "?"
    root = uid == "0"
    if needs.kind is HostKind.SSH:
        how = "through sudo" if needs.sudo else "logged in"
        rows.append(
            HostCheck(host, "root", f"{how} as {user}", CheckVerdict.OK)
            if root
            else HostCheck(
                host, "root", f"logged in as {user} (uid {uid or '?'})", CheckVerdict.MISSING, ROOT_FIX
            )
        )
    else:
        rows.append(
            HostCheck(host, "root", f"running as {user}", CheckVerdict.OK)
            if root
            else HostCheck(
                host,
                "root",
                f"running as {user} (uid {uid or '?'})",
                CheckVerdict.MISSING,
                "run wgharness as root (it creates network namespaces)",
            )  # fmt: skip
        )
    if needs.netns:
        listed = s.get("netns", "") == "listed"
        rows.append(
            HostCheck(host, "network namespaces", "ip netns, as root", CheckVerdict.OK)
            if listed and root
            else HostCheck(
                host,
                "network namespaces",
                "ip netns unusable" if not listed else "not root",
                CheckVerdict.MISSING,
                "run as root with iproute2 installed",
            )  # fmt: skip
        )
    for name in needs.tools:
        minimum = needs.iperf3_min if name == "iperf3" else None
        rows.append(tool_check(host, name, s.get(f"tool {name}", ""), minimum))
    for program in needs.programs:
        ok = s.get(f"program {program}", "") == "executable"
        rows.append(
            HostCheck(host, "program", program, CheckVerdict.OK)
            if ok
            else HostCheck(
                host,
                "program",
                program,
                CheckVerdict.MISSING,
                "build it there, or fix the lab's program path",
            )  # fmt: skip
        )
    if needs.tun:
        rows.append(
            HostCheck(host, "/dev/net/tun", "character device", CheckVerdict.OK)
            if s.get("tun") == "character device"
            else HostCheck(
                host,
                "/dev/net/tun",
                "",
                CheckVerdict.MISSING,
                "a kernel with CONFIG_TUN (modprobe tun); in a container, pass /dev/net/tun in",
            )  # fmt: skip
        )
    if needs.tbf:
        rows.append(
            kernel_feature(host, "tc tbf", "tbf", s, "a kernel with CONFIG_NET_SCH_TBF (modprobe sch_tbf)")
        )
    if needs.netem:
        rows.append(kernel_feature(host, "tc netem", "netem", s,
                                   "a kernel with CONFIG_NET_SCH_NETEM (modprobe sch_netem), "
                                   'or the scenario\'s backend = "relay"'))  # fmt: skip
    if needs.kernel_wireguard:
        rows.append(kernel_feature(host, "kernel wireguard", "wireguard", s,
                                   "a kernel with CONFIG_WIREGUARD (Linux 5.6 or later; modprobe wireguard)"))  # fmt: skip
    if needs.pyref_python:
        rows.extend(python_checks(host, s.get("python", "")))
    if needs.kind is HostKind.VM:
        rows.extend(vm_checks(needs, s))
    return rows


def python_checks(host: str, output: str) -> list[HostCheck]:
    """python3 and cryptography for pyref, from ``@python``: its version, then
    ``cryptography X`` or the import's error."""
    lines = output.splitlines()
    first = lines[0].strip() if lines else ""
    if not re.fullmatch(r"\d+\.\d+\.\d+", first):
        return [HostCheck(host, "python3", first[:60], CheckVerdict.MISSING, _install("python3"))]
    rows = [
        HostCheck(host, "python3", first, CheckVerdict.OK)
        if version_tuple(first) >= PYTHON_MIN
        else HostCheck(host, "python3", first, CheckVerdict.TOO_OLD, f"Python {_dotted(PYTHON_MIN)} or later")
    ]
    crypto = next((line for line in lines[1:] if line.startswith("cryptography ")), "")
    rows.append(
        HostCheck(host, "python3 cryptography", crypto.split(" ", 1)[1], CheckVerdict.OK)
        if crypto
        else HostCheck(
            host, "python3 cryptography", "", CheckVerdict.MISSING, _install("python3-cryptography")
        )
    )
    return rows


def vm_checks(needs: HostNeeds, s: dict[str, str]) -> list[HostCheck]:
    """The accelerator and the guest image of a vm host (on this machine)."""
    host = needs.host
    kvm = s.get("kvm", "").splitlines()
    rows = []
    if "usable" in kvm and needs.accel_verdict == "tcg":
        failed = "/dev/kvm opens, but KVM failed for this guest on an earlier boot here"
        if needs.accel == "kvm":
            rows.append(HostCheck(host, "accelerator", failed, CheckVerdict.MISSING,
                                  'accel = "auto" or "tcg" (docs/vm.md: KVM or TCG)'))  # fmt: skip
        else:
            rows.append(HostCheck(host, "accelerator", f"TCG: software emulation, slow ({failed})",
                                  CheckVerdict.OK))  # fmt: skip
    elif "usable" in kvm:
        rows.append(HostCheck(host, "accelerator", "KVM (/dev/kvm)", CheckVerdict.OK))
    elif needs.accel == "kvm":
        found = "/dev/kvm not usable" if "present" in kvm else "no /dev/kvm"
        rows.append(HostCheck(host, "accelerator", found, CheckVerdict.MISSING,
                              'enable virtualization (kvm module), or accel = "tcg" (slow)'))  # fmt: skip
    else:
        rows.append(HostCheck(host, "accelerator", "TCG: software emulation, slow (no usable /dev/kvm)",
                              CheckVerdict.OK))  # fmt: skip
    if s.get("image") == "cached":
        rows.append(HostCheck(host, "guest image", f"cached in {needs.image}", CheckVerdict.OK))
    else:
        rows.append(HostCheck(host, "guest image", "not built yet: the first run builds it (minutes, "
                              "from Debian's packages)", CheckVerdict.OK))  # fmt: skip
        rows.append(tool_check(host, "debootstrap", s.get("tool debootstrap", "")))
    return rows


def sudo_check(host: str, user: str, status: int, stderr: str) -> HostCheck:
    """``sudo -n true``'s outcome as a row."""
    if status == 0:
        return HostCheck(host, "sudo", f"{user}: without a password", CheckVerdict.OK)
    if status == 127 or "not found" in stderr:
        return HostCheck(
            host, "sudo", "not installed", CheckVerdict.MISSING, f"{_install('sudo')}, or log in as root"
        )
    return HostCheck(host, "sudo", f"{user}: needs a password", CheckVerdict.MISSING, sudo_fix(user))


def sudo_fix(user: str) -> str:
    return f"let {user} sudo without a password ({user} ALL=(ALL) NOPASSWD: ALL), or log in as root"


def reach_check(host: str, where: str, policy: str, error: str | None) -> HostCheck:
    """Whether a remote host could be logged in to (``error``: the one-line reason)."""
    if error is None:
        return HostCheck(host, REACH, f"{where}, host key {policy}", CheckVerdict.OK)
    return HostCheck(host, REACH, error, CheckVerdict.MISSING, "check the address, key, known_hosts and sshd")


# -- the table -----------------------------------------------------------------

COLUMNS = ("host", "check", "found", "verdict", "fix")


def render_table(rows: Sequence[HostCheck]) -> str:
    """The rows as a text table, with one line saying how it stands."""
    cells = [(r.host, r.check, r.found, str(r.verdict), r.fix) for r in rows]
    return table(COLUMNS, cells) + "\n" + summary(rows)


def summary(rows: Sequence[HostCheck]) -> str:
    counts = {v: sum(r.verdict is v for r in rows) for v in CheckVerdict}
    hosts = len({r.host for r in rows})
    if not any(v.blocks and counts[v] for v in CheckVerdict):
        unknown = f" ({counts[CheckVerdict.UNKNOWN]} unknown)" if counts[CheckVerdict.UNKNOWN] else ""
        return f"{_hosts(hosts)}: everything the lab needs is there{unknown}"
    told = ", ".join(f"{counts[v]} {v}" for v in CheckVerdict if v is not CheckVerdict.OK and counts[v])
    return f"{_hosts(hosts)}: {told}"


def unreachable(rows: Sequence[HostCheck]) -> list[HostCheck]:
    return [r for r in rows if r.check == REACH and r.verdict is not CheckVerdict.OK]


def blocking(rows: Sequence[HostCheck]) -> list[HostCheck]:
    """The rows that stop a run of the lab."""
    return [r for r in rows if r.verdict.blocks]


def exit_status(rows: Sequence[HostCheck]) -> int:
    """0: everything is there; 1: something is missing or too old; 3: a host cannot be reached."""
    if unreachable(rows):
        return EXIT_INFRA
    return EXIT_FAILED if blocking(rows) else EXIT_OK


def blocking_line(rows: Sequence[HostCheck]) -> str:
    """One line for a run that cannot start: each blocking row's host, check and fix."""
    bad = blocking(rows)
    return "host check: " + "; ".join(r.line for r in bad)


def _hosts(count: int) -> str:
    return f"{count} host" + ("" if count == 1 else "s")
