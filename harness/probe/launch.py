"""Running the prober (`harness.probe`) against a tunnel end of a running lab.

The prober runs on the *other* tunnel end's host and speaks WireGuard to the
end under test (the DUT) over the lab's link, at the DUT's own endpoint. Its
identities are configured on the DUT as extra peers with `wg` (so this works
for any implementation `wg` configures), each with one address from
``PROBER_NET``, routed into the DUT's interface while they exist, and removed
again afterwards, whatever happens.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from harness.codec import decode
from harness.errors import InfraError, NotReady
from harness.keys import KeyPair
from harness.probe import result_type
from harness.run.orchestrator import EndRuntime, LabInstance
from harness.targets.base import Process, Target
from harness.targets.netns import NetnsTarget
from harness.targets.ship import python_on

PROBER_NET = ipaddress.IPv4Network("198.19.128.0/17")
PROBER_PORT = 51990
"""The UDP port a prober listens on where the DUT must send to it first."""
"""Inner addresses of prober identities: inside the lab's benchmarking range
(RFC 2544), apart from the tunnel addresses lab files use (198.19.0.0/24...)."""
REMOVE_CHUNK = 500


@dataclass(frozen=True)
class ProberSide:
    """Where the prober runs and what it aims at."""

    dut: EndRuntime
    prober: EndRuntime
    target: tuple[str, int]
    """The DUT's endpoint on the link (address, UDP port)."""

    @property
    def host(self) -> Target:
        return self.prober.host


def sides(lab: LabInstance, dut_host: str) -> ProberSide:
    dut = lab.end(dut_host)
    prober = next(e for e in lab.ends if e is not dut)
    if dut.spec.endpoint is None:
        raise InfraError(f"tunnel end {dut_host}: no endpoint address, so the prober cannot reach it")
    return ProberSide(dut, prober, (str(dut.spec.endpoint), dut.spec.listen_port))


@dataclass(frozen=True)
class Identity:
    keys: KeyPair
    address: str
    """Its inner address (the one allowed IP the DUT has for it)."""


def _peer_conf(identities: list[Identity], keepalive: int | None) -> str:
    lines = []
    for ident in identities:
        lines += ["[Peer]", f"PublicKey = {ident.keys.public}", f"AllowedIPs = {ident.address}/32"]
        if keepalive:
            lines.append(f"PersistentKeepalive = {keepalive}")
    return "\n".join(lines) + "\n"


@contextmanager
def prober_peers(
    side: ProberSide, count: int, *, keepalive: int | None = None, endpoint: tuple[str, int] | None = None
) -> Iterator[list[Identity]]:
    """``count`` fresh prober identities configured as peers of the DUT (and a route
    to their addresses through its interface); all removed on the way out."""
    if count > PROBER_NET.num_addresses - 2:
        raise InfraError(f"at most {PROBER_NET.num_addresses - 2} prober identities, asked for {count}")
    hosts = PROBER_NET.hosts()
    identities = [Identity(KeyPair.generate(), str(next(hosts))) for _ in range(count)]
    dut, ifname = side.dut.host, side.dut.driver.ifname
    conf = _peer_conf(identities, keepalive)
    if endpoint is not None:  # one identity whose endpoint the DUT is told (for probes it must send to)
        conf = conf.replace("[Peer]", f"[Peer]\nEndpoint = {endpoint[0]}:{endpoint[1]}", 1)
    route = ["ip", "route", "replace", str(PROBER_NET), "dev", ifname]
    try:
        dut.check(["wg", "addconf", ifname, "/dev/stdin"], input=conf.encode(), timeout=120)
        dut.check(route)
        yield identities
    finally:
        dut.run(["ip", "route", "del", str(PROBER_NET), "dev", ifname])
        for i in range(0, len(identities), REMOVE_CHUNK):
            argv = ["wg", "set", ifname]
            for ident in identities[i : i + REMOVE_CHUNK]:
                argv += ["peer", ident.keys.public, "remove"]
            dut.run(argv, timeout=120)


def free_address(network: ipaddress.IPv4Network, used: set[str]) -> str:
    """The highest host address of ``network`` not in ``used``; InfraError if none is left."""
    for number in range(int(network.broadcast_address) - 1, int(network.network_address), -1):
        address = str(ipaddress.IPv4Address(number))
        if address not in used:
            return address
    raise InfraError(f"no free address left in {network}")


