"""Lab files: TOML validated into frozen dataclasses.

A lab names its hosts, the links between them, one WireGuard tunnel between
two hosts, and the suites to run. Every mistake is a `LabError` naming the
file, the dotted field and the reason; nothing else escapes `load_lab`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from harness.errors import LabError, UsageError
from harness.impl import FIXED_MTU, WINDOWS_DRIVERS, ImplName, program_argv
from harness.keys import REDACTED, decode_key
from harness.parsers.iperf import BITRATE
from harness.targets.base import HostKind
from harness.targets.factory import TargetSpec
from harness.validate import Fields, parse_toml, read_text

if TYPE_CHECKING:
    from harness.targets.ssh.spec import SshSpec

IPInterface = IPv4Interface | IPv6Interface
IPAddress = IPv4Address | IPv6Address

KNOWN_IMPLS = tuple(ImplName)
KNOWN_SUITES = ("throughput", "handshake", "conformance")
HOST_NAME = r"[a-z][a-z0-9-]{0,15}"
LAB_NAME = r"[a-z][a-z0-9-]{0,31}"
FLOW_NAME = r"[a-z0-9][a-z0-9_.-]{0,31}"
MAX_SECONDS = 3600
"""The longest duration of one measurement or step (an hour); every duration is bounded."""
MAX_TIMEOUT = 300.0
"""The longest a lab waits for a handshake or a connection."""
MAX_REPEAT = 1000
DEFAULT_LINK_MTU = 1500
"""A link's MTU when the lab sets none (a veth pair's, a tap's)."""
WIREGUARD_OVERHEAD = {4: 60, 6: 80}
"""Bytes WireGuard adds to a tunnel packet by the outer IP version: 32 (its header and
tag) + UDP's 8 + IPv4's 20 or IPv6's 40."""
ETHERNET_HEADER = 14


def link_frame_bytes(inner_bytes: int, outer_ip: int = 4) -> int:
    """The bytes of the Ethernet frame that carries one tunnel packet of ``inner_bytes`` on a
    lab link: what tbf on the link counts (at MTU 1420 over IPv4, 1494)."""
    return inner_bytes + WIREGUARD_OVERHEAD[outer_ip] + ETHERNET_HEADER


@dataclass(frozen=True)
class SshHostSpec:
    """How to reach a remote host (kinds ``ssh`` and ``windows``: `HostKind.remote`)."""

    url: str
    """``ssh://user@host:port``."""
    key: str | None = None
    """Private key file of the user (never read by the lab loader, never logged)."""
    jump: str | None = None
    """``ssh://user@host:port`` of a jump host, reached with the same key."""
    host_key_policy: str = "strict"
    """``strict``: the host key must be in known_hosts; ``accept-new``: an unknown one is added
    (OpenSSH's accept-new); a changed key is always refused."""
    known_hosts: str | None = None
    connect_timeout: float = 10.0
    iperf3: str | None = None
    """Path of iperf3 on the host (Windows: e.g. ``C:\\iperf3\\iperf3.exe``); default: on its PATH."""
    sudo: bool = False
    """An ``ssh`` host logged in to as a user with passwordless sudo: every command through ``sudo -n``."""

    def ssh_spec(self) -> SshSpec:
        """The targets layer's `SshSpec` for this entry (paths expanded; the jump host
        reached with the same key and policy)."""
        from harness.targets.ssh.spec import SshSpec  # here: paramiko loads only for a lab with SSH hosts

        def expand(path: str | None) -> str | None:
            return os.path.expanduser(path) if path else None

        options: dict[str, Any] = {
            "sudo": self.sudo,
            "key_file": expand(self.key),
            "host_key_policy": self.host_key_policy,
            "connect_timeout": self.connect_timeout,
        }
        if self.known_hosts:
            options["known_hosts"] = expand(self.known_hosts)
        jump = SshSpec.parse(self.jump, **{**options, "sudo": False}) if self.jump else None
        return SshSpec.parse(self.url, jump=jump, **options)


