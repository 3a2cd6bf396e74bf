"""The socket filter that sheds a flood (`harness/pyref/io/sockfilter.py`): the
program's shape, and what a real socket on loopback keeps with it (IPv4 here;
IPv6, whose /64 needs addresses of its own, in a fresh namespace as root)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from harness.pyref.io import sockfilter
from tests.support.netns_child import run_in_namespace

ROUNDS = 8
PER_ROUND = 50
"""Datagrams of each kind sent per round, then read: well within a default receive buffer."""


def test_an_empty_table_has_no_program() -> None:
    assert sockfilter.program({}, socket.AF_INET) == []
    # a table with only IPv6 sources has nothing for an IPv4 socket, and the reverse
    assert sockfilter.program({bytes(8): 2}, socket.AF_INET) == []
    assert sockfilter.program({bytes(4): 2}, socket.AF_INET6) == []


def test_the_program_compares_each_source_and_has_one_tail_per_k() -> None:
    table = {bytes([10, 0, 0, 1]): 4, bytes([10, 0, 0, 2]): 4, bytes([10, 0, 0, 3]): 16}
    v4 = sockfilter.program(table, socket.AF_INET)
    assert len(v4) == 3 + 2 * 3 + 1 + 5 * 2  # head, a comparison per source, KEEP, a tail per K
    assert [k for op, _, _, k in v4 if op == sockfilter.ALU_AND_K] == [3, 15]
    v6 = sockfilter.program({bytes.fromhex("20010db800000001"): 8}, socket.AF_INET6)
    assert len(v6) == 3 + 4 + 1 + 5
    assert (sockfilter.JEQ_K, 0, 2, 0x20010DB8) in v6


@pytest.mark.parametrize("k", [0, 1, 3, 12])
def test_keep_one_in_must_be_a_power_of_two(k: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        sockfilter.program({bytes(4): k}, socket.AF_INET)


def kept_by_kind(receiver: socket.socket, senders: dict[str, socket.socket]) -> dict[str, int]:
    """Send PER_ROUND datagrams of each WireGuard message type (0 to 4) from each sender,
    ROUNDS times, reading everything after each PER_ROUND; how many of each arrived."""
    kept = {f"{name}/{kind}": 0 for name in senders for kind in range(5)}
    target = receiver.getsockname()[:2]
    for _ in range(ROUNDS):
        for name, sender in senders.items():
            for kind in range(5):
                for _ in range(PER_ROUND):
                    sender.sendto(bytes([kind]) + bytes(40), target)
                time.sleep(0.005)  # loopback delivers at once; the sleep only makes sure
                while True:
                    try:
                        data = receiver.recv(2048)
                    except BlockingIOError:
                        break
                    kept[f"{name}/{data[0]}"] += 1
    return kept


def check_thinning(kept: dict[str, int], thinned: str, k: int, others: list[str]) -> None:
    sent = ROUNDS * PER_ROUND
    for kind in (0, 3, 4):  # not a handshake message: never thinned
        assert kept[f"{thinned}/{kind}"] == sent
    for kind in (1, 2):  # one in k, give or take (binomial: 100 +- 9 for 400 at k = 4)
        assert sent / k / 2 < kept[f"{thinned}/{kind}"] < sent / k * 2, kept
    for name in others:
        assert all(kept[f"{name}/{kind}"] == sent for kind in range(5)), kept


def test_an_ipv4_source_is_thinned_and_the_others_pass() -> None:
    """On this host's loopback: 127.0.0.2's initiations and responses, one in 4; its other
    datagrams and everything from 127.0.0.3 pass. The drops count in SO_MEMINFO."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer,
    ):
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        flood.bind(("127.0.0.2", 0))
        peer.bind(("127.0.0.3", 0))
        sockfilter.apply(rx, {socket.inet_aton("127.0.0.2"): 4})
        kept = kept_by_kind(rx, {"flood": flood, "peer": peer})
        check_thinning(kept, "flood", 4, ["peer"])
        queued, size, drops = sockfilter.fill(rx)
        assert queued == 0 and size > 0
        assert drops == ROUNDS * PER_ROUND * 2 - kept["flood/1"] - kept["flood/2"]
        sockfilter.apply(rx, {})  # detached: everything passes again
        sockfilter.apply(rx, {})  # detaching twice is no error
        again = kept_by_kind(rx, {"flood": flood})
        assert set(again.values()) == {ROUNDS * PER_ROUND}


def ipv6_check() -> dict[str, int]:
    """Runs in a fresh namespace (a child process): two sources in one /64, one in another."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for address in ("2001:db8:0:1::1", "2001:db8:0:1::2", "2001:db8:0:2::1"):
        subprocess.run(["ip", "-6", "address", "add", f"{address}/128", "dev", "lo", "nodad"], check=True)
    socks = [socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) for _ in range(4)]
    rx, same, also, other = socks
    try:
        rx.bind(("::1", 0))
        rx.setblocking(False)
        same.bind(("2001:db8:0:1::1", 0))
        also.bind(("2001:db8:0:1::2", 0))
        other.bind(("2001:db8:0:2::1", 0))
        sockfilter.apply(rx, {bytes.fromhex("20010db800000001"): 2})
        return kept_by_kind(rx, {"same": same, "also": also, "other": other})
    finally:
        for s in socks:
            s.close()


def test_an_ipv6_64_is_thinned_and_the_others_pass(integration: None, no_leftovers: None) -> None:
    kept = run_in_namespace(__file__, "ipv6-check", name="filter")
    check_thinning(kept, "same", 2, ["other"])
    check_thinning(kept, "also", 2, [])


if __name__ == "__main__" and sys.argv[1:2] == ["ipv6-check"]:
    print(json.dumps(ipv6_check()))
