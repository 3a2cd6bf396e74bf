"""Bring a lab up from its file, check the tunnel works, and always tear it down.

`LabInstance` owns every resource of one lab: namespaces, links, tunnel
interfaces and processes. Each is registered for removal the moment it exists,
so `down()` removes exactly what was created, after success, failure or Ctrl-C.
Each is also noted in the lab's record on disk (`harness.targets.ledger`),
opened before anything is created and gone once the lab is down, so a lab
whose harness was killed is found and removed later (`harness.run.stale`).
Names carry a per-instance id, so two labs on one machine never collide
(wireguard-go's sockets in /var/run/wireguard are shared by all namespaces).
The id is random, after the prefix WGH_ID_PREFIX gives, if set: whoever sets it
(the tests' `no_leftovers`) knows every namespace, interface and socket name of
the labs started under it, and nothing else's.

Hosts are made by `harness.targets.make` from a `TargetSpec`, which the lab's
host entry makes given this instance's names (`HostSpec.target_spec`; a vm's,
`VmHostSpec.target_spec`, with the tap of its link too).
Given ``dry=`` a `DryRunLog`, every host is made in its recording form, and the
same bring-up and teardown only write their commands down (`harness.run.dryrun`).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import ip_interface
from pathlib import Path

from harness.codec import encode
from harness.errors import InfraError, UsageError
from harness.impl import driver_class
from harness.impl.base import Driver, ImplInfo, ImplName
from harness.impl.config import InterfaceConfig, PeerConfig, format_endpoint
from harness.keys import KeyPair, generate_preshared_key
from harness.lab.spec import Lab, LinkSpec, TunnelEnd
from harness.parsers.facts import HostFacts
from harness.parsers.wgdump import redact_wg_dump
from harness.progress import Progress
from harness.run.cleanup import CleanupStack
from harness.targets import DryRunLog, HostKind, Target, TargetSpec, make
from harness.targets.base import wait_until
from harness.targets.ledger import LABS_DIR, Forget, HostEntry, Ledger
from harness.targets.links import LinkEnd, VethLink, add_rate_limit
from harness.targets.netns import NetnsTarget


@dataclass
class EndRuntime:
    """One end of the tunnel, as brought up."""

    spec: TunnelEnd
    host: Target
    driver: Driver
    keys: KeyPair
    info: ImplInfo | None = None
    config: InterfaceConfig | None = None

    @property
    def inner_ip(self) -> str:
        return str(self.spec.address.ip)


@dataclass
class LabState:
    facts: dict[str, HostFacts] = field(default_factory=dict)
    up_seconds: float = 0.0


ID_PREFIX_VARIABLE = "WGH_ID_PREFIX"
"""Set, every new instance id begins with its value (up to 4 lowercase letters or digits)."""


def new_instance_id() -> str:
    """A new lab instance id: WGH_ID_PREFIX (if set), then 4 random hex digits. At most 8
    characters, so ``wgh{id}l{link}{side}`` stays within a 15-byte interface name."""
    prefix = os.environ.get(ID_PREFIX_VARIABLE, "")
    if not re.fullmatch(r"[a-z0-9]{0,4}", prefix):
        raise UsageError(f"{ID_PREFIX_VARIABLE}={prefix!r}: up to 4 lowercase letters or digits")
    return prefix + secrets.token_hex(2)


class LabInstance:
    def __init__(
        self,
        lab: Lab,
        *,
        progress: Progress | None = None,
        instance_id: str | None = None,
        keylog_dir: str | None = None,
        prepare: Callable[[LabInstance], None] | None = None,
        dry: DryRunLog | None = None,
        run_id: str | None = None,
        records: Path | None = LABS_DIR,
    ):
        self.lab = lab
        self.dry = dry
        """Given, every host only writes its commands to this log (`harness.run.dryrun.plan`)."""
        self.prepare = prepare
        """Called once the hosts and links are up, before the tunnel (a capture, a relay)."""
        self.endpoints: dict[str, str] = {}
        """Host -> the endpoint its end is told for the other end, instead of the lab's."""
        self.id = instance_id or new_instance_id()
        self.progress = progress or Progress(quiet=True)
        self.hosts: dict[str, Target] = {}
        self.ends: list[EndRuntime] = []
        self.state = LabState()
        self.variant: str | None = None
        self._cleanup = CleanupStack()
        # The tunnel has a stack of its own so a variant can replace it while
        # the hosts and links stay up; the main stack unwinds it as one step.
        self._tunnel_cleanup = CleanupStack()
        self._keys: list[KeyPair] = []
        self._earlier_logs: dict[str, bytes] = {}
        self._psk: str | None = None
        self.keylog_dir = keylog_dir
        """Given, every pyref end writes its handshake secrets to {keylog_dir}/{ifname}.keys on its host."""
        self._keylogs: dict[tuple[str, str], Target] = {}
        self.run_id = run_id
        """The stored run the lab belongs to, named in its record."""
        self.records = records if dry is None else None
        """Where the lab's record goes (None: none is kept, as in a dry run)."""
        self.ledger: Ledger | None = None
        """The lab's record (`harness.targets.ledger`), open from the start of `up`."""

    # -- names -------------------------------------------------------------
    def namespace(self, host: str) -> str:
        return f"wgh-{self.id}-{host}"

    def link_ifname(self, index: int, side: str) -> str:
        return f"wgh{self.id}l{index}{side}"

    def link_device(self, index: int, host: str) -> str:
        """The interface ``host`` (a netns host) has on link ``index``: its veth end, or, on a
        vm's link, the guest's tap, which lives in this host's namespace."""
        link = self.lab.links[index]
        vm_side = next((side for side, name in (("a", link.a), ("b", link.b))
                        if self.lab.hosts[name].kind is HostKind.VM), None)  # fmt: skip
        if vm_side is not None:
            return self.link_ifname(index, vm_side)
        return self.link_ifname(index, "a" if link.a == host else "b")

    def tunnel_ifname(self, index: int) -> str:
        return f"wgh{self.id}t{index}"

    # -- life cycle --------------------------------------------------------
    def open_record(self) -> Ledger | None:
        """The lab's record, written now if it is not yet (`up` does it first of all; a caller
        that makes something for the lab before, a folder, opens it earlier to note that)."""
        if self.ledger is None and self.records is not None:
            self.ledger = Ledger.open(self.id, self.lab.name, self.run_id, self.records)
        return self.ledger

    def up(self) -> None:
        """Create everything; on any failure remove what was created and re-raise."""
        t0 = time.monotonic()
        self.open_record()
        try:
            self._make_hosts()
            self._make_links()
            self._link_facts()
            if self.prepare is not None:
                self.prepare(self)
            self._make_tunnel()
            self.verify_tunnel()
        except BaseException:
            self.down()
            raise
        self.state.up_seconds = time.monotonic() - t0
        self.progress.step(f"lab {self.lab.name} [{self.id}] up in {self.state.up_seconds:.2f}s")

    def down(self) -> list[str]:
        """Remove everything this instance created. Returns the errors (one line each)."""
        if not len(self._cleanup):
            if self.ledger is not None:
                self.ledger.close()
            return []
        try:
            errors = self._cleanup.unwind(lambda what: self.progress.step(f"removing {what}"))
        finally:
            if self.ledger is not None:
                self.ledger.close()  # gone once nothing it names is left
        for error in errors:
            self.progress.warn(f"teardown: {error}")
        return errors

    def __enter__(self) -> LabInstance:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # -- steps -------------------------------------------------------------
    def _make_hosts(self) -> None:
        for name, spec in self.lab.hosts.items():
            if spec.kind is HostKind.VM:
                continue  # booted with its link: its NIC is a tap in the other host's namespace
            target = spec.target_spec(self.namespace(name))
            host = make(target, dry=self.dry)
            self._recorded(host, target)
            self.progress.step(f"host {name}: creating {spec.kind} {getattr(host, 'namespace', '')}")
            self._cleanup.push(f"host {name}", host.teardown)
            host.setup()
            self.hosts[name] = host
            self.state.facts[name] = host.facts()

    def _recorded(self, host: Target, target: TargetSpec) -> None:
        """Name ``host`` in the lab's record, and have it note what it creates there."""
        if self.ledger is not None:
            ssh = encode(target.ssh) if target.ssh is not None else None
            self.ledger.add_host(target.name, HostEntry(target.kind, target.namespace, ssh))
            host.ledger = self.ledger

    def _make_links(self) -> None:
        for link in self.lab.links:
            if self.lab.hosts[link.a].kind is HostKind.VM or self.lab.hosts[link.b].kind is HostKind.VM:
                self._make_vm(link)
                continue
            a, b = self.hosts[link.a], self.hosts[link.b]
            if not (isinstance(a, NetnsTarget) and isinstance(b, NetnsTarget)):
                raise InfraError(f"links[{link.index}]: veth links join namespace hosts only")
            veth = VethLink(
                LinkEnd(a, self.link_ifname(link.index, "a"), str(link.a_address)),
                LinkEnd(b, self.link_ifname(link.index, "b"), str(link.b_address)),
                rate_bps=link.rate_bps,
                mtu=link.mtu,
            )
            rate = f", rate {link.rate}" if link.rate else ""
            self.progress.step(f"link {link.a}<->{link.b}: veth {veth.a.ifname}/{veth.b.ifname}{rate}")
            self._cleanup.push(f"link {veth.a.ifname}", veth.teardown)
            veth.setup()

    def _link_facts(self) -> None:
        """Each host's lab-link interface and its offloads, added to its facts: they
        were gathered before the links existed."""
        for name, host in self.hosts.items():
            peer, facts = self._lab_peer(name), self.state.facts.get(name)
            if peer is not None and facts is not None:
                interface, offloads = host.link_facts(peer)
                self.state.facts[name] = replace(facts, link_interface=interface, link_offloads=offloads)

    def _lab_peer(self, host: str) -> str | None:
        """The underlay address ``host`` sends the lab's traffic to: the other tunnel
        end's endpoint for an end, else the far side of the host's first link."""
        ends = self.lab.tunnel.ends
        for index, end in enumerate(ends):
            other = ends[1 - index]
            if end.host == host and other.endpoint is not None:
                return str(other.endpoint)
        for link in self.lab.links:
            if host in (link.a, link.b):
                return str((link.b_address if link.a == host else link.a_address).ip)
        return None

    def _make_vm(self, link: LinkSpec) -> None:
        """Boot the vm on ``link``: its NIC is a tap in the other host's namespace, which
        takes that end's address, so the guest is one more host on the lab's link."""
        vm_side = "a" if self.lab.hosts[link.a].kind is HostKind.VM else "b"
        name, peer = (link.a, link.b) if vm_side == "a" else (link.b, link.a)
        vm_address, peer_address = (
            (link.a_address, link.b_address) if vm_side == "a" else (link.b_address, link.a_address)
        )
        spec = self.lab.hosts[name].vm
        assert spec is not None
        other = self.hosts[peer]
        assert isinstance(other, NetnsTarget)
        tap = self.link_ifname(link.index, vm_side)
        target = spec.target_spec(
            name, namespace=other.namespace, tap=tap, address=str(vm_address), mtu=link.mtu
        )
        assert target.vm is not None and target.vm.lab is not None and target.recipe is not None
        if self.dry is None:
            self.progress.step(
                f"host {name}: guest image {target.recipe.digest()} ({spec.suite}; "
                "built from Debian's packages the first time: minutes)"
            )
        host = make(target, dry=self.dry)
        self._recorded(host, target)
        self.progress.step(
            f"host {name}: booting vm ({spec.memory_mb} MiB, {spec.cpus} CPUs, accel {spec.accel})"
        )
        qdiscs: list[Forget] = []  # they go with the tap and the guest

        def teardown() -> None:
            host.teardown()
            while qdiscs:
                qdiscs.pop()()

        self._cleanup.push(f"vm {name}", teardown)
        host.setup()
        self.hosts[name] = host
        self.state.facts[name] = host.facts()
        self.progress.step(f"link {peer}<->{name}: tap {tap} in {other.namespace}")
        other.check(["ip", "address", "add", str(peer_address), "dev", tap])
        if link.mtu:
            other.check(["ip", "link", "set", "dev", tap, "mtu", str(link.mtu)])
        other.check(["ip", "link", "set", "dev", tap, "up"])
        if link.rate_bps:  # both ways, as on a veth: the tap towards the guest, the guest's NIC back
            self.progress.step(f"link {peer}<->{name}: rate {link.rate} both ways")
            qdiscs.append(add_rate_limit(other, tap, link.rate_bps))
            qdiscs.append(add_rate_limit(host, target.vm.lab.guest_ifname, link.rate_bps))

    def _make_tunnel(self, variant: str | None = None) -> None:
        if variant is None and self.lab.variants:
            variant = self.lab.variants[0].name
        spec = self.lab.tunnel_for(variant)
        self.variant = variant
        if not self._keys:  # the same keys for every variant of the run
            self._keys = [
                KeyPair.from_private(end.private_key) if end.private_key else KeyPair.generate()
                for end in spec.ends
            ]
            self._psk = generate_preshared_key() if spec.preshared_key else None
            self._cleanup.push("tunnel", lambda: self._tunnel_cleanup.unwind(self._step))
        self.ends = []
        for index, end in enumerate(spec.ends):
            host = self.hosts[end.host]
            options = {"program": end.program} if end.program else {}
            if self.keylog_dir is not None and end.impl is ImplName.PYREF:
                options["keylog"] = self._keylog_path(host, self.keylog_dir, self.tunnel_ifname(index))
            driver = driver_class(end.impl)(host, self.tunnel_ifname(index), **options)
            runtime = EndRuntime(end, host, driver, self._keys[index])
            runtime.info = driver.check()
            self.progress.step(f"tunnel end {end.host}: {end.impl} {runtime.info.version} as {driver.ifname}")
            self.ends.append(runtime)
        psk = self._psk
        for index, me in enumerate(self.ends):
            other = self.ends[1 - index]
            other_ip = ip_interface(other.spec.address.ip)  # a host route: /32 or /128
            endpoint = self.endpoints.get(me.spec.host) or (
                format_endpoint(str(other.spec.endpoint), other.spec.listen_port)
                if other.spec.endpoint is not None
                else None
            )
            me.config = InterfaceConfig(
                ifname=me.driver.ifname,
                private_key=me.keys.private,
                listen_port=me.spec.listen_port,
                addresses=(str(me.spec.address),),
                mtu=spec.mtu,
                peers=(
                    PeerConfig(
                        public_key=other.keys.public,
                        allowed_ips=(str(other_ip),),
                        endpoint=endpoint,
                        preshared_key=psk,
                        persistent_keepalive=spec.persistent_keepalive,
                    ),
                ),
            )
            self._tunnel_cleanup.push(f"{me.spec.impl} {me.driver.ifname} on {me.spec.host}", me.driver.down)
            me.driver.up(me.config)

    def _step(self, what: str) -> None:
        self.progress.step(f"removing {what}")

    def switch_variant(self, variant: str) -> None:
        """Replace the tunnel with the one of ``variant`` (hosts and links stay up)."""
        if variant == self.variant:
            return
        self.progress.step(f"variant {variant}: replacing the tunnel")
        self._replace_tunnel(variant)
        self.verify_tunnel()

    def rebuild_tunnel(self) -> float:
        """Take the tunnel down and bring it up again (same variant and keys) without
        checking it; the monotonic time at which its bring-up began."""
        return self._replace_tunnel(self.variant)

    def _replace_tunnel(self, variant: str | None) -> float:
        errors = self._tunnel_cleanup.unwind(self._step)
        # Keep the replaced processes' logs: appended per variant, in run order.
        for name, data in self.logs(current_only=True).items():
            key = f"{self.variant or 'replaced'}-{name}"
            self._earlier_logs[key] = self._earlier_logs.get(key, b"") + data
        if errors:
            raise InfraError(f"tunnel: the previous tunnel did not come down: {'; '.join(errors)}")
        started = time.monotonic()
        self._make_tunnel(variant)
        return started

    def restart_end(self, host: str) -> float:
        """Stop one end's implementation and start it again with the same configuration
        (what a peer's reboot or service restart does); the monotonic time it began."""
        end = self.end(host)
        assert end.config is not None
        for name, data in end.driver.logs().items():
            key = f"before-restart-{name}"
            self._earlier_logs[key] = self._earlier_logs.get(key, b"") + data
        started = time.monotonic()
        end.driver.down()
        end.driver.up(end.config)
        return started

    def rotate_keys(self, host: str) -> KeyPair:
        """A new key pair for ``host``'s end: set there, and the other end's peer replaced
        by one with the new public key (same allowed IPs, endpoint and PSK)."""
        index = next(i for i, e in enumerate(self.ends) if e.spec.host == host)
        me, other = self.ends[index], self.ends[1 - index]
        assert me.config is not None and other.config is not None
        new = KeyPair.generate()
        me.host.check(
            ["wg", "set", me.driver.ifname, "private-key", "/dev/stdin"], input=new.private.encode()
        )
        old_peer = other.config.peers[0]
        peer = replace(old_peer, public_key=new.public)
        argv = ["wg", "set", other.driver.ifname, "peer", old_peer.public_key, "remove",
                "peer", new.public, "allowed-ips", ",".join(peer.allowed_ips)]  # fmt: skip
        if peer.endpoint:
            argv += ["endpoint", peer.endpoint]
        if peer.persistent_keepalive:
            argv += ["persistent-keepalive", str(peer.persistent_keepalive)]
        if peer.preshared_key:
            argv += ["preshared-key", "/dev/stdin"]
        other.host.check(argv, input=(peer.preshared_key or "").encode())
        me.keys = self._keys[index] = new
        me.config = replace(me.config, private_key=new.private)
        other.config = replace(other.config, peers=(peer,))
        return new

    def verify_tunnel(self) -> None:
        """A handshake within the lab's timeout and pings through the tunnel, both ways."""
        timeout = self.lab.tunnel.handshake_timeout
        a, b = self.ends
        self.progress.step(f"tunnel: waiting for a handshake (up to {timeout:g}s)")

        def answers() -> bool:
            return a.host.run(a.host.ping_argv(b.inner_ip, count=1, wait=1), timeout=10).ok

        # No pause between tries: each ping waits up to a second for its answer.
        if not wait_until(answers, timeout, interval=0):
            raise InfraError(
                f"tunnel {a.spec.host}<->{b.spec.host}: no traffic through it within "
                f"{timeout:g}s ({self._handshake_state()})"
            )
        for src, dst in ((a, b), (b, a)):
            ping = src.host.run(src.host.ping_argv(dst.inner_ip, count=3, interval=0.05, wait=1), timeout=15)
            if not ping.ok:
                raise InfraError(
                    f"tunnel: ping {src.spec.host} -> {dst.inner_ip} failed: "
                    f"{(ping.stdout + ping.stderr).strip().splitlines()[-1:]}"
                )
        for end in self.ends:
            peer = end.driver.stats().peers[0]
            if peer.latest_handshake == 0:
                raise InfraError(f"tunnel end {end.spec.host}: traffic flowed but wg shows no handshake")
        self.progress.step("tunnel: handshake done, ping through it both ways")

    def _handshake_state(self) -> str:
        parts = []
        for end in self.ends:
            try:
                peer = end.driver.stats().peers[0]
                parts.append(f"{end.spec.host}: latest handshake {peer.latest_handshake or 'never'}")
            except Exception as exc:  # diagnostics only
                parts.append(f"{end.spec.host}: {exc}")
        return "; ".join(parts)

    # -- collection --------------------------------------------------------
    def end(self, host: str) -> EndRuntime:
        for end in self.ends:
            if end.spec.host == host:
                return end
        raise KeyError(host)

    def _keylog_path(self, host: Target, directory: str, ifname: str) -> str:
        path = f"{directory}/{ifname}.keys"
        host.check(["mkdir", "-p", directory])
        self._keylogs[(host.name, path)] = host
        return path

    def keylog(self) -> bytes:
        """Every pyref end's key log so far (Wireshark's WireGuard format), one after the
        other: with it, a capture of the lab's link decrypts. Empty without ``keylog_dir``."""
        out = b""
        for (_, path), host in self._keylogs.items():
            with contextlib.suppress(FileNotFoundError):  # that pyref never started
                out += host.get(path)
        return out

    def redacted_dumps(self) -> dict[str, str]:
        """`wg show IF dump` of each end, private and preshared keys hidden."""
        return {f"wg-dump-{e.spec.host}.txt": redact_wg_dump(e.driver.dump()) for e in self.ends}

    def logs(self, current_only: bool = False) -> dict[str, bytes]:
        """Logs of the tunnel's processes (and, unless ``current_only``, of the
        variants' processes it replaced earlier)."""
        out: dict[str, bytes] = {} if current_only else dict(self._earlier_logs)
        for end in self.ends:
            out.update(end.driver.logs())
        return out
