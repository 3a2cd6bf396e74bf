"""pyref against wireguard-go, for real (root): two network namespaces joined
by a veth pair, pyref on one end and wireguard-go on the other, both started
and configured by their drivers with the stock `wg` tool.

Checked: each side initiating, pings both ways, `wg show` on both ends
(handshake, and transfer counters that agree: what one sent the other
received), `wg showconf` read back from pyref, a fresh handshake after the
peer is removed and added again, an IPv6 link-local endpoint with its scope,
a UAPI client that stops reading holding up neither the tunnel nor other
clients, and `wgharness pyref` itself (daemonizing, refusing a socket in use,
exit status on bad names)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from harness.impl.base import Driver
from harness.impl.config import InterfaceConfig, PeerConfig, format_endpoint
from harness.impl.pyref import Pyref
from harness.impl.wireguard_go import WireguardGo
from harness.keys import KeyPair
from harness.parsers.wgdump import InterfaceDump
from harness.run.orchestrator import new_instance_id
from harness.targets.links import LinkEnd, VethLink
from harness.targets.netns import NetnsTarget

UNDER = ("198.18.7.1", "198.18.7.2")
INNER = ("198.19.7.1", "198.19.7.2")
PORTS = (51830, 51831)
# RFC 5180's benchmarking range, 2001:2::/48, for the IPv6 case.
UNDER6 = ("2001:2:0:7::1", "2001:2:0:7::2")
INNER6 = ("2001:2:0:8::1", "2001:2:0:8::2")
LINK_LOCAL = ("fe80::7:1", "fe80::7:2")


@dataclass
class End:
    host: NetnsTarget
    driver: Driver
    keys: KeyPair
    cfg: InterfaceConfig | None = None


@dataclass
class Pair:
    ends: tuple[End, End]
    inner: tuple[str, str] = INNER
    links: tuple[str, str] = ("", "")
    """The names of the veth's ends, in the first namespace and the second."""

    def ping(self, src: int, count: int = 3, size: int = 56) -> None:
        end = self.ends[src]
        end.host.check(
            ["ping", "-c", str(count), "-i", "0.2", "-W", "5", "-s", str(size), self.inner[1 - src]]
        )

    def stats(self, i: int) -> InterfaceDump:
        return self.ends[i].driver.stats()


def _bring_up(kinds: tuple[str, str], ipv6: bool = False, link_local: bool = False) -> Iterator[Pair]:
    """The two ends up and configured; ``link_local``: the veth has only IPv6 link-local
    addresses, and each endpoint names its interface (``[fe80::…%veth]:port``)."""
    tag = new_instance_id()
    hosts = (NetnsTarget("a", f"wgh-{tag}-a"), NetnsTarget("b", f"wgh-{tag}-b"))
    under, inner, plen = (UNDER6, INNER6, 64) if ipv6 else (UNDER, INNER, 24)
    under_plen = plen
    if link_local:
        under, under_plen = LINK_LOCAL, 64
    links = (f"wgh{tag}la", f"wgh{tag}lb")
    link = VethLink(
        LinkEnd(hosts[0], links[0], f"{under[0]}/{under_plen}"),
        LinkEnd(hosts[1], links[1], f"{under[1]}/{under_plen}"),
    )
    ends: list[End] = []
    try:
        for host in hosts:
            host.setup()
        link.setup()
        for i, (kind, host) in enumerate(zip(kinds, hosts, strict=True)):
            cls = Pyref if kind == "pyref" else WireguardGo
            ends.append(End(host, cls(host, f"wgh{tag}t{i}"), KeyPair.generate()))
        for i, end in enumerate(ends):
            other = ends[1 - i]
            end.driver.check()
            end.cfg = InterfaceConfig(
                ifname=end.driver.ifname,
                private_key=end.keys.private,
                listen_port=PORTS[i],
                addresses=(f"{inner[i]}/{plen}",),
                mtu=1420,
                peers=(
                    PeerConfig(
                        other.keys.public,
                        (f"{inner[1 - i]}/{128 if ipv6 else 32}",),
                        format_endpoint(under[1 - i] + (f"%{links[i]}" if link_local else ""), PORTS[1 - i]),
                    ),
                ),
            )
            end.driver.up(end.cfg)
        yield Pair((ends[0], ends[1]), inner, links)
    finally:
        for end in reversed(ends):
            end.driver.down()
        link.teardown()
        for host in reversed(hosts):
            host.teardown()


@pytest.fixture(params=[("pyref", "wireguard-go"), ("wireguard-go", "pyref")], ids=["pyref-go", "go-pyref"])
def pair(request: pytest.FixtureRequest, no_leftovers: None) -> Iterator[Pair]:
    yield from _bring_up(request.param)


def _settled(pair: Pair) -> tuple[InterfaceDump, InterfaceDump]:
    """Both dumps once the counters stopped moving (keepalives may still be in flight)."""
    last = None
    for _ in range(20):
        now = (pair.stats(0), pair.stats(1))
        key = tuple((p.rx_bytes, p.tx_bytes) for d in now for p in d.peers)
        if key == last:
            return now
        last = key
        time.sleep(0.3)
    return now