@dataclass(frozen=True)
class VmHostSpec:
    """A guest the harness boots (``target = "vm"``): Debian with kernel WireGuard."""

    memory_mb: int = 1024
    cpus: int = 2
    accel: str = "auto"
    """``auto`` (KVM when it works, else software emulation), ``kvm`` or ``tcg``."""
    cpu: str | None = None
    """QEMU's ``-cpu`` model; default: qemu64 under TCG, host under KVM (docs/vm.md)."""
    suite: str = "bookworm"
    """The Debian release the guest image is built from."""
    packages: tuple[str, ...] = ()
    """Debian packages added to the image's recipe (each recipe is its own cached image)."""

    def target_spec(
        self, name: str, *, namespace: str, tap: str, address: str, mtu: int | None
    ) -> TargetSpec:
        """What `harness.targets.make` boots for this guest: its NIC a tap ``tap`` in
        ``namespace`` (the other end's host), the guest's address ``address``."""
        from harness.targets.vm.image import DEFAULT_PACKAGES, Recipe
        from harness.targets.vm.qemu import LabNic, VmSpec

        nic = LabNic(namespace, tap, (address,), mtu=mtu)
        vm = VmSpec(
            name, memory_mb=self.memory_mb, cpus=self.cpus, accel=self.accel, cpu_model=self.cpu, lab=nic
        )
        recipe = Recipe(suite=self.suite, packages=(*DEFAULT_PACKAGES, *self.packages))
        return TargetSpec(name, HostKind.VM, vm=vm, recipe=recipe)


@dataclass(frozen=True)
class HostSpec:
    name: str
    kind: HostKind
    """The lab file's ``target``."""
    ssh: SshHostSpec | None = None
    vm: VmHostSpec | None = None

    def target_spec(self, namespace: str) -> TargetSpec:
        """What `harness.targets.make` needs for this host (not a vm: its spec depends on
        its link, `VmHostSpec.target_spec`); ``namespace`` is the one a netns host gets."""
        if self.kind is HostKind.NETNS:
            return TargetSpec(self.name, self.kind, namespace=namespace)
        if self.ssh is not None:
            tools = {"iperf3": self.ssh.iperf3} if self.ssh.iperf3 else {}
            return TargetSpec(self.name, self.kind, ssh=self.ssh.ssh_spec(), tools=tools)
        return TargetSpec(self.name, self.kind)


@dataclass(frozen=True)
class LinkSpec:
    index: int
    a: str
    b: str
    a_address: IPInterface
    b_address: IPInterface
    rate: str | None = None
    rate_bps: int | None = None
    mtu: int | None = None


@dataclass(frozen=True)
class TunnelEnd:
    host: str
    impl: ImplName
    address: IPInterface
    listen_port: int
    private_key: str | None = field(default=None, repr=False)
    build: str | None = None
    endpoint: IPAddress | None = None
    """Underlay address the other end sends to; derived from the shared link if not given."""
    program: str | None = None
    """The implementation's program (e.g. a wireguard-go build); None: the driver's default."""


@dataclass(frozen=True)
class VariantSpec:
    """One side of an interleaved comparison inside a run: the tunnel ends on
    ``hosts`` run ``impl``/``program`` and their measurements carry ``build``."""

    name: str
    build: str
    hosts: tuple[str, ...]
    impl: ImplName | None = None
    program: str | None = None


@dataclass(frozen=True)
class TunnelSpec:
    mtu: int
    ends: tuple[TunnelEnd, TunnelEnd]
    persistent_keepalive: int | None = None
    preshared_key: bool = False
    handshake_timeout: float = 10.0


@dataclass(frozen=True)
class FlowSpec:
    """One iperf3 flow of the throughput suite."""

    name: str
    protocol: str = "tcp"
    streams: int = 1
    reverse: bool = False
    bidir: bool = False
    bitrate: str | None = None
    length: int | None = None


@dataclass(frozen=True)
class ThroughputParams:
    duration: int = 10
    omit: int = 1
    repeat: int = 1
    port: int = 5201
    client: str = ""
    flows: tuple[FlowSpec, ...] = ()


@dataclass(frozen=True)
class HandshakeParams:
    """The handshake suite: the prober runs on the other tunnel end's host and
    speaks WireGuard to the end under test (``dut``) over the lab's link."""

    dut: str = ""
    """Host of the tunnel end under test."""
    repeat: int = 1
    latency_count: int = 200
    """Handshakes timed for the latency distribution."""
    rate_peers: int = 1000
    """Prober identities configured on the device under test for the responder rate."""
    rate_duration: float = 3.0
    rate_outstanding: int = 32
    load_rates: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
    """Initiations a second, step by step, looking for the first cookie reply."""
    load_step: float = 1.0
    flood_rate: int = 1000
    """Initiations a second sent during the data-path measurement."""
    flood_duration: int = 5
    """Seconds of iperf3, with and without the flood."""
    port: int = 5201
    """iperf3's port."""


