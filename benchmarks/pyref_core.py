"""pyref's sans-IO core, measured without any I/O: CPU per packet (seal on
send, open on receive, 1420-byte packets through two devices in memory),
handshake responses per second on one core, and memory per configured peer.

  .venv/bin/python benchmarks/pyref_core.py [--packets N] [--handshakes N] [--peers N] [--rounds R]

Prints one line per figure (median over R rounds, with the range) and, with
--json FILE, writes them for the record. No root needed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable

from harness.pyref.cookie import LoadPolicy
from harness.pyref.crypto import public_of
from harness.pyref.device import Device, Endpoint
from harness.pyref.ipv4 import echo_request
from harness.pyref.messages import RESPONSE
from harness.pyref.noise import create_initiation

A_EP: Endpoint = ("198.18.0.1", 51820)
B_EP: Endpoint = ("198.18.0.2", 51821)


def _connected_pair() -> tuple[Device, Device]:
    ka, kb = os.urandom(32), os.urandom(32)
    a, b = Device(ka, os.urandom), Device(kb, os.urandom)
    a.add_peer(public_of(kb), ["198.19.0.2/32"], B_EP)
    b.add_peer(public_of(ka), ["198.19.0.1/32"], A_EP)
    flights = [(b, d, A_EP) for d, _ in a.send_packet(echo_request("198.19.0.1", "198.19.0.2", 1, 1), 0.0)]
    while flights:
        dev, d, src = flights.pop(0)
        more, _ = dev.receive_datagram(d, src, 0.0)
        other, mine = (a, B_EP) if dev is b else (b, A_EP)
        flights += [(other, m, mine) for m, _ in more]
    return a, b


def per_packet(n: int) -> tuple[float, float]:
    """(seal µs, open µs) per 1420-byte packet."""
    a, b = _connected_pair()
    packet = echo_request("198.19.0.1", "198.19.0.2", 1, 1, bytes(1420 - 28))
    send = a.send_packet
    t0 = time.perf_counter()
    wires = [send(packet, 1.0)[0][0] for _ in range(n)]
    t1 = time.perf_counter()
    receive = b.receive_datagram
    for w in wires:
        receive(w, A_EP, 1.0)
    t2 = time.perf_counter()
    return (t1 - t0) / n * 1e6, (t2 - t1) / n * 1e6


def handshake_rate(n: int) -> float:
    """Initiations answered with a handshake response per second by one device with
    n distinct peers configured. Each message goes in alone (nothing waiting behind it),
    so the device is never under load and answers every one with Diffie-Hellman, not a
    cheap cookie reply."""
    responder_key = os.urandom(32)
    responder = Device(responder_key, os.urandom, load_policy=LoadPolicy())
    server_public = public_of(responder_key)
    messages = []
    for i in range(n):
        key = os.urandom(32)
        responder.add_peer(public_of(key), [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}/32"])
        msg, _ = create_initiation(key, server_public, os.urandom(32), i, 1_800_000_000.0)
        messages.append(msg.encode())
    receive = responder.receive_datagram
    t0 = time.perf_counter()
    answered = 0
    for m in messages:
        out, _ = receive(m, A_EP, 1.0)
        answered += bool(out) and out[0][0][0] == RESPONSE
    elapsed = time.perf_counter() - t0
    if answered != n:
        raise SystemExit(f"only {answered} of {n} initiations were answered")
    return n / elapsed


def bytes_per_peer(n: int) -> float:
    """Memory (traced Python allocations) per configured peer with one allowed IP."""
    keys = [public_of(os.urandom(32)) for _ in range(n)]
    device = Device(os.urandom(32), os.urandom)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i, key in enumerate(keys):
        device.add_peer(key, [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}/32"])
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / n


def _rounds(fn: Callable[[], float], rounds: int) -> dict[str, float]:
    values = [fn() for _ in range(rounds)]
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--packets", type=int, default=50_000)
    p.add_argument("--handshakes", type=int, default=2_000)
    p.add_argument("--peers", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args()
    pp = [per_packet(args.packets) for _ in range(args.rounds)]
    figures = {
        "seal_us_per_packet": _rounds(iter([x for x, _ in pp]).__next__, args.rounds),
        "open_us_per_packet": _rounds(iter([y for _, y in pp]).__next__, args.rounds),
        "handshake_responses_per_s": _rounds(lambda: handshake_rate(args.handshakes), args.rounds),
        "bytes_per_peer": _rounds(lambda: bytes_per_peer(args.peers), min(args.rounds, 3)),
    }
    for name, f in figures.items():
        print(f"{name:28s} {f['median']:12.2f}   (min {f['min']:.2f}, max {f['max']:.2f})")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")  # fmt: skip
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"figures": figures, "args": vars(args)}, fh, indent=2)


if __name__ == "__main__":
    main()
