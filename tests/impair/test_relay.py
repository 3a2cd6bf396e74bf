"""The impairment relay for real: a relay process on this machine between two UDP
sockets of the test on loopback (and, as root, inside a namespace of its own).
Impairments are checked with statistical bounds wide enough never to fail by
chance (loss 10% over 10,000 datagrams: 8-12% is more than six standard
deviations), never with timings of the relay's own code, except that a delay
is a floor: nothing can arrive sooner."""

from __future__ import annotations

import os
import selectors
import socket
import statistics
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from harness.errors import InfraError
from harness.impair.model import Impairment
from harness.impair.relay import (
    CEILING_MBPS,
    CEILING_PPS,
    DirectionStats,
    Relay,
    RelayLeg,
    RelayStats,
    near_ceiling,
    parse_stats,
    relay_args,
)
from harness.impair.relay_loop import read_address, show_address
from harness.run.orchestrator import new_instance_id
from harness.targets.dry import DryRunLog
from harness.targets.local import LocalTarget
from harness.targets.netns import NetnsTarget

HEADER = struct.Struct("!Id")
"""Sequence number and send time (time.time) at the start of every datagram."""
SO_TIMESTAMPNS = 35
"""Linux: the kernel stamps each datagram with its arrival time (CLOCK_REALTIME), so a
delay is measured to the arrival, not to when the test got round to reading it."""
TIMESPEC = struct.Struct("qq")
WINDOW = 300
"""Datagrams a direction may have on their way (`Pair.send`)."""
QUIET = 0.5
"""Seconds without a datagram after which a receiver stops waiting (beyond any delay)."""


