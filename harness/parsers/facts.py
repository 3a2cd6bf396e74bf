"""Facts about a host, recorded with every run (with what it runs on: bare
metal or a hypervisor, named by `harness.parsers.virt`): the `HostFacts` record, the
POSIX facts script with the parser of what it prints, and the lab-link script
(which interface carries the lab's traffic, and its offloads) with its parser.

Collection is one command per host (the fixed script here, so an SSH host
costs one round trip: `harness.targets.local.collect_posix_facts` runs it); the
parsing is pure and tested on its own. The facts are gathered before the lab's
links exist, so the lab link's interface and offloads are asked for afterwards
(`link_script`, run by `harness.targets.base.Target.link_facts`).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from harness.parsers import virt


@dataclass(frozen=True)
class HostFacts:
    """What is recorded about a host with every run."""

    hostname: str
    kernel: str
    os: str
    cpu_model: str
    cores: int
    memory_bytes: int
    arch: str
    tools: dict[str, str] = field(default_factory=dict)
    """Tool name -> version string ('' when not installed)."""
    extra: dict[str, str] = field(default_factory=dict)
    """Anything else a target knows (namespace name, accelerator, ...)."""
    virtualization: str = ""
    """What the host runs on: ``bare metal``, ``KVM``, ``TCG (QEMU, -cpu qemu64)``
    or the hypervisor detected (`harness.parsers.virt`); '' when unknown."""
    tcp_congestion_control: str = ""
    """The default TCP congestion control (Linux ``net.ipv4.tcp_congestion_control``,
    as seen in the host's network namespace; Windows: each TCP setting template's
    ``CongestionProvider``); '' when unknown."""
    socket_buffers: dict[str, str] = field(default_factory=dict)
    """Socket buffer limits by sysctl name (``net.core.rmem_max``, ``net.core.wmem_max``,
    ``net.ipv4.tcp_rmem``, ``net.ipv4.tcp_wmem``; Windows: ``autotuning``, the
    receive window auto-tuning level of each template); empty when unknown."""
    cpu_governor: str = ""
    """The CPU frequency governor (cpufreq ``scaling_governor``, the distinct values
    over the CPUs, comma-separated; Windows: the active power plan); '' where there is
    no cpufreq (many virtual machines)."""
    link_interface: str = ""
    """The interface that carries the lab's traffic to the other end (it names the
    lab instance, so it is no part of a fingerprint); '' when not asked or unknown."""
    link_offloads: dict[str, str] = field(default_factory=dict)
    """That interface's offloads by ethtool's feature name (`OFFLOAD_FEATURES`):
    ``on`` or ``off``; empty when unknown (no ethtool on the host, no lab link)."""


# Each tool: the command that prints its version, and how to pick the version out.
TOOL_VERSIONS: dict[str, tuple[str, str]] = {
    "wireguard-go": ("wireguard-go --version", r"wireguard-go v?(\S+)"),
    "wg": ("wg --version", r"wireguard-tools v?(\S+)"),
    "iperf3": ("iperf3 --version", r"iperf (\S+)"),
    "iproute2": ("ip -V", r"iproute2-(\S+?),?\s"),
    "python3": ("python3 --version", r"Python (\S+)"),
}

_SCRIPT_HEAD = r"""
echo "@hostname"; uname -n
echo "@kernel"; uname -r
echo "@arch"; uname -m
echo "@os"; cat /etc/os-release 2>/dev/null
echo "@cpuinfo"; grep -m1 -E '^(model name|Hardware|cpu model)' /proc/cpuinfo 2>/dev/null
echo "@cores"; nproc 2>/dev/null
echo "@meminfo"; grep -m1 MemTotal /proc/meminfo 2>/dev/null
echo "@virt"; systemd-detect-virt --vm 2>/dev/null
echo "@container"; systemd-detect-virt --container 2>/dev/null
echo "@dmi_vendor"; cat /sys/class/dmi/id/sys_vendor 2>/dev/null
echo "@dmi_product"; cat /sys/class/dmi/id/product_name 2>/dev/null
echo "@hypervisor"; grep -m1 -ow hypervisor /proc/cpuinfo 2>/dev/null
echo "@tcp_congestion_control"; cat /proc/sys/net/ipv4/tcp_congestion_control 2>/dev/null
echo "@net.core.rmem_max"; cat /proc/sys/net/core/rmem_max 2>/dev/null
echo "@net.core.wmem_max"; cat /proc/sys/net/core/wmem_max 2>/dev/null
echo "@net.ipv4.tcp_rmem"; cat /proc/sys/net/ipv4/tcp_rmem 2>/dev/null
echo "@net.ipv4.tcp_wmem"; cat /proc/sys/net/ipv4/tcp_wmem 2>/dev/null
echo "@cpufreq_governor"; cat /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor 2>/dev/null | sort -u
"""

SOCKET_BUFFERS = ("net.core.rmem_max", "net.core.wmem_max", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem")
"""The socket buffer limits the facts script reads (each a section of its own)."""

OFFLOAD_FEATURES = (
    "rx-checksumming",
    "tx-checksumming",
    "scatter-gather",
    "tcp-segmentation-offload",
    "generic-segmentation-offload",
    "generic-receive-offload",
    "large-receive-offload",
    "tx-udp-segmentation",
    "rx-udp-gro-forwarding",
)
"""The offloads recorded for the lab link, by ethtool's name (``ethtool -k``): the
segmentation and receive offloads TCP through a tunnel and the UDP under it use."""


def facts_script() -> str:
    """The shell script whose output `parse_facts` reads."""
    tools = "".join(
        f'echo "@tool {name}"; {cmd} 2>&1 | head -n 3\n' for name, (cmd, _) in TOOL_VERSIONS.items()
    )
    return _SCRIPT_HEAD + tools


def sections(text: str) -> dict[str, str]:
    """The ``@name`` sections of a probe script's output, each stripped (the facts and
    link scripts here, the host checks' `harness.lab.hostcheck.core.posix_script`)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@"):
            current = sections.setdefault(line[1:].strip(), [])
        elif current is not None:
            current.append(line)
    return {k: "\n".join(v).strip() for k, v in sections.items()}


