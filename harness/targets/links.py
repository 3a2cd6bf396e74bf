"""Links between lab hosts that live on this machine: a veth pair between two
network namespaces, created directly inside them (it never appears in the
machine's own namespace), with an optional tbf rate limit on both ends; each
noted in the lab's record before it is made.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.targets.base import Target
from harness.targets.ledger import HERE, Forget, Resource, ResourceKind, note
from harness.targets.local import LocalTarget
from harness.targets.netns import NetnsTarget


@dataclass(frozen=True)
class LinkEnd:
    host: NetnsTarget
    ifname: str
    address: str
    """With prefix length, e.g. ``198.18.0.1/24``."""


def tbf_burst_bytes(rate_bps: int) -> int:
    """A bucket that holds 10 ms at the rate, and never less than 32 KiB
    (tbf needs at least rate/HZ bytes or it cannot reach the rate)."""
    return max(32 * 1024, rate_bps // 8 // 100)


def add_rate_limit(host: Target, ifname: str, rate_bps: int) -> Forget:
    """tbf at ``rate_bps`` on what ``ifname`` sends, noted in the lab's record; the function
    that forgets it (it goes with its device: whoever removes that calls it)."""
    forget = host.noted(ResourceKind.QDISC, ifname, namespace=getattr(host, "namespace", None))
    host.check([
        "tc", "qdisc", "add", "dev", ifname, "root", "tbf",
        "rate", f"{rate_bps}bit", "burst", str(tbf_burst_bytes(rate_bps)), "latency", "50ms",
    ])  # fmt: skip
    return forget


class VethLink:
    def __init__(self, a: LinkEnd, b: LinkEnd, rate_bps: int | None = None, mtu: int | None = None):
        self.a = a
        self.b = b
        self.rate_bps = rate_bps
        self.mtu = mtu
        self._root = LocalTarget("root", dry=a.host.dry)  # recorded with its hosts in a dry run
        self._forget: list[Forget] = []

    def setup(self) -> None:
        self._forget.append(
            note(self.a.host.ledger, Resource(ResourceKind.LINK, HERE, self.a.ifname, self.a.host.namespace))
        )
        self._root.check([
            "ip", "link", "add", self.a.ifname, "netns", self.a.host.namespace, "type", "veth",
            "peer", "name", self.b.ifname, "netns", self.b.host.namespace,
        ])  # fmt: skip
        for end in (self.a, self.b):
            # IPv6: no duplicate address detection, which would hold the address back ~2 s;
            # the lab owns both ends of the link.
            nodad = ["nodad"] if ":" in end.address else []
            end.host.check(["ip", "address", "add", end.address, "dev", end.ifname, *nodad])
            if self.mtu:
                end.host.check(["ip", "link", "set", "dev", end.ifname, "mtu", str(self.mtu)])
            end.host.check(["ip", "link", "set", "dev", end.ifname, "up"])
            if self.rate_bps:
                self._forget.append(add_rate_limit(end.host, end.ifname, self.rate_bps))

    def teardown(self) -> None:
        # Deleting one end deletes the pair, and its qdiscs; the namespace's deletion would too.
        result = self.a.host.run(["ip", "link", "del", "dev", self.a.ifname])
        if not result.ok and "Cannot find device" not in result.stderr:
            result = self.b.host.run(["ip", "link", "del", "dev", self.b.ifname])
        if result.ok or "Cannot find device" in result.stderr:
            while self._forget:
                self._forget.pop()()