def udp_socket(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


def arrival(ancdata: list[tuple[int, int, bytes]]) -> float:
    """The kernel's arrival time of a datagram (time.time's clock)."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = TIMESPEC.unpack_from(data)
            return sec + nsec / 1e9
    raise AssertionError("no arrival time from the kernel")


@dataclass
class Received:
    """What one peer got: (sequence number, one-way delay) in order of arrival."""

    arrivals: list[tuple[int, float]] = field(default_factory=list)
    sources: set[tuple[str, int]] = field(default_factory=set)
    bytes: int = 0

    @property
    def seqs(self) -> list[int]:
        return [s for s, _ in self.arrivals]

    @property
    def delays(self) -> list[float]:
        return [d for _, d in self.arrivals]

    def out_of_order(self) -> int:
        """Arrivals with a sequence number below one seen before."""
        highest, count = -1, 0
        for seq in self.seqs:
            if seq < highest:
                count += 1
            highest = max(highest, seq)
        return count

    def duplicates(self) -> int:
        return len(self.seqs) - len(set(self.seqs))


@dataclass
class Pair:
    """Peer A and peer B as the test's own sockets, with the relay between them."""

    relay: Relay
    a: socket.socket
    b: socket.socket
    got: dict[str, Received] = field(default_factory=lambda: {"a": Received(), "b": Received()})

    def drain(self, wait: float = 0.0) -> int:
        """Read what has arrived at A and at B (waiting up to ``wait`` seconds for the
        first datagram); how many were read."""
        n = 0
        with selectors.DefaultSelector() as sel:
            sel.register(self.a, selectors.EVENT_READ, "a")
            sel.register(self.b, selectors.EVENT_READ, "b")
            for key, _ in sel.select(wait):
                sock, got = key.fileobj, self.got[key.data]
                assert isinstance(sock, socket.socket)
                while True:
                    try:
                        data, ancdata, _flags, source = sock.recvmsg(65535, socket.CMSG_SPACE(TIMESPEC.size))
                    except BlockingIOError:
                        break
                    seq, sent = HEADER.unpack_from(data)
                    got.arrivals.append((seq, arrival(ancdata) - sent))
                    got.sources.add(source[:2])
                    got.bytes += len(data)
                    n += 1
        return n

    def send(
        self, count: int, size: int = 100, a_to_b: bool = True, b_to_a: bool = True, gap: float = 0.0
    ) -> None:
        """``count`` datagrams of ``size`` bytes each way, numbered from 0, 100 at a time
        with what arrived read in between (``gap``: a pause after each datagram). No more
        than about `WINDOW` datagrams a direction are on their way at once (allowing for
        the configured loss), so that neither the relay's socket buffer nor the test's
        overflows on a busy machine: the kernel would drop them, and count them as
        ``overflow``, not loss."""
        pad = bytes(size - HEADER.size)
        keep = 1 - self.relay.impairment.loss_pct / 100
        for seq in range(count):
            stamp = HEADER.pack(seq, time.time()) + pad
            if a_to_b:
                self.a.sendto(stamp, self.relay.bound[0])
            if b_to_a:
                self.b.sendto(stamp, self.relay.bound[1])
            if gap:
                time.sleep(gap)
            if seq % 100 == 99:
                self.drain()
                deadline = time.monotonic() + 5.0
                while time.monotonic() < deadline and any(
                    len(self.got[end].arrivals) < keep * (seq + 1 - WINDOW)
                    for end, on in (("b", a_to_b), ("a", b_to_a))
                    if on
                ):
                    self.drain(0.05)

    def settle(self) -> None:
        """Read until nothing has come for `QUIET` seconds past the configured delay."""
        quiet = QUIET + (self.relay.impairment.delay_ms + self.relay.impairment.jitter_ms) / 1000
        while self.drain(quiet):
            pass


@contextmanager
def relayed(imp: Impairment, host: str = "127.0.0.1") -> Iterator[Pair]:
    a, b = udp_socket(host), udp_socket(host)
    relay = Relay(
        LocalTarget("local"),
        RelayLeg((host, 0), a.getsockname()[:2]),
        RelayLeg((host, 0), b.getsockname()[:2]),
        imp,
    )
    try:
        with relay:
            yield Pair(relay, a, b)
    finally:
        a.close()
        b.close()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def balanced(d: DirectionStats) -> bool:
    return d.received + d.duplicated == d.forwarded + d.dropped + d.send_errors + d.unsent


# -- without impairment ---------------------------------------------------------------


def test_forwards_both_ways_in_order_and_each_peer_sees_the_relay() -> None:
    with relayed(Impairment()) as pair:
        pair.send(2000)
        pair.settle()
        stats = pair.relay.stop()
    assert pair.got["b"].seqs == list(range(2000))
    assert pair.got["a"].seqs == list(range(2000))
    # Peer B hears from the relay's leg B, peer A from its leg A: each sees the relay as its peer.
    assert pair.got["b"].sources == {pair.relay.bound[1]}
    assert pair.got["a"].sources == {pair.relay.bound[0]}
    for d in (stats.a_to_b, stats.b_to_a):
        assert d == DirectionStats(2000, 2000, 0, 0, 0, 200_000, 0, 0, 0)
    assert gone(pair.relay.pid)


def test_ipv6_legs() -> None:
    with relayed(Impairment(), host="::1") as pair:
        pair.send(100, size=1420)
        pair.settle()
    assert pair.got["b"].seqs == pair.got["a"].seqs == list(range(100))
    assert pair.relay.bound[0][0] == "::1"


# -- each impairment ------------------------------------------------------------------


def test_loss_ten_percent_each_way_and_the_stats_match_the_receivers() -> None:
    with relayed(Impairment(loss_pct=10)) as pair:
        pair.send(10_000)
        pair.settle()
        stats = pair.relay.stop()
    for direction, receiver in ((stats.a_to_b, pair.got["b"]), (stats.b_to_a, pair.got["a"])):
        got = len(receiver.seqs)
        assert 0.08 <= 1 - got / 10_000 <= 0.12
        assert receiver.duplicates() == 0
        assert direction.received == 10_000
        assert direction.forwarded == got
        assert direction.dropped == 10_000 - got
        assert direction.bytes == receiver.bytes
        assert direction.overflow == 0 and direction.send_errors == 0
        assert balanced(direction)


def test_delay_fifty_ms_each_way_makes_a_round_trip_of_at_least_100_ms() -> None:
    with relayed(Impairment(delay_ms=50)) as pair:
        rtts = []
        for seq in range(10):
            t0 = time.monotonic()
            pair.a.sendto(HEADER.pack(seq, time.time()), pair.relay.bound[0])
            assert pair.drain(5.0) == 1  # at B
            pair.b.sendto(HEADER.pack(seq, time.time()), pair.relay.bound[1])  # B echoes
            assert pair.drain(5.0) == 1  # back at A
            rtts.append(time.monotonic() - t0)
    assert min(rtts) >= 0.100
    assert statistics.median(rtts) < 1.0  # not seconds: milliseconds were asked for


def test_delay_alone_keeps_the_order() -> None:
    with relayed(Impairment(delay_ms=20)) as pair:
        pair.send(500, b_to_a=False, gap=0.0005)
        pair.settle()
    assert pair.got["b"].seqs == list(range(500))
    assert min(pair.got["b"].delays) >= 0.020


def test_jitter_spreads_the_delay_and_reorders_like_netem() -> None:
    with relayed(Impairment(delay_ms=30, jitter_ms=20)) as pair:
        pair.send(500, b_to_a=False, gap=0.001)
        pair.settle()
    got = pair.got["b"]
    assert sorted(got.seqs) == list(range(500))
    delays = sorted(got.delays)
    assert delays[0] >= 0.010  # delay - jitter is the floor
    # Uniform over 10-50 ms: the middle 80% spans 32 ms; 20 ms leaves room for any noise.
    assert delays[449] - delays[50] >= 0.020
    # Datagrams 1 ms apart with delays 40 ms apart overtake each other.
    assert got.out_of_order() > 0


def test_duplicate_ten_percent_each_way() -> None:
    with relayed(Impairment(duplicate_pct=10)) as pair:
        pair.send(10_000)
        pair.settle()
        stats = pair.relay.stop()
    for direction, receiver in ((stats.a_to_b, pair.got["b"]), (stats.b_to_a, pair.got["a"])):
        assert sorted(set(receiver.seqs)) == list(range(10_000))  # nothing lost
        assert 0.08 <= receiver.duplicates() / 10_000 <= 0.12
        assert direction.duplicated == receiver.duplicates()
        assert direction.forwarded == len(receiver.seqs)
        assert balanced(direction)


def test_reorder_sends_some_ahead_and_loses_none() -> None:
    with relayed(Impairment(delay_ms=20, reorder_pct=25)) as pair:
        pair.send(2000)
        pair.settle()
        stats = pair.relay.stop()
    for direction, receiver in ((stats.a_to_b, pair.got["b"]), (stats.b_to_a, pair.got["a"])):
        assert sorted(receiver.seqs) == list(range(2000))
        assert receiver.out_of_order() > 0
        assert 0.20 <= direction.reordered / 2000 <= 0.30
        # A datagram that came sooner than the delay can only be a reordered one.
        assert 0 < sum(d < 0.020 for d in receiver.delays) <= direction.reordered


# -- seeds, statistics, the process ----------------------------------------------------


def lost(imp: Impairment) -> tuple[set[int], int]:
    with relayed(imp) as pair:
        pair.send(1000, b_to_a=False)
        pair.settle()
        stats = pair.relay.stop()
    return set(range(1000)) - set(pair.got["b"].seqs), stats.seed


def test_a_seed_repeats_the_draws() -> None:
    first, seed = lost(Impairment(loss_pct=30))  # the relay picks a seed and reports it
    again, same = lost(Impairment(loss_pct=30, seed=seed))
    assert (again, same) == (first, seed)
    other, _ = lost(Impairment(loss_pct=30, seed=seed + 1))
    assert other != first


def test_datagrams_still_delayed_at_the_stop_are_counted_unsent() -> None:
    with relayed(Impairment(delay_ms=5000)) as pair:
        pair.send(10, b_to_a=False)
        time.sleep(0.2)
        stats = pair.relay.stop()
    assert (stats.a_to_b.received, stats.a_to_b.forwarded, stats.a_to_b.unsent) == (10, 0, 10)
    assert balanced(stats.a_to_b)


def test_start_fails_with_one_line_when_a_leg_cannot_bind() -> None:
    peer = udp_socket()
    taken = peer.getsockname()
    try:
        relay = Relay(
            LocalTarget("local"), RelayLeg(taken, taken), RelayLeg(("127.0.0.1", 0), taken), Impairment()
        )
        with pytest.raises(
            InfraError, match=r"cannot bind leg A to 127\.0\.0\.1:\d+: Address already in use"
        ) as err:
            relay.start()
        assert "\n" not in str(err.value)
        # 192.0.2.1 (TEST-NET-1) is no address of this machine: nothing is ever sent to it.
        relay = Relay(
            LocalTarget("local"),
            RelayLeg(("127.0.0.1", 0), taken),
            RelayLeg(("192.0.2.1", 0), taken),
            Impairment(),
        )
        with pytest.raises(
            InfraError, match="cannot bind leg B to 192.0.2.1:0: Cannot assign requested address"
        ):
            relay.start()
        with pytest.raises(RuntimeError):
            relay.pid  # noqa: B018 (nothing was started)
    finally:
        peer.close()


def test_stop_twice_gives_the_same_stats_and_the_process_is_gone() -> None:
    with relayed(Impairment(loss_pct=50)) as pair:
        pid = pair.relay.pid
        pair.send(100)
        pair.settle()
        stats = pair.relay.stop()
        assert pair.relay.stop() is stats
    assert gone(pid)
    assert stats.a_to_b.received == stats.b_to_a.received == 100
    assert stats.received == 200
    assert not stats.saturated


def test_the_command_line_round_trip() -> None:
    a = RelayLeg(("::1", 0), ("::1", 51820))
    b = RelayLeg(("10.0.0.1", 5000), ("10.0.0.2", 51821))
    imp = Impairment(delay_ms=12.5, jitter_ms=2, reorder_pct=1, seed=3)
    args = relay_args(a, b, imp)
    assert args == [
        "--a", "[::1]:0", "--a-to", "[::1]:51820", "--b", "10.0.0.1:5000", "--b-to", "10.0.0.2:51821",
        "--delay-ms", "12.5", "--jitter-ms", "2", "--reorder-pct", "1", "--seed", "3",
    ]  # fmt: skip
    assert read_address(show_address(("fe80::1", 9))) == ("fe80::1", 9)
    with pytest.raises(ValueError):
        read_address("10.0.0.1")
    with pytest.raises(ValueError):
        RelayLeg(("10.0.0.1", 1), ("::1", 2))  # one socket cannot send to the other family


def test_the_process_refuses_bad_arguments() -> None:
    argv = [sys.executable, "-m", "harness.impair.relay", "--a", "127.0.0.1:0", "--a-to", "127.0.0.1:9"]
    argv += ["--b", "127.0.0.1:0", "--b-to", "127.0.0.1:9", "--loss-pct", "200"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "loss_pct: must be a percentage from 0 to 100" in done.stderr


def test_parse_stats_refuses_other_lines() -> None:
    with pytest.raises(ValueError, match="not the relay's statistics"):
        parse_stats('{"event": "ready", "a": ["127.0.0.1", 1]}')
    with pytest.raises(ValueError):
        parse_stats("Traceback (most recent call last):")


def test_a_dry_run_records_the_command_and_starts_nothing() -> None:
    log = DryRunLog()
    relay = Relay(
        LocalTarget("local", dry=log),
        RelayLeg(("127.0.0.1", 0), ("127.0.0.1", 9)),
        RelayLeg(("127.0.0.1", 0), ("127.0.0.1", 9)),
        Impairment(loss_pct=1),
    )
    with relay:
        pass
    assert isinstance(relay.stop(), RelayStats)
    lines = [line for _, line in log.entries]
    assert any("-m harness.impair.relay" in line and "--loss-pct 1" in line for line in lines)


def test_near_ceiling() -> None:
    assert CEILING_MBPS > 0 and CEILING_PPS > 0
    assert near_ceiling(None) is None
    assert near_ceiling(0.5 * CEILING_MBPS * 1e6) is None
    warning = near_ceiling(0.8 * CEILING_MBPS * 1e6)
    assert warning is not None and "80%" in warning and "relay" in warning and "\n" not in warning
    by_packets = near_ceiling(None, 0.9 * CEILING_PPS)
    assert by_packets is not None and "90%" in by_packets and "packets/s" in by_packets


# -- as root: inside a namespace of its own ---------------------------------------------

PEERS = textwrap.dedent(
    """
    import json, socket, sys, time
    relay_a, relay_b = ("198.18.0.1", int(sys.argv[1])), ("198.18.0.2", int(sys.argv[2]))
    a, b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for sock, address in ((a, ("198.18.0.1", 41001)), (b, ("198.18.0.2", 41002))):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind(address)
    for i in range(500):
        a.sendto(b"%d" % i, relay_a); b.sendto(b"%d" % i, relay_b)
        if i % 50 == 49:
            time.sleep(0.01)
    got = {"a": [], "b": []}
    for name, sock in (("a", a), ("b", b)):
        sock.settimeout(1.0)
        try:
            while True:
                data, source = sock.recvfrom(100)
                got[name].append([int(data), list(source)])
        except socket.timeout:
            pass
    print(json.dumps(got))
    """
)


def test_on_a_netns_target_between_two_addresses_of_the_namespace(no_leftovers: None) -> None:
    import json

    host = NetnsTarget("relay", f"wgh-{new_instance_id()}-relay")
    try:
        host.setup()
        for address in ("198.18.0.1/32", "198.18.0.2/32"):
            host.check(["ip", "address", "add", address, "dev", "lo"])
        relay = Relay(
            host,
            RelayLeg(("198.18.0.1", 0), ("198.18.0.1", 41001)),
            RelayLeg(("198.18.0.2", 0), ("198.18.0.2", 41002)),
            Impairment(delay_ms=5),
        )
        with relay:
            pid = relay.pid
            assert pid in host.pids()
            ports = [str(relay.bound[0][1]), str(relay.bound[1][1])]
            got = json.loads(host.check([sys.executable, "-c", PEERS, *ports], timeout=60).stdout)
            stats = relay.stop()
        assert pid not in host.pids() and gone(pid)
        assert [seq for seq, _ in got["b"]] == [seq for seq, _ in got["a"]] == list(range(500))
        assert {tuple(source) for _, source in got["b"]} == {("198.18.0.2", relay.bound[1][1])}
        assert {tuple(source) for _, source in got["a"]} == {("198.18.0.1", relay.bound[0][1])}
        assert stats.a_to_b.forwarded == stats.b_to_a.forwarded == 500
    finally:
        host.teardown()