@dataclass(frozen=True)
class ConformanceParams:
    """The conformance suite: raw probes from the other tunnel end's host against
    ``dut``, and probes through the tunnel itself."""

    dut: str = ""
    keepalive_interval: int = 2
    """Persistent keepalive set on the device under test for the keepalive probe (seconds)."""
    pings: int = 5
    ping_size: int = 100
    """ICMP payload bytes of the exact-counters probe."""
    repeat: int = 1
    slow: bool = False
    """Also run the probes that need real protocol time (the rekeys at 120 s and 165 s)."""


SuiteParams = ThroughputParams | HandshakeParams | ConformanceParams


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    params: SuiteParams


@dataclass(frozen=True)
class Lab:
    path: str
    name: str
    description: str
    text: str = field(repr=False)
    sha256: str
    hosts: dict[str, HostSpec]
    links: tuple[LinkSpec, ...]
    tunnel: TunnelSpec
    suites: tuple[SuiteSpec, ...]
    variants: tuple[VariantSpec, ...] = ()

    def variant(self, name: str) -> VariantSpec:
        return next(v for v in self.variants if v.name == name)

    def tunnel_for(self, variant: str | None) -> TunnelSpec:
        """The tunnel with a variant's implementation, program and build applied."""
        if variant is None:
            return self.tunnel
        v = self.variant(variant)
        ends = tuple(
            replace(e, impl=v.impl or e.impl, program=v.program or e.program, build=v.build)
            if e.host in v.hosts
            else e
            for e in self.tunnel.ends
        )
        return replace(self.tunnel, ends=(ends[0], ends[1]))

    def suite(self, name: str | None) -> SuiteSpec | None:
        return next((s for s in self.suites if s.name == name), None)

    def end_for(self, host: str) -> TunnelEnd:
        for end in self.tunnel.ends:
            if end.host == host:
                return end
        raise KeyError(host)

    def link_between(self, a: str, b: str) -> LinkSpec | None:
        return next((lk for lk in self.links if {lk.a, lk.b} == {a, b}), None)

    def with_overrides(
        self,
        *,
        duration: int | None = None,
        repeat: int | None = None,
        suites: Sequence[str] | None = None,
    ) -> Lab:
        """A copy with command-line overrides applied (UsageError naming the option), in
        the bounds a lab file's own values have."""
        if duration is not None and not 1 <= duration <= MAX_SECONDS:
            raise UsageError(f"--duration: must be from 1 to {MAX_SECONDS} seconds, got {duration}")
        if repeat is not None and not 1 <= repeat <= MAX_REPEAT:
            raise UsageError(f"--repeat: must be from 1 to {MAX_REPEAT}, got {repeat}")
        chosen = self.suites
        if suites:
            names = [s.name for s in self.suites]
            for name in suites:
                if name not in names:
                    raise UsageError(
                        f"--suite: {name!r} is not a suite of {self.path} (it has: {', '.join(names)})"
                    )
            chosen = tuple(s for s in self.suites if s.name in suites)
        out = []
        for s in chosen:
            params = s.params
            if duration is not None and isinstance(params, ThroughputParams):
                params = replace(params, duration=duration)
            if repeat is not None:
                params = replace(params, repeat=repeat)
            out.append(replace(s, params=params))
        return replace(self, suites=tuple(out))


# -- parsing -----------------------------------------------------------------