def _words(text: str) -> str:
    """Whitespace (tcp_rmem's tabs) as single spaces."""
    return " ".join(text.split())


def parse_tool_version(name: str, output: str) -> str:
    """The version of tool ``name`` from what its version command printed, '' if absent."""
    pattern = TOOL_VERSIONS[name][1]
    match = re.search(pattern, output)
    return match.group(1) if match else ""


def parse_facts(text: str) -> HostFacts:
    """Turn the output of `facts_script` into `HostFacts`."""
    s = sections(text)
    os_name = ""
    for line in s.get("os", "").splitlines():
        if line.startswith("PRETTY_NAME="):
            os_name = line.split("=", 1)[1].strip().strip('"')
    cpu = s.get("cpuinfo", "")
    cpu_model = cpu.split(":", 1)[1].strip() if ":" in cpu else cpu
    mem = re.search(r"(\d+)\s*kB", s.get("meminfo", ""))
    cores = s.get("cores", "")
    tools = {name: parse_tool_version(name, s.get(f"tool {name}", "")) for name in TOOL_VERSIONS}
    virtualization = virt.classify(
        detect_virt=s.get("virt", ""),
        vendor=s.get("dmi_vendor", ""),
        product=s.get("dmi_product", ""),
        hypervisor_flag=s.get("hypervisor", "") == "hypervisor",
    )
    container = s.get("container", "")
    extra = {"container": container} if container and container != "none" else {}
    buffers = {name: _words(s[name]) for name in SOCKET_BUFFERS if s.get(name, "").strip()}
    return HostFacts(
        hostname=s.get("hostname", ""),
        kernel=s.get("kernel", ""),
        os=os_name,
        cpu_model=cpu_model,
        cores=int(cores) if cores.isdigit() else 0,
        memory_bytes=int(mem.group(1)) * 1024 if mem else 0,
        arch=s.get("arch", ""),
        tools=tools,
        extra=extra,
        virtualization=virtualization,
        tcp_congestion_control=_words(s.get("tcp_congestion_control", "")),
        socket_buffers=buffers,
        cpu_governor=",".join(s.get("cpufreq_governor", "").split()),
    )


def link_script(address: str) -> str:
    """A shell script printing the interface a packet to ``address`` leaves by and,
    if ethtool is there, its offloads (``ethtool -k``): what `parse_link` reads."""
    quoted = shlex.quote(address)
    return (
        f"dev=$(ip route get {quoted} 2>/dev/null | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p' | head -n 1)\n"
        'echo "@interface"; echo "$dev"\n'
        'echo "@offloads"; [ -n "$dev" ] && ethtool -k "$dev" 2>/dev/null\n'
        "exit 0\n"
    )


def parse_offloads(text: str) -> dict[str, str]:
    """The `OFFLOAD_FEATURES` from ``ethtool -k`` output: ``on`` or ``off`` each
    (`` [fixed]`` and `` [requested on]`` dropped); those not printed are left out."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition(":")
        if sep and name in OFFLOAD_FEATURES and value.split():
            found[name] = value.split()[0]
    return {name: found[name] for name in OFFLOAD_FEATURES if name in found}


def parse_link(text: str) -> tuple[str, dict[str, str]]:
    """(interface, offloads) from what `link_script` printed; ('', {}) when unknown."""
    s = sections(text)
    return s.get("interface", "").strip(), parse_offloads(s.get("offloads", ""))