@contextmanager
def second_address(side: ProberSide) -> Iterator[str]:
    """Another IPv4 address of the prober's host on the lab's link, for a sender that
    must not be the prober's own address (a flood: upstream counts handshakes per
    source address): the highest free one of the link's subnet, added to the interface
    holding the prober's endpoint address and removed on the way out. A namespace
    host only (nothing is added to a real machine's interfaces) on an IPv4 link (an
    IPv6 address would share the prober's /64, which upstream counts as one source);
    InfraError otherwise."""
    host, own = side.prober.host, side.prober.spec.endpoint
    if not isinstance(host, NetnsTarget):
        raise InfraError(f"{host.name}: a second address is only added to a namespace host")
    if not isinstance(own, ipaddress.IPv4Address):
        raise InfraError(f"{host.name}: a second address needs an IPv4 link (the endpoint is {own})")
    used = {str(side.dut.spec.endpoint)}
    where: tuple[str, int] | None = None
    for link in json.loads(host.check(["ip", "-j", "-4", "address", "show"]).stdout):
        for info in link.get("addr_info", []):
            used.add(info["local"])
            if info["local"] == str(own):
                where = (link["ifname"], int(info["prefixlen"]))
    if where is None:
        raise InfraError(f"{host.name}: no interface holds the endpoint address {own}")
    ifname, prefix = where
    cidr = f"{free_address(ipaddress.IPv4Network(f'{own}/{prefix}', strict=False), used)}/{prefix}"
    host.check(["ip", "address", "add", cidr, "dev", ifname])
    try:
        yield cidr.partition("/")[0]
    finally:
        host.run(["ip", "address", "del", cidr, "dev", ifname])


def job(side: ProberSide, mode: str, identities: list[Identity], **fields: Any) -> dict[str, Any]:
    return {
        "mode": mode,
        "target": list(side.target),
        "responder_public": side.dut.keys.public,
        "identities": [i.keys.private for i in identities],
        **fields,
    }


def _argv(host: Target) -> list[str]:
    return [*python_on(host), "-m", "harness.probe"]


def run_probe(side: ProberSide, payload: dict[str, Any], timeout: float) -> Any:
    """Run one prober job on the prober's host; its result, the mode's dataclass
    (e.g. `harness.probe.handshakes.LatencyResult`). InfraError if it could not run."""
    done = side.host.run(_argv(side.host), input=json.dumps(payload).encode(), timeout=timeout)
    return _result(payload["mode"], done.stdout, done.stderr, done.status)


def start_probe(side: ProberSide, payload: dict[str, Any]) -> Process:
    """Start a prober job in the background (e.g. a flood); `finish_probe` reads its result."""
    return side.host.start(_argv(side.host), env={"WGH_PROBE_JOB": json.dumps(payload)})


def finish_probe(proc: Process, mode: str, timeout: float) -> Any:
    """The result of a prober started with `start_probe` (as `run_probe`'s), once it ends."""
    try:
        status = proc.wait(timeout)
    except TimeoutError:
        proc.kill()
        raise InfraError(f"prober {mode}: still running after {timeout:g}s") from None
    out, err = proc.output()
    return _result(mode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), status)


def _result(mode: str, stdout: str, stderr: str, status: int) -> Any:
    """The prober's last line of output read back into ``mode``'s result type."""
    try:
        result = json.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else None
    except json.JSONDecodeError:
        result = None
    if status != 0 or not isinstance(result, dict) or "error" in result:
        why = result.get("error") if isinstance(result, dict) else (stderr.strip().splitlines() or ["?"])[-1]
        raise InfraError(f"prober {mode} failed (exit {status}): {why}")
    try:
        return decode(result, result_type(mode))
    except KeyError:
        raise InfraError(f"prober {mode}: no such mode in this harness") from None
    except ValueError as exc:
        raise InfraError(f"prober {mode}: unexpected result: {exc}") from None


def has_event(stdout: bytes, event: str) -> bool:
    """Did a prober print the progress line ``{"event": event}`` (`harness.probe.wire.announce`)?"""
    for line in stdout.decode("utf-8", "replace").splitlines():
        try:
            got = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(got, dict) and got.get("event") == event:
            return True
    return False


def wait_event(proc: Process, mode: str, event: str, timeout: float) -> None:
    """Wait until the background prober ``proc`` announces ``event``; InfraError if it
    ends first (its own error, when it printed one) or ``timeout`` seconds pass."""
    try:
        proc.wait_ready(
            lambda: has_event(proc.output()[0], event), timeout, f"prober {mode} to announce {event!r}"
        )
    except NotReady as exc:
        if exc.status is not None:  # ended: its own account of why, if it gave one
            out, err = proc.output()
            _result(mode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), exc.status)
        raise


def set_peer(side: ProberSide, ident: Identity, *settings: str) -> None:
    """``wg set IFNAME peer KEY SETTINGS...`` on the DUT for a prober identity."""
    side.dut.host.check(["wg", "set", side.dut.driver.ifname, "peer", ident.keys.public, *settings])


def prober_endpoint(side: ProberSide, port: int = PROBER_PORT) -> str:
    """The prober's host and ``port`` on the link, as a `wg` endpoint."""
    host = str(side.prober.spec.endpoint)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def ping_from_dut(side: ProberSide, address: str, count: int, interval: float) -> Process:
    """Start the DUT pinging ``address`` (a prober identity's): data for that peer."""
    return side.dut.host.start(side.dut.host.ping_argv(address, count=count, interval=interval, wait=1))