_RATE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(bit|kbit|mbit|gbit|[kKmMgG])?")
_RATE_FACTOR = {None: 1, "bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9}


def parse_rate(text: str) -> int:
    """A tbf rate in bits/s: ``"500mbit"``, ``"1gbit"``, ``"100M"``, ``"64000"``."""
    match = _RATE.fullmatch(text.strip())
    if not match:
        raise ValueError("")
    unit = match.group(2)
    factor = _RATE_FACTOR.get(unit) or {"k": 10**3, "m": 10**6, "g": 10**9}[unit.lower()]
    bps = int(float(match.group(1)) * factor)
    if bps <= 0:
        raise ValueError("must be more than 0")
    return bps


def _private_key(text: str) -> str | None:
    """A base64 key; `REDACTED` (as a stored or bundled lab has it): none, one is made."""
    if text.strip() == REDACTED:
        return None
    decode_key(text)  # its ValueError never contains the key
    return text.strip()


def _hosts(f: Fields) -> dict[str, HostSpec]:
    table = f.table_of("hosts")
    hosts: dict[str, HostSpec] = {}
    if not table:
        raise f.error("hosts", "at least two hosts are needed")
    for name, body in table.items():
        if not re.fullmatch(HOST_NAME, name):
            raise LabError(f.file, f"hosts.{name}", "host names are lower-case letters, digits and '-', "
                           "starting with a letter, at most 16 characters")  # fmt: skip
        h = Fields(f.file, f"hosts.{name}", body)
        kind: HostKind = h.member("target", HostKind)
        if kind is HostKind.LOCAL and any(other.kind is HostKind.LOCAL for other in hosts.values()):
            raise h.error("target", "only one host can be this machine itself (local)")
        ssh = _ssh_host(h, kind) if kind.remote else None
        vm = (
            VmHostSpec(
                memory_mb=h.integer("memory_mb", 1024, 256, 65536),
                cpus=h.integer("cpus", 2, 1, 64),
                accel=h.choice("accel", ("auto", "kvm", "tcg"), "auto"),
                cpu=h.text("cpu", None),
                suite=h.text(
                    "suite", "bookworm", pattern=r"[a-z][a-z0-9-]{1,31}", hint="a Debian release name"
                ),
                packages=tuple(_debian_packages(h)),
            )
            if kind is HostKind.VM
            else None
        )
        h.done()
        hosts[name] = HostSpec(name, kind, ssh, vm)
    return hosts


def _debian_packages(h: Fields) -> list[str]:
    names: list[str] = h.value_list("packages", [])
    for name in names:
        if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", name):
            raise h.error("packages", f"{name!r} is not a Debian package name")
    return names


def _ssh_url(value: str) -> str:
    parsed = urlsplit(value)
    if parsed.scheme != "ssh" or not parsed.hostname or not parsed.username or parsed.path not in ("", "/"):
        raise ValueError("expected ssh://user@host or ssh://user@host:port")
    if parsed.query not in ("", "sudo=true", "sudo=false"):
        raise ValueError("the only query is ?sudo=true (or ?sudo=false)")
    if parsed.password is not None:  # never echoed
        raise ValueError("no password in the URL: the key file authenticates")
    _ = parsed.port  # raises ValueError for a bad port
    return value


def _ssh_host(h: Fields, kind: HostKind) -> SshHostSpec:
    from harness.targets.ssh.spec import (
        HOST_KEY_POLICIES,  # here: paramiko loads only for a lab with SSH hosts
    )

    hint = "must be ssh://user@host or ssh://user@host:port"
    url = h.parsed("url", _ssh_url, hint)
    jump = h.parsed("jump", _ssh_url, hint, None)
    if jump is not None and "?" in jump:
        raise h.error("jump", "a jump host only forwards: no ?sudo")
    sudo = h.flag("sudo", False) or url.endswith("?sudo=true")
    if sudo and kind is HostKind.WINDOWS:
        raise h.error("sudo", "a Windows host has no sudo: log in as a member of Administrators")
    return SshHostSpec(
        url=url,
        key=h.text("key", None),
        jump=jump,
        host_key_policy=h.choice("host_key_policy", HOST_KEY_POLICIES, "strict"),
        known_hosts=h.text("known_hosts", None),
        connect_timeout=float(h.number("connect_timeout", 10.0, lo_exclusive=0, hi=MAX_TIMEOUT)),
        iperf3=h.text("iperf3", None),
        sudo=sudo,
    )


def _host_ref(f: Fields, key: str, hosts: dict[str, HostSpec], default: Any = None) -> str:
    name = f.text(key) if default is None else f.text(key, default)
    if name not in hosts:
        raise f.error(key, f"host {name!r} is not defined in [hosts]")
    return name


def _links(f: Fields, hosts: dict[str, HostSpec]) -> tuple[LinkSpec, ...]:
    links: list[LinkSpec] = []
    for i, body in enumerate(f.list_of_tables("links", [])):
        lf = Fields(f.file, f"links[{i}]", body)
        a = _host_ref(lf, "a", hosts)
        b = _host_ref(lf, "b", hosts)
        if a == b:
            raise lf.error("b", "a link joins two different hosts")
        netns, vm = HostKind.NETNS, HostKind.VM
        kinds = (hosts[a].kind, hosts[b].kind)
        if kinds not in ((netns, netns), (netns, vm), (vm, netns)):
            side, name = ("a", a) if kinds[0] not in (netns, vm) or kinds == (vm, vm) else ("b", b)
            raise lf.error(
                side,
                f"links join two netns hosts, or a netns host and a vm (its NIC); {name} is {hosts[name].kind}",
            )
        addr_a = _unicast(lf, "a_address", "must be an address with a prefix, e.g. 198.18.0.1/24")
        addr_b = _unicast(lf, "b_address", "must be an address with a prefix, e.g. 198.18.0.2/24")
        if addr_a.version != addr_b.version or addr_a.network != addr_b.network:
            raise lf.error("b_address", f"must be in the same network as a_address ({addr_a.network})")
        if addr_a.ip == addr_b.ip:
            raise lf.error("b_address", "must differ from a_address")
        rate = lf.text("rate", None)
        rate_bps = lf.parsed("rate", parse_rate, "must be a rate such as 500mbit, 1gbit or 100M", None)
        mtu = lf.integer("mtu", None, 576, 65535)
        lf.done()
        for other in links:
            if {other.a, other.b} == {a, b}:
                raise lf.error("b", f"hosts {a} and {b} are already linked by links[{other.index}]")
            if other.a_address.network.overlaps(addr_a.network):
                raise lf.error("a_address", f"network {addr_a.network} overlaps links[{other.index}]")
        links.append(LinkSpec(i, a, b, addr_a, addr_b, rate, rate_bps, mtu))
    for name, spec in hosts.items():
        if spec.kind is HostKind.VM and sum(name in (link.a, link.b) for link in links) != 1:
            raise LabError(f.file, f"hosts.{name}", "a vm is on exactly one link (its NIC), to a netns host")
    return tuple(links)


def _unicast(f: Fields, key: str, hint: str) -> IPInterface:
    """An address with its prefix that a host's interface can have and others reach."""
    address: IPInterface = f.parsed(key, ipaddress.ip_interface, hint)
    problem = _not_unicast(address)
    if problem:
        raise f.error(key, f"{address.ip} is {problem}: an interface here needs a unicast address")
    return address


def _not_unicast(address: IPInterface) -> str | None:
    ip, net = address.ip, address.network
    if ip.is_unspecified or ip.is_loopback or ip.is_multicast:
        return (
            "an unspecified address"
            if ip.is_unspecified
            else f"a {'loopback' if ip.is_loopback else 'multicast'} address"
        )
    if ip == IPv4Address("255.255.255.255"):
        return "the broadcast address"
    if ip.version == 4 and net.prefixlen < 31 and ip in (net.network_address, net.broadcast_address):
        return f"{net}'s own {'network' if ip == net.network_address else 'broadcast'} address"
    return None


def _program(f: Fields, key: str, impls: Sequence[ImplName]) -> str | None:
    """A ``program`` run as ``impls`` run it (`harness.impl.program_argv`)."""
    program: str | None = f.text(key, None)
    for impl in impls:
        if program is not None:
            try:
                program_argv(impl, program)
            except ValueError as exc:
                raise f.error(key, f"cannot be run as {impl}'s program: {exc}") from None
    return program


def _fits_link(f: Fields, mtu: int, ends: Sequence[TunnelEnd], link: LinkSpec) -> None:
    """The tunnel's packets, with WireGuard's overhead, fit the link its ends share
    (else they are dropped: the run hangs as an MTU black hole does)."""
    version = max(e.endpoint.version if e.endpoint else link.a_address.version for e in ends)
    overhead = WIREGUARD_OVERHEAD[version]
    over = f"WireGuard's overhead over IPv{version} ({overhead} bytes)"
    if link.mtu is not None and mtu + overhead > link.mtu:
        raise LabError(f.file, f"links[{link.index}].mtu",
                       f"{link.mtu} is below the tunnel's MTU {mtu} plus {over}: at least {mtu + overhead}")  # fmt: skip
    if link.mtu is None and mtu + overhead > DEFAULT_LINK_MTU:
        raise LabError(f.file, "tunnel.mtu",
                       f"{mtu} plus {over} exceeds links[{link.index}] (MTU {DEFAULT_LINK_MTU}, the default): "
                       f"at most {DEFAULT_LINK_MTU - overhead}, or set links[{link.index}].mtu")  # fmt: skip


def _tunnel(f: Fields, hosts: dict[str, HostSpec], links: tuple[LinkSpec, ...]) -> TunnelSpec:
    t = Fields(f.file, "tunnel", f.table_of("tunnel"))
    mtu = t.integer("mtu", 1420, 576, 65535)
    keepalive = t.integer("persistent_keepalive", None, 1, 65535)
    psk = t.flag("preshared_key", False)
    timeout = t.number("handshake_timeout", 10.0, lo_exclusive=0, hi=MAX_TIMEOUT)
    bodies = t.list_of_tables("ends")
    if len(bodies) != 2:
        raise t.error("ends", f"a tunnel has exactly two ends, got {len(bodies)} "
                      "(multi-peer tunnels are not supported yet)")  # fmt: skip
    ends: list[TunnelEnd] = []
    for i, body in enumerate(bodies):
        e = Fields(f.file, f"tunnel.ends[{i}]", body)
        host = _host_ref(e, "host", hosts)
        if any(end.host == host for end in ends):
            raise e.error("host", "the two ends of a tunnel are on different hosts")
        impl: ImplName = e.member("impl", ImplName)
        on_windows = hosts[host].kind is HostKind.WINDOWS
        if on_windows != impl.windows:
            where = "a Windows host" if on_windows else f"a {hosts[host].kind} host"
            fits = (
                ", ".join(WINDOWS_DRIVERS) if on_windows else ", ".join(i for i in ImplName if not i.windows)
            )
            raise e.error("impl", f"{impl} does not run on {where} ({host}); use {fits}")
        address = _unicast(e, "address", "must be an address with a prefix, e.g. 198.19.0.1/24")
        port = e.integer("listen_port", 51820 + i, 1, 65535)
        key = e.parsed("private_key", _private_key, "must be a base64 WireGuard key (32 bytes)", None)
        build = e.text("build", None)
        program = _program(e, "program", [impl])
        endpoint = e.parsed("endpoint", ipaddress.ip_address, "must be an IP address", None)
        e.done()
        if address.version == 6 and mtu < 1280:
            raise t.error("mtu", "IPv6 inside the tunnel needs an MTU of at least 1280")
        if FIXED_MTU.get(impl, mtu) != mtu:
            raise t.error("mtu", f"{impl} runs at MTU {FIXED_MTU[impl]} only (tunnel.ends[{i}]), not {mtu}")
        for link in links:
            if link.a_address.network.overlaps(address.network):
                raise e.error("address", f"network {address.network} overlaps links[{link.index}]")
        ends.append(TunnelEnd(host, impl, address, port, key, build, endpoint, program))
    t.done()
    a, b = ends
    where = "tunnel.ends[1].address"
    if a.address.version != b.address.version or a.address.network != b.address.network:
        raise LabError(f.file, where, f"must be in the same network as ends[0] ({a.address.network})")
    if a.address.ip == b.address.ip:
        raise LabError(f.file, where, "must differ from ends[0].address")
    shared = next((lk for lk in links if {lk.a, lk.b} == {a.host, b.host}), None)
    derived = []
    for i, end in enumerate(ends):
        if end.endpoint is None:
            if shared is None:
                raise LabError(f.file, f"tunnel.ends[{i}].endpoint",
                               f"no link joins {a.host} and {b.host}: give the endpoint")  # fmt: skip
            ip = shared.a_address.ip if shared.a == end.host else shared.b_address.ip
            end = replace(end, endpoint=ip)
        derived.append(end)
    if shared is not None:
        _fits_link(f, mtu, derived, shared)
    return TunnelSpec(mtu, (derived[0], derived[1]), keepalive, psk, timeout)


def _variants(f: Fields, tunnel: TunnelSpec, host_specs: dict[str, HostSpec]) -> tuple[VariantSpec, ...]:
    bodies = f.list_of_tables("variants", [])
    if len(bodies) == 1:
        raise f.error("variants", "interleaving needs at least two variants")
    hosts = tuple(e.host for e in tunnel.ends)
    variants: list[VariantSpec] = []
    for i, body in enumerate(bodies):
        v = Fields(f.file, f"variants[{i}]", body)
        name = v.text(
            "name", pattern=FLOW_NAME, hint="lower-case letters, digits, '.', '_' or '-', at most 32"
        )
        build = v.text("build")
        on = v.value_list("hosts", list(hosts))
        for h in on:
            if h not in hosts:
                raise v.error("hosts", f"{h!r} is not a tunnel end's host ({' or '.join(hosts)})")
        impl: ImplName | None = v.member("impl", ImplName, None)
        for h in on:
            if impl is not None and (host_specs[h].kind is HostKind.WINDOWS) != impl.windows:
                raise v.error("impl", f"{impl} does not run on {h} ({host_specs[h].kind})")
        if impl is not None and FIXED_MTU.get(impl, tunnel.mtu) != tunnel.mtu:
            raise v.error("impl", f"{impl} runs at MTU {FIXED_MTU[impl]} only, not the tunnel's {tunnel.mtu}")
        program = _program(v, "program", [impl or e.impl for e in tunnel.ends if e.host in on])
        v.done()
        for other in variants:
            if other.name == name:
                raise v.error("name", f"variant name {name!r} is used twice")
            if other.build == build:
                raise v.error("build", f"build {build!r} is already variant {other.name!r}")
        variants.append(VariantSpec(name, build, tuple(on), impl, program))
    return tuple(variants)


def _flow(f: Fields, i: int, body: Any, path: str) -> FlowSpec:
    ff = Fields(f.file, f"{path}.flows[{i}]", body)
    name = ff.text("name", pattern=FLOW_NAME, hint="lower-case letters, digits, '.', '_' or '-', at most 32")
    protocol = ff.choice("protocol", ("tcp", "udp"), "tcp")
    streams = ff.integer("streams", 1, 1, 128)
    reverse = ff.flag("reverse", False)
    bidir = ff.flag("bidir", False)
    bitrate = ff.text("bitrate", None, pattern=BITRATE.pattern, hint="must be a rate such as 500M or 1G")
    length = ff.integer("length", None, 1, 1048576)
    ff.done()
    if reverse and bidir:
        raise ff.error("bidir", "a flow cannot be both reverse and bidirectional")
    if protocol == "udp" and bitrate is None:
        raise ff.error("bitrate", "required for UDP flows (iperf3 would send 1 Mbit/s)")
    return FlowSpec(name, protocol, streams, reverse, bidir, bitrate, length)


def _suites(f: Fields, tunnel: TunnelSpec, required: bool = True) -> tuple[SuiteSpec, ...]:
    if not required and not f.has("suites"):
        return ()
    table = f.table_of("suites")
    if not table:
        raise f.error("suites", "at least one suite is needed")
    suites = []
    for name, body in table.items():
        path = f"suites.{name}"
        if name not in KNOWN_SUITES:
            raise LabError(f.file, path, f"unknown suite (known: {', '.join(KNOWN_SUITES)})")
        s = Fields(f.file, path, body)
        if name == "handshake":
            suites.append(SuiteSpec(name, _handshake_params(s, tunnel)))
            continue
        if name == "conformance":
            suites.append(SuiteSpec(name, _conformance_params(s, tunnel)))
            continue
        hosts = tuple(e.host for e in tunnel.ends)
        client = s.text("client", hosts[0])
        if client not in hosts:
            raise s.error("client", f"must be a tunnel end's host ({' or '.join(hosts)}), got {client!r}")
        flows = tuple(
            _flow(f, i, b, path) for i, b in enumerate(s.list_of_tables("flows", [{"name": "tcp-1"}]))
        )
        if not flows:
            raise s.error("flows", "at least one flow is needed")
        seen: set[str] = set()
        for i, flow in enumerate(flows):
            if flow.name in seen:
                raise LabError(f.file, f"{path}.flows[{i}].name", f"flow name {flow.name!r} is used twice")
            seen.add(flow.name)
        params = ThroughputParams(
            duration=s.integer("duration", 10, 1, MAX_SECONDS),
            omit=s.integer("omit", 1, 0, 60),
            repeat=s.integer("repeat", 1, 1, MAX_REPEAT),
            port=iperf_port(s, "port", 5201, tunnel),
            client=client,
            flows=flows,
        )
        s.done()
        suites.append(SuiteSpec(name, params))
    return tuple(suites)


def iperf_port(s: Fields, key: str, default: int, tunnel: TunnelSpec, lo: int = 1) -> int:
    """iperf3's port: not a tunnel end's listen port (iperf3 and WireGuard cannot share one)."""
    port: int = s.integer(key, default, lo, 65535)
    for i, end in enumerate(tunnel.ends):
        if end.listen_port == port:
            raise s.error(key, f"{port} is tunnel.ends[{i}].listen_port: iperf3 needs a port of its own")
    return port


def _dut(s: Fields, tunnel: TunnelSpec) -> str:
    hosts = tuple(e.host for e in tunnel.ends)
    dut: str = s.text("dut", hosts[1])
    if dut not in hosts:
        raise s.error("dut", f"must be a tunnel end's host ({' or '.join(hosts)}), got {dut!r}")
    return dut


def _handshake_params(s: Fields, tunnel: TunnelSpec) -> HandshakeParams:
    rates = s.integer_list("load_rates", list(HandshakeParams.load_rates), 1, 100_000)
    params = HandshakeParams(
        dut=_dut(s, tunnel),
        repeat=s.integer("repeat", 1, 1, MAX_REPEAT),
        latency_count=s.integer("latency_count", 200, 1, 100_000),
        rate_peers=s.integer("rate_peers", 1000, 1, 30_000),
        rate_duration=float(s.number("rate_duration", 3.0, lo_exclusive=0, hi=MAX_SECONDS)),
        rate_outstanding=s.integer("rate_outstanding", 32, 1, 10_000),
        load_rates=tuple(rates),
        load_step=float(s.number("load_step", 1.0, lo_exclusive=0, hi=MAX_SECONDS)),
        flood_rate=s.integer("flood_rate", 1000, 1, 100_000),
        flood_duration=s.integer("flood_duration", 5, 1, MAX_SECONDS),
        port=iperf_port(s, "port", 5201, tunnel),
    )
    s.done()
    return params


def _conformance_params(s: Fields, tunnel: TunnelSpec) -> ConformanceParams:
    params = ConformanceParams(
        dut=_dut(s, tunnel),
        keepalive_interval=s.integer("keepalive_interval", 2, 1, 60),
        pings=s.integer("pings", 5, 1, 1000),
        ping_size=s.integer("ping_size", 100, 0, 1392),
        repeat=s.integer("repeat", 1, 1, MAX_REPEAT),
        slow=s.flag("slow", False),
    )
    s.done()
    return params


def parse_lab(text: str, path: str, *, suites: bool = True) -> Lab:
    return lab_from_table(parse_toml(text, path), text, path, suites=suites)


def lab_from_table(data: dict[str, Any], text: str, path: str, *, suites: bool = True) -> Lab:
    """A lab from its parsed TOML (a lab file's, or the lab part of a scenario file).
    ``suites``: the lab must have suites (a scenario's lab needs none)."""
    f = Fields(path, "", data)
    meta = Fields(path, "lab", f.table_of("lab", {}))
    stem = re.sub(r"[^a-z0-9-]", "-", Path(path).stem.lower()) or "lab"
    name = meta.text("name", stem if re.fullmatch(LAB_NAME, stem) else "lab", pattern=LAB_NAME,
                    hint="lower-case letters, digits and '-', starting with a letter, at most 32")  # fmt: skip
    description = meta.text("description", "")
    meta.done()
    hosts = _hosts(f)
    links = _links(f, hosts)
    tunnel = _tunnel(f, hosts, links)
    suite_specs = _suites(f, tunnel, suites)
    variants = _variants(f, tunnel, hosts)
    f.done()
    return Lab(
        path=path,
        name=name,
        description=description,
        text=text,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        hosts=hosts,
        links=links,
        tunnel=tunnel,
        suites=suite_specs,
        variants=variants,
    )


def load_lab(path: str | os.PathLike[str], *, suites: bool = True) -> Lab:
    name = os.fspath(path)
    return parse_lab(read_text(name), name, suites=suites)
