"""The impairment relay's own ceiling: datagrams a second and Mbit/s it forwards
with no impairment, on loopback. A sender process floods leg A with UDP
datagrams of one size for S seconds; the relay (started by `harness.impair.relay.Relay`,
as a run would) forwards them from leg B to a counting receiver process. The
rate is what the receiver counted between its first and last datagram. The
relay's ``overflow`` counter shows that it, not the sender, was the limit.
Sender, relay and receiver share this machine's cores, as the WireGuard peers
and the relay do in a local lab.

  .venv/bin/python benchmarks/relay_ceiling.py [--sizes 1420,100] [--seconds S] [--rounds R] [--json FILE]

Prints one line per size (median over R rounds, with the range) and the
figures for `CEILING_PPS` / `CEILING_MBPS` in harness/impair/relay.py. No root needed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The relay runs as `python -m harness.impair.relay`: this tree's harness, not an installed one.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

from harness.impair.model import Impairment  # noqa: E402
from harness.impair.relay import Relay, RelayLeg  # noqa: E402
from harness.targets.local import LocalTarget  # noqa: E402

LOOPBACK = "127.0.0.1"
IDLE = 1.0
"""Seconds without a datagram after which the receiver stops counting."""

Address = tuple[str, int]
Forwarder = Callable[[Address], tuple[Address, Callable[[], dict[str, Any]]]]
"""Given the receiver's address: the address to send to, and how to stop it (its statistics)."""


def receive(conn: Connection) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((LOOPBACK, 0))
    conn.send(sock.getsockname())
    sock.settimeout(60)
    first = sock.recv(65535)
    t0 = time.monotonic()
    count, nbytes, last = 1, len(first), t0
    sock.settimeout(IDLE)
    recv = sock.recv
    try:
        while True:
            nbytes += len(recv(65535))
            count += 1
    except TimeoutError:
        last = time.monotonic() - IDLE
    conn.send({"datagrams": count, "bytes": nbytes, "seconds": last - t0})


def send(conn: Connection, dest: Address, size: int, seconds: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload, sendto, clock = bytes(size), sock.sendto, time.monotonic
    count, end = 0, clock() + seconds
    while clock() < end:
        for _ in range(100):
            sendto(payload, dest)
        count += 100
    conn.send(count)


def relay_forwarder(dest: Address) -> tuple[Address, Callable[[], dict[str, Any]]]:
    relay = Relay(
        LocalTarget("local"),
        RelayLeg((LOOPBACK, 0), (LOOPBACK, 9)),
        RelayLeg((LOOPBACK, 0), dest),
        Impairment(),
    )
    relay.start()

    def stop() -> dict[str, Any]:
        stats = relay.stop().a_to_b
        return {"received": stats.received, "forwarded": stats.forwarded, "overflow": stats.overflow}

    return relay.bound[0], stop


def measure(forwarder: Forwarder, size: int, seconds: float) -> dict[str, Any]:
    """One round: sender -> forwarder -> receiver; the receiver's rate and the forwarder's counters."""
    ctx = multiprocessing.get_context("fork")
    rx_conn, rx_child = ctx.Pipe()
    receiver = ctx.Process(target=receive, args=(rx_child,))
    receiver.start()
    dest = rx_conn.recv()
    entry, stop = forwarder(dest)
    try:
        tx_conn, tx_child = ctx.Pipe()
        sender = ctx.Process(target=send, args=(tx_child, entry, size, seconds))
        sender.start()
        sent = tx_conn.recv()
        sender.join()
        got = rx_conn.recv()
        receiver.join()
    finally:
        forwarded = stop()
        if receiver.is_alive():
            receiver.kill()
    secs = got["seconds"] or 1e-9
    return {
        "size": size,
        "sent": sent,
        "pps": got["datagrams"] / secs,
        "mbps": got["bytes"] * 8 / secs / 1e6,
        **forwarded,
    }


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run(forwarders: dict[str, Forwarder], sizes: list[int], seconds: float, rounds: int) -> dict[str, Any]:
    """Every forwarder at every size, ``rounds`` times, interleaved so that drift (or
    another job on the machine) hits them alike; one line per forwarder and size."""
    cases = [(label, size) for label in forwarders for size in sizes]
    results: dict[tuple[str, int], list[dict[str, Any]]] = {case: [] for case in cases}
    for _ in range(rounds):
        for label, size in cases:
            results[label, size].append(measure(forwarders[label], size, seconds))
    figures: dict[str, Any] = {}
    for (label, size), runs in results.items():
        pps, mbps = _summary([r["pps"] for r in runs]), _summary([r["mbps"] for r in runs])
        saturated = sum(r.get("overflow", 0) > 0 for r in runs)
        figures[f"{label} {size}"] = {"pps": pps, "mbps": mbps, "saturated_rounds": saturated, "runs": runs}
        print(
            f"{label:14s} {size:5d} B  {pps['median']:9,.0f} datagrams/s ({pps['min']:,.0f}-{pps['max']:,.0f})  "
            f"{mbps['median']:7.1f} Mbit/s ({mbps['min']:.1f}-{mbps['max']:.1f})  "
            f"saturated in {saturated}/{len(runs)} rounds",
            flush=True,
        )
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1420,100", help="UDP payload bytes, comma-separated")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    figures = run({"relay": relay_forwarder}, sizes, args.seconds, args.rounds)
    pps = min(f["pps"]["median"] for f in figures.values())
    mbps = max(f["mbps"]["median"] for f in figures.values())
    print(f"CEILING_PPS = {pps:,.0f} (the lower median), CEILING_MBPS = {mbps:,.0f} (the higher median)")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"figures": figures, "args": vars(args)}, fh, indent=2)


if __name__ == "__main__":
    main()
