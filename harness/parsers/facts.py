"""Facts about a host, recorded with every run (with what it runs on: bare
metal or a hypervisor, named by `harness.parsers.virt`): the `HostFacts` record, and the
POSIX facts script with the parser of what it prints.

Collection is one command per host (the fixed script here, so an SSH host
costs one round trip: `harness.targets.local.collect_posix_facts` runs it); the
parsing is pure and tested on its own.
"""

from __future__ import annotations

import re
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
"""


def facts_script() -> str:
    """The shell script whose output `parse_facts` reads."""
    tools = "".join(
        f'echo "@tool {name}"; {cmd} 2>&1 | head -n 3\n' for name, (cmd, _) in TOOL_VERSIONS.items()
    )
    return _SCRIPT_HEAD + tools


def _sections(text: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@"):
            current = sections.setdefault(line[1:].strip(), [])
        elif current is not None:
            current.append(line)
    return {k: "\n".join(v).strip() for k, v in sections.items()}


def parse_tool_version(name: str, output: str) -> str:
    """The version of tool ``name`` from what its version command printed, '' if absent."""
    pattern = TOOL_VERSIONS[name][1]
    match = re.search(pattern, output)
    return match.group(1) if match else ""


def parse_facts(text: str) -> HostFacts:
    """Turn the output of `facts_script` into `HostFacts`."""
    s = _sections(text)
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
    )
