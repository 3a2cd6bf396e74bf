"""The userspace impairment relay, seen from the harness: `Relay` starts it on a
host, waits for it to be ready and stops it by its PID for its statistics.

The relay sits on the underlay path between two WireGuard peers: each peer is
configured with the relay's leg as its peer's endpoint. It impairs in userspace
what netem would in the kernel, on any Linux host and in front of Windows peers
(docs/impairments.md). Its own ceiling is measured (`CEILING_PPS`,
`CEILING_MBPS`); `near_ceiling` warns when a result comes close to it, so the
relay is never mistaken for the tunnel's limit.

``python -m harness.impair.relay --a ADDR:PORT --a-to ADDR:PORT --b ADDR:PORT --b-to ADDR:PORT
[--delay-ms MS] [--jitter-ms MS] [--loss-pct P] [--reorder-pct P] [--duplicate-pct P]
[--seed N]`` runs the relay process (`harness.impair.relay_loop`).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from harness.codec import decode
from harness.errors import InfraError
from harness.impair.model import Impairment
from harness.impair.relay_loop import read_address, serve, show_address
from harness.targets.base import Process, Target
from harness.targets.ship import python_on

Address = tuple[str, int]

# The relay's own ceiling on the machine of docs/impairments.md (2 cores, shared with the
# sender and the receiver), medians of 9 rounds of
#   python benchmarks/relay_ceiling.py --rounds 9
# CEILING_PPS: 1420-byte datagrams (the lower of the two sizes' medians; 100-byte
# ones made 161,600/s). One thread serves both directions: the two share it.
# CEILING_MBPS: UDP payload of 1420-byte datagrams.
CEILING_PPS = 142_000.0
CEILING_MBPS = 1_620.0
NEAR_CEILING = 0.8
"""A rate at or above this share of the ceiling gets a warning."""
READY_TIMEOUT = 15.0
"""Seconds the relay may take to bind its sockets (a Python start on a busy host)."""


@dataclass(frozen=True)
class RelayLeg:
    """One side of the relay: the address its socket binds (what that side's peer
    sends to) and the address of that side's peer (where the other side's datagrams
    go, sent from this leg's socket)."""

    bind: Address
    """Port 0 picks a free port (`Relay.bound` tells which)."""
    forward_to: Address

    def __post_init__(self) -> None:
        families = set()
        for name, (host, port), lo in (("bind", self.bind, 0), ("forward_to", self.forward_to, 1)):
            try:
                families.add(ipaddress.ip_address(host).version)
            except ValueError:
                raise ValueError(f"RelayLeg.{name}: {host!r} is not an IP address") from None
            if not lo <= port <= 65535:
                raise ValueError(f"RelayLeg.{name}: port {port} is not from {lo} to 65535")
        if len(families) != 1:
            raise ValueError("RelayLeg: bind and forward_to must both be IPv4 or both IPv6")


@dataclass(frozen=True)
class DirectionStats:
    """What one direction of the relay did; ``received + duplicated == forwarded +
    dropped + send_errors + unsent``."""

    received: int
    """Datagrams the relay read."""
    forwarded: int
    """Datagrams it sent on, duplicates included."""
    dropped: int
    """Dropped by the configured loss."""
    duplicated: int
    """Extra copies made by the configured duplication."""
    reordered: int
    """Sent at once, ahead of delayed ones (the configured reordering)."""
    bytes: int
    """Bytes of the forwarded datagrams (UDP payload)."""
    send_errors: int
    """Datagrams the kernel refused to send (no route, buffer full...)."""
    unsent: int
    """Still waiting for their delay when the relay was stopped."""
    overflow: int
    """Dropped by the kernel before the relay could read them: its receive buffer was
    full, so the relay itself was the bottleneck. Anything but 0 taints a measurement."""


@dataclass(frozen=True)
class RelayStats:
    a_to_b: DirectionStats
    """Received on leg A, sent from leg B."""
    b_to_a: DirectionStats
    seed: int
    """The seed of the run's random draws (the configured one, or the relay's pick)."""

    @property
    def received(self) -> int:
        """Datagrams read in both directions: over a run's duration, the packets per
        second to give `near_ceiling` (the relay's one thread serves both)."""
        return self.a_to_b.received + self.b_to_a.received

    @property
    def saturated(self) -> bool:
        """Did the kernel drop datagrams the relay was too slow to read?"""
        return bool(self.a_to_b.overflow or self.b_to_a.overflow)


def parse_stats(line: str) -> RelayStats:
    """The relay's last line; ValueError if it is not its statistics."""
    try:
        data = json.loads(line)
        if not isinstance(data, dict) or data.pop("event", None) != "stats":
            raise ValueError("not a statistics line")
        return decode(data, RelayStats)
    except ValueError as exc:
        raise ValueError(f"not the relay's statistics: {line[:80]!r}") from exc


def relay_args(a: RelayLeg, b: RelayLeg, imp: Impairment) -> list[str]:
    """The relay's arguments after ``-m harness.impair.relay`` (only the impairments set)."""
    args = ["--a", show_address(a.bind), "--a-to", show_address(a.forward_to)]
    args += ["--b", show_address(b.bind), "--b-to", show_address(b.forward_to)]
    for name in ("delay_ms", "jitter_ms", "loss_pct", "reorder_pct", "duplicate_pct"):
        value = getattr(imp, name)
        if value:
            args += ["--" + name.replace("_", "-"), f"{value:g}"]
    if imp.seed is not None:
        args += ["--seed", str(imp.seed)]
    return args