@pytest.mark.parametrize("initiator", [0, 1], ids=["a-initiates", "b-initiates"])
def test_handshake_ping_and_counters(pair: Pair, initiator: int) -> None:
    pair.ping(initiator)
    pair.ping(1 - initiator, count=5, size=1000)
    a, b = _settled(pair)
    pa, pb = a.peers[0], b.peers[0]
    assert pa.latest_handshake > 0 and pb.latest_handshake > 0
    assert pa.public_key == pair.ends[1].keys.public and pb.public_key == pair.ends[0].keys.public
    # What one side sent is what the other received, to the byte (both count whole datagrams).
    assert pa.tx_bytes == pb.rx_bytes and pb.tx_bytes == pa.rx_bytes, (a, b)
    # 8 echo requests and 8 replies of 56..1000 bytes each crossed: far more than handshakes alone.
    assert pa.tx_bytes > 5 * 1000 and pa.rx_bytes > 5 * 1000
    assert pa.endpoint == f"{UNDER[1]}:{PORTS[1]}" and pb.endpoint == f"{UNDER[0]}:{PORTS[0]}"


def test_peer_removed_and_added_again_gets_a_new_handshake(pair: Pair) -> None:
    pair.ping(0)
    py = 0 if isinstance(pair.ends[0].driver, Pyref) else 1
    end, other = pair.ends[py], pair.ends[1 - py]
    first = pair.stats(py).peers[0].latest_handshake
    ifname = end.driver.ifname
    end.host.check(["wg", "set", ifname, "peer", other.keys.public, "remove"])
    assert pair.stats(py).peers == ()
    time.sleep(1.1)  # handshake times have one-second resolution
    end.host.check([
        "wg", "set", ifname, "peer", other.keys.public, "allowed-ips", f"{INNER[1 - py]}/32",
        "endpoint", f"{UNDER[1 - py]}:{PORTS[1 - py]}",
    ])  # fmt: skip
    pair.ping(py)  # pyref has no session for the peer any more: it must initiate again
    again = pair.stats(py).peers[0].latest_handshake
    assert again > first
    assert pair.stats(1 - py).peers[0].latest_handshake >= again - 1


def test_showconf_reads_back_what_setconf_wrote(pair: Pair) -> None:
    py = 0 if isinstance(pair.ends[0].driver, Pyref) else 1
    end = pair.ends[py]
    conf = end.host.check(["wg", "showconf", end.driver.ifname]).stdout
    assert f"PrivateKey = {end.keys.private}" in conf
    assert f"ListenPort = {PORTS[py]}" in conf
    assert f"PublicKey = {pair.ends[1 - py].keys.public}" in conf
    assert f"AllowedIPs = {INNER[1 - py]}/32" in conf
    # Feeding it back changes nothing, and the tunnel still works.
    end.host.check(["wg", "setconf", end.driver.ifname, "/dev/stdin"], input=conf.encode())
    assert end.host.check(["wg", "showconf", end.driver.ifname]).stdout == conf
    pair.ping(1 - py)


@pytest.mark.parametrize(
    "kinds", [("pyref", "wireguard-go"), ("pyref", "pyref")], ids=["pyref-go", "pyref-pyref"]
)
def test_ipv6_outside_and_inside(no_leftovers: None, kinds: tuple[str, str]) -> None:
    with contextlib.closing(_bring_up(kinds, ipv6=True)) as lab:  # closing runs its teardown
        pair = next(lab)
        pair.ping(0)
        pair.ping(1, count=3, size=1200)
        a, b = _settled(pair)
        assert (
            a.peers[0].endpoint == f"[{UNDER6[1]}]:{PORTS[1]}"
            and b.peers[0].endpoint == f"[{UNDER6[0]}]:{PORTS[0]}"
        )
        assert a.peers[0].tx_bytes == b.peers[0].rx_bytes > 3 * 1200


