"""The loop shapes considered for the impairment relay, each reduced to one
direction of forwarding with an optional fixed delay, measured with the same
sender and receiver as benchmarks/relay_ceiling.py:

* ``selectors``: one thread, a selector over non-blocking sockets, each readable
  socket drained up to 64 datagrams, delayed datagrams on a heap whose earliest
  due time is the selector's timeout (the shape harness/impair/relay_loop.py has);
* ``asyncio``: a DatagramProtocol whose ``datagram_received`` sends at once or
  with ``loop.call_later``;
* ``threads``: a blocking receive thread per direction; with a delay, a heap
  and a condition variable shared with a sending thread.

  .venv/bin/python benchmarks/relay_loops.py [--shapes selectors,asyncio,threads] [--delays 0,5]
      [--sizes 1420,100] [--seconds S] [--rounds R]

``--delays`` in milliseconds; the real relay (``relay``) is measured alongside with
the same delay as an impairment. No root needed.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import json
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import relay_ceiling
from relay_ceiling import LOOPBACK, Address

from harness.impair.model import Impairment
from harness.impair.relay import Relay, RelayLeg
from harness.impair.relay_loop import kernel_drops
from harness.targets.local import LocalTarget


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((LOOPBACK, 0))
    return sock


def serve_selectors(
    rx: socket.socket, tx: socket.socket, dest: Address, delay: float, stop: list[int]
) -> int:
    rx.setblocking(False)
    wake_r, wake_w = socket.socketpair()  # a signal ends the selector's wait, as in the relay
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    sel = selectors.DefaultSelector()
    sel.register(rx, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    heap: list[tuple[float, int, bytes]] = []
    order, count, clock = itertools.count(), 0, time.monotonic
    while not stop:
        sel.select(max(0.0, heap[0][0] - clock()) if heap else None)
        for _ in range(64):
            try:
                data = rx.recv(65535)
            except BlockingIOError:
                break
            count += 1
            if delay:
                heapq.heappush(heap, (clock() + delay, next(order), data))
            else:
                tx.sendto(data, dest)
        now = clock()
        while heap and heap[0][0] <= now:
            tx.sendto(heapq.heappop(heap)[2], dest)
    return count


def serve_asyncio(rx: socket.socket, tx: socket.socket, dest: Address, delay: float, stop: list[int]) -> int:
    count = 0
    loop: Any = None
    out: Any = None

    class Forward(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            nonlocal count
            count += 1
            if delay:
                loop.call_later(delay, out.sendto, data, dest)
            else:
                out.sendto(data, dest)

    async def main() -> None:
        nonlocal loop, out
        loop = asyncio.get_running_loop()
        out, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=tx)
        await loop.create_datagram_endpoint(Forward, sock=rx)
        done = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, done.set)
        await done.wait()

    asyncio.run(main())
    return count


def serve_threads(rx: socket.socket, tx: socket.socket, dest: Address, delay: float, stop: list[int]) -> int:
    count = 0
    heap: list[tuple[float, int, bytes]] = []
    ready = threading.Condition()
    order = itertools.count()

    def receive() -> None:
        nonlocal count
        while True:
            data = rx.recv(65535)
            count += 1
            if not delay:
                tx.sendto(data, dest)
                continue
            with ready:
                heapq.heappush(heap, (time.monotonic() + delay, next(order), data))
                ready.notify()

    def release() -> None:
        while True:
            with ready:
                while not heap or heap[0][0] > time.monotonic():
                    ready.wait(heap[0][0] - time.monotonic() if heap else None)
                data = heapq.heappop(heap)[2]
            tx.sendto(data, dest)

    for work in (receive, release) if delay else (receive,):
        threading.Thread(target=work, daemon=True).start()
    while not stop:
        time.sleep(0.05)
    return count


SHAPES: dict[str, Callable[[socket.socket, socket.socket, Address, float, list[int]], int]] = {
    "selectors": serve_selectors,
    "asyncio": serve_asyncio,
    "threads": serve_threads,
}


def serve(shape: str, dest: Address, delay: float) -> None:
    """The forwarding process: prints its port, forwards until SIGTERM, prints its count."""
    stop: list[int] = []
    if shape != "asyncio":  # asyncio installs its own handlers
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda n, _f: stop.append(n))
    rx, tx = _socket(), _socket()
    watch = rx.dup()  # the same socket, still open after asyncio has closed rx
    print(rx.getsockname()[1], flush=True)
    count = SHAPES[shape](rx, tx, dest, delay, stop)
    print(json.dumps({"received": count, "overflow": kernel_drops(watch)}), flush=True)


def shape_forwarder(shape: str, delay: float) -> relay_ceiling.Forwarder:
    def start(dest: Address) -> tuple[Address, Callable[[], dict[str, Any]]]:
        argv = [
            sys.executable,
            __file__,
            "--serve",
            shape,
            "--to",
            f"{dest[0]}:{dest[1]}",
            "--delay",
            str(delay),
        ]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        port = int(proc.stdout.readline())

        def stop() -> dict[str, Any]:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
            return dict(json.loads(out.strip().splitlines()[-1]))

        return (LOOPBACK, port), stop

    return start


def relay_forwarder(delay: float) -> relay_ceiling.Forwarder:
    def start(dest: Address) -> tuple[Address, Callable[[], dict[str, Any]]]:
        imp = Impairment(delay_ms=delay * 1000)
        relay = Relay(
            LocalTarget("local"), RelayLeg((LOOPBACK, 0), (LOOPBACK, 9)), RelayLeg((LOOPBACK, 0), dest), imp
        )
        relay.start()

        def stop() -> dict[str, Any]:
            stats = relay.stop().a_to_b
            return {"received": stats.received, "overflow": stats.overflow}

        return relay.bound[0], stop

    return start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default="selectors,asyncio,threads,relay")
    p.add_argument("--delays", default="0,5", help="milliseconds, comma-separated")
    p.add_argument("--sizes", default="1420,100")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--serve", choices=sorted(SHAPES), help=argparse.SUPPRESS)
    p.add_argument("--to", help=argparse.SUPPRESS)
    p.add_argument("--delay", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        host, _, port = args.to.rpartition(":")
        serve(args.serve, (host, int(port)), args.delay)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    forwarders = {}
    for delay_ms in (float(d) for d in args.delays.split(",")):
        for shape in args.shapes.split(","):
            delay = delay_ms / 1000
            make = relay_forwarder(delay) if shape == "relay" else shape_forwarder(shape, delay)
            forwarders[f"{shape} {delay_ms:g}ms"] = make
    relay_ceiling.run(forwarders, sizes, args.seconds, args.rounds)


if __name__ == "__main__":
    main()