class Relay:
    """The relay process on ``host`` between two peers (see `RelayLeg`).

    ``start()`` returns once both sockets are bound; ``stop()`` ends the process by its
    PID (SIGTERM) and returns its statistics. As a context manager it starts on entry
    and stops on exit.
    """

    def __init__(self, host: Target, a: RelayLeg, b: RelayLeg, impairment: Impairment) -> None:
        self.host = host
        self.a = a
        self.b = b
        self.impairment = impairment
        self.bound: tuple[Address, Address] = (a.bind, b.bind)
        """The addresses the legs are bound to (the real ports once started)."""
        self.seed: int | None = impairment.seed
        self._process: Process | None = None
        self._pid: int | None = None
        self._stats: RelayStats | None = None

    def argv(self) -> list[str]:
        return [
            *python_on(self.host),
            "-m",
            "harness.impair.relay",
            *relay_args(self.a, self.b, self.impairment),
        ]

    @property
    def pid(self) -> int:
        """The relay's PID on its host (also after `stop`); RuntimeError before `start`."""
        if self._pid is None:
            raise RuntimeError("the relay has not been started")
        return self._pid

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError("the relay has already been started")
        process = self.host.start(self.argv())
        self._process, self._pid, self._stats = process, process.pid, None
        if self.host.dry is not None:  # only written down: nothing will say it is ready
            return
        try:
            ready = process.wait_ready(
                lambda: _ready_line(process.output()[0]),
                READY_TIMEOUT,
                "the impairment relay to be ready",
                interval=0.01,
            )
        except BaseException:
            process.kill()
            self._process = self._pid = None
            raise
        self.bound = (_pair(ready["a"]), _pair(ready["b"]))
        self.seed = int(ready["seed"])

    def stop(self) -> RelayStats:
        """Stop the relay (SIGTERM by its PID); its statistics. A second call returns
        the same statistics. InfraError if it did not end cleanly."""
        if self._stats is not None:
            return self._stats
        if self._process is None:
            raise RuntimeError("the relay is not running")
        process, self._process = self._process, None
        status = process.kill(grace=5.0)
        if self.host.dry is not None:
            zero = DirectionStats(0, 0, 0, 0, 0, 0, 0, 0, 0)
            self._stats = RelayStats(zero, zero, self.seed or 0)
            return self._stats
        lines = process.output()[0].decode("utf-8", "replace").strip().splitlines()
        if status != 0 or not lines:
            raise InfraError(
                f"{self.host.name}: the impairment relay (pid {process.pid}) ended with {status}: {_reason(process)}"
            )
        try:
            self._stats = parse_stats(lines[-1])
        except ValueError as exc:
            raise InfraError(f"{self.host.name}: the impairment relay (pid {process.pid}): {exc}") from None
        return self._stats

    def __enter__(self) -> Relay:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process is None:
            return
        if exc_type is None:
            self.stop()
        else:
            # The error on the way out says more than a failed stop would.
            with contextlib.suppress(InfraError):
                self.stop()


def _ready_line(stdout: bytes) -> dict[str, Any] | None:
    """The relay's ready line, once it has been written whole."""
    for line in stdout.decode("utf-8", "replace").splitlines(keepends=True):
        if line.endswith("\n") and line.startswith("{"):
            with contextlib.suppress(ValueError):
                data = json.loads(line)
                if isinstance(data, dict) and data.get("event") == "ready":
                    return data
    return None


def _reason(process: Process) -> str:
    lines = process.output()[1].decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else "no output on stderr"


def _pair(value: Any) -> Address:
    return str(value[0]), int(value[1])


def near_ceiling(bits_per_second: float | None, packets_per_second: float | None = None) -> str | None:
    """A one-line warning when a rate measured through the relay is at or above 80% of
    the relay's own ceiling (None when it is not, or when no rate is given)."""
    shares = []  # (share of the ceiling, the rate, the ceiling), as text for the warning
    if bits_per_second:
        share = bits_per_second / (CEILING_MBPS * 1e6)
        shares.append((share, f"{bits_per_second / 1e6:,.0f} Mbit/s", f"{CEILING_MBPS:,.0f} Mbit/s"))
    if packets_per_second:
        share = packets_per_second / CEILING_PPS
        shares.append((share, f"{packets_per_second:,.0f} packets/s", f"{CEILING_PPS:,.0f} packets/s"))
    if not shares or max(shares)[0] < NEAR_CEILING:
        return None
    share, rate, ceiling = max(shares)
    return (
        f"{rate} is {share:.0%} of the impairment relay's own ceiling ({ceiling} on the machine of "
        "docs/impairments.md): the relay may be the limit here, not the tunnel"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m harness.impair.relay", description="The userspace impairment relay."
    )
    p.add_argument("--a", type=read_address, required=True, metavar="ADDR:PORT", help="leg A binds here")
    p.add_argument("--a-to", type=read_address, required=True, metavar="ADDR:PORT", help="peer A")
    p.add_argument("--b", type=read_address, required=True, metavar="ADDR:PORT", help="leg B binds here")
    p.add_argument("--b-to", type=read_address, required=True, metavar="ADDR:PORT", help="peer B")
    for name in ("delay-ms", "jitter-ms", "loss-pct", "reorder-pct", "duplicate-pct"):
        p.add_argument(f"--{name}", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args(argv)
    try:
        a, b = RelayLeg(args.a, args.a_to), RelayLeg(args.b, args.b_to)
        imp = Impairment(
            delay_ms=args.delay_ms,
            jitter_ms=args.jitter_ms,
            loss_pct=args.loss_pct,
            reorder_pct=args.reorder_pct,
            duplicate_pct=args.duplicate_pct,
            seed=args.seed,
        )
    except ValueError as exc:
        p.error(str(exc))
    return serve(a.bind, a.forward_to, b.bind, b.forward_to, imp)


if __name__ == "__main__":
    raise SystemExit(main())
