"""What a lab asks of each of its hosts (pure): `HostNeeds`, from the host's
kind, its tunnel end's implementation (every variant's too), the suites, the
links and what the caller adds (a capture, netem).

By kind:

* local, netns: this machine: root (namespaces, links), ``ip``; ``tc`` with tbf
  where a link of the host has a rate; netem where asked.
* ssh: reachable, its host key as the lab's policy wants; root, or sudo without a
  password where the lab says ``sudo = true``.
* vm: this machine: QEMU, an accelerator (KVM, else TCG where the lab allows it),
  the guest image (cached, or built on the first run with debootstrap).
* windows: PowerShell, Administrator, WireGuard for Windows, iperf3.exe at the
  lab's path, the firewall's profile and free disk.

An end of wireguard-go or pyref needs ``/dev/net/tun``; every POSIX end ``wg``;
kernel ends the kernel's WireGuard; pyref on an SSH host Python 3.11 and the
cryptography package; the throughput and handshake suites iperf3.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from harness.impl.base import ImplName
from harness.lab.spec import Lab, ThroughputParams
from harness.targets.base import HostKind

PYTHON_MIN = (3, 11)
"""The oldest Python pyref runs on (`harness.impl.pyref`)."""
IPERF3_BIDIR = (3, 7)
"""iperf3's first release with ``--bidir``."""


@dataclass(frozen=True)
class HostNeeds:
    """Everything a lab needs of one host, as the checks ask for it."""

    host: str
    kind: HostKind
    impls: tuple[ImplName, ...] = ()
    """The implementations its tunnel end runs (one per variant)."""
    programs: tuple[str, ...] = ()
    """Programs the lab names for those implementations (a wireguard-go build)."""
    tools: tuple[str, ...] = ()
    """POSIX tools it runs, by `core.TOOLS` name."""
    tun: bool = False
    netns: bool = False
    tbf: bool = False
    netem: bool = False
    kernel_wireguard: bool = False
    pyref_python: bool = False
    """pyref runs on it with its own python3 (an SSH host)."""
    sudo: bool = False
    iperf3_min: tuple[int, ...] | None = None
    iperf3_path: str = ""
    """Windows: iperf3.exe's path the lab gives ('' when on its PATH)."""
    url: str = ""
    """ssh, windows: where it is reached (``user@host:port``)."""
    host_key_policy: str = ""
    accel: str = ""
    """vm: ``auto``, ``kvm`` or ``tcg``."""
    accel_verdict: str = ""
    """vm: what a boot on this machine already found for this guest (``kvm`` or ``tcg``: QEMU's
    verdict cache, `harness.targets.vm.qemu.cached_verdict`); empty: nothing yet."""
    image: str = ""
    """vm: the cached guest image's folder (it may not exist yet)."""
    nt_program: str = ""
    """Windows: wireguard.exe's path the lab gives for wireguard-nt ('' for the default)."""
    go_windows_program: str = ""
    """Windows: wireguard-go.exe's path the lab gives ('' for the default)."""

    @property
    def windows(self) -> bool:
        return self.kind is HostKind.WINDOWS

    @property
    def on_this_machine(self) -> bool:
        """Checked on the machine the harness runs on (its namespaces, QEMU)."""
        return self.kind in (HostKind.LOCAL, HostKind.NETNS, HostKind.VM)


def lab_needs(
    lab: Lab, *, capture: Collection[str] = (), netem: Collection[str] = (), image_dir: str = ""
) -> dict[str, HostNeeds]:
    """Each host's needs; ``capture``: hosts that capture with tcpdump, ``netem``:
    hosts whose links get netem; ``image_dir``: the guest image cache."""
    impls: dict[str, list[ImplName]] = {}
    programs: dict[str, list[str]] = {}
    windows_programs: dict[tuple[str, ImplName], str] = {}
    for variant in [None, *(v.name for v in lab.variants)]:
        for end in lab.tunnel_for(variant).ends:
            if end.impl not in impls.setdefault(end.host, []):
                impls[end.host].append(end.impl)
            if end.program and end.impl.windows:
                windows_programs.setdefault((end.host, end.impl), end.program)
            elif end.program and end.program not in programs.setdefault(end.host, []):
                programs[end.host].append(end.program)
    iperf = any(s.name in ("throughput", "handshake") for s in lab.suites)
    bidir = any(
        isinstance(s.params, ThroughputParams) and any(f.bidir for f in s.params.flows) for s in lab.suites
    )
    rated = {h for link in lab.links if link.rate_bps for h in (link.a, link.b)}
    out: dict[str, HostNeeds] = {}
    for name, spec in lab.hosts.items():
        mine = tuple(impls.get(name, ()))
        kind = spec.kind
        ends = bool(mine)
        tools: list[str] = []
        if kind is HostKind.VM:
            tools.append("qemu-system-x86_64")  # the guest's own tools come with its image
        elif kind is not HostKind.WINDOWS:
            tools.append("ip")
            if ImplName.WIREGUARD_GO in mine and not programs.get(name):
                tools.append("wireguard-go")
            if ends:
                tools.append("wg")
            if iperf and ends:
                tools.append("iperf3")
            if name in rated or name in netem:
                tools.append("tc")
            if name in capture:
                tools.extend(("tcpdump", "ethtool"))
        vm_image = ""
        if kind is HostKind.VM and spec.vm is not None:
            recipe = spec.vm.target_spec(name, namespace="-", tap="-", address="0.0.0.0/32", mtu=None).recipe
            assert recipe is not None
            vm_image = f"{image_dir.rstrip('/')}/{recipe.digest()}" if image_dir else recipe.digest()
        ssh = spec.ssh
        out[name] = HostNeeds(
            host=name,
            kind=kind,
            impls=mine,
            programs=tuple(programs.get(name, ())),
            tools=tuple(tools),
            tun=any(i in (ImplName.WIREGUARD_GO, ImplName.PYREF) for i in mine) and kind is not HostKind.VM,
            netns=kind is HostKind.NETNS,
            tbf=name in rated and kind is not HostKind.VM,
            netem=name in netem,
            kernel_wireguard=ImplName.KERNEL in mine and kind is not HostKind.VM,
            pyref_python=ImplName.PYREF in mine and kind is HostKind.SSH,
            sudo=bool(ssh and ssh.sudo),
            iperf3_min=IPERF3_BIDIR if bidir and ends else None,
            iperf3_path=(ssh.iperf3 or "") if ssh and kind is HostKind.WINDOWS else "",
            url=_where(ssh.url) if ssh else "",
            host_key_policy=ssh.host_key_policy if ssh else "",
            accel=spec.vm.accel if spec.vm else "",
            image=vm_image,
            nt_program=windows_programs.get((name, ImplName.WIREGUARD_NT), ""),
            go_windows_program=windows_programs.get((name, ImplName.WIREGUARD_GO_WINDOWS), ""),
        )
    return out


def _where(url: str) -> str:
    return url.removeprefix("ssh://").split("?", 1)[0]