def test_link_local_endpoint_keeps_its_scope(no_leftovers: None) -> None:
    """pyref sends to ``[fe80::…%veth]:port`` on that interface, keeps the scope when the
    peer's datagrams move the endpoint (roaming), and shows it as current wireguard-go
    does (conn/bind_std.go: the netip.AddrPort, zone and all)."""
    with contextlib.closing(_bring_up(("pyref", "wireguard-go"), link_local=True)) as lab:
        pair = next(lab)
        py = pair.ends[0]
        # A second link-local network in pyref's namespace that the routing table prefers: a
        # datagram to fe80::7:2 that lost its scope id goes out there, to nobody.
        decoy, sink = pair.links[0][:-1] + "d", pair.links[0][:-1] + "e"
        py.host.check(["ip", "link", "add", decoy, "type", "veth", "peer", "name", sink])
        py.host.check(["ip", "address", "add", "fe80::7:3/64", "dev", decoy, "nodad"])
        py.host.check(["ip", "link", "set", decoy, "up"])
        py.host.check(["ip", "link", "set", sink, "up"])
        py.host.check(["ip", "-6", "route", "add", "fe80::/64", "dev", decoy, "metric", "1"])
        endpoint = f"[{LINK_LOCAL[1]}%{pair.links[0]}]:{PORTS[1]}"
        assert pair.stats(0).peers[0].endpoint == endpoint  # as wg set it
        pair.ping(0)  # pyref initiates, to the endpoint configured
        pair.ping(1, count=3, size=1000)  # and answers where the peer's datagrams came from
        a, b = _settled(pair)
        assert a.peers[0].latest_handshake > 0 and a.peers[0].tx_bytes == b.peers[0].rx_bytes > 3 * 1000
        assert a.peers[0].endpoint == endpoint  # after roaming too
        shown = py.host.check(["wg", "show", py.driver.ifname, "endpoints"]).stdout.split()
        assert shown == [pair.ends[1].keys.public, endpoint]


def _read_answer(sock: socket.socket) -> bytes:
    """Everything up to the end of one answer (``errno=N`` and a blank line)."""
    out = b""
    while not (out.endswith(b"\n\n") and b"errno=" in out[-20:]):
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        out += chunk
    return out


def test_a_uapi_client_that_does_not_read_holds_up_nothing_else(no_leftovers: None) -> None:
    """One client asks for a get far larger than the socket buffers and does not read it,
    another sends half a request and stops: meanwhile the tunnel passes packets, and
    `wg set` and `wg show` are answered; the first client then reads its whole answer.
    (wireguard-go serves each connection on a goroutine of its own, device/uapi.go's
    IpcHandle; pyref's one loop must not wait on any client.)"""
    with contextlib.closing(_bring_up(("pyref", "wireguard-go"))) as lab:
        pair = next(lab)
        py = pair.ends[0]
        path = py.driver.socket_path
        many = 3000  # about 300 bytes each in a get: ~1 MB, against ~200 KB of socket buffer
        request = "set=1\n" + "".join(
            f"public_key={os.urandom(32).hex()}\nallowed_ip=10.{i >> 8}.{i & 255}.0/24\n" for i in range(many)
        )
        with contextlib.ExitStack() as stack:
            setter, hog, half = (stack.enter_context(socket.socket(socket.AF_UNIX)) for _ in range(3))
            for s in (setter, hog, half):
                s.settimeout(30)  # far beyond what any answer here takes: a bound, not a measure
                s.connect(path)
            setter.sendall(request.encode() + b"\n")
            assert _read_answer(setter) == b"errno=0\n\n"
            hog.sendall(b"get=1\n\n")  # and reads nothing, for now
            half.sendall(b"set=1\nlisten_port=")  # and nothing more
            pair.ping(0)
            pair.ping(1)
            py.host.check(["wg", "set", py.driver.ifname, "peer", KeyPair.generate().public,
                           "allowed-ips", "10.200.0.0/16"], timeout=30)  # fmt: skip
            assert len(pair.stats(0).peers) == many + 2
            answer = _read_answer(hog)
            assert answer.endswith(b"errno=0\n\n") and answer.count(b"public_key=") == many + 1


def _wgharness(*args: str, ns: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "harness", *args],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_pyref_command_daemonizes_and_refuses_a_socket_in_use(no_leftovers: None) -> None:
    tag = new_instance_id()
    host, other = NetnsTarget("solo", f"wgh-{tag}-solo"), NetnsTarget("other", f"wgh-{tag}-o")
    name = f"wgh{tag}d"
    try:
        host.setup()
        other.setup()
        started = _wgharness("pyref", name, ns=host.namespace)
        assert started.returncode == 0, started.stderr  # the parent returns once the device exists
        assert host.run(["test", "-S", f"/var/run/wireguard/{name}.sock"]).ok
        assert host.check(["wg", "show", name, "listen-port"]).stdout.strip().isdigit()
        again = _wgharness("pyref", "-f", name, ns=host.namespace)
        assert again.returncode == 1 and "Device or resource busy" in again.stderr
        # Another namespace can have an interface of that name, but the socket directory is shared.
        clash = _wgharness("pyref", "-f", name, ns=other.namespace)
        assert clash.returncode == 1 and "in use" in clash.stderr
        bad = _wgharness("pyref", "-f", "x" * 16, ns=host.namespace)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1
        # Deleting the interface ends the daemon, which removes its socket.
        host.check(["ip", "link", "del", name])
        for _ in range(100):
            if not host.run(["test", "-S", f"/var/run/wireguard/{name}.sock"]).ok:
                break
            time.sleep(0.05)
        assert not host.run(["test", "-S", f"/var/run/wireguard/{name}.sock"]).ok
    finally:
        other.teardown()
        host.teardown()  # stops anything still running in the namespace
        subprocess.run(["rm", "-f", f"/var/run/wireguard/{name}.sock"], check=False)
