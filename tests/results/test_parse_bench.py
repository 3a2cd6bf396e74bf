"""How long the parsers take: measurements only (pytest-benchmark), no timing asserts.

`wg show IF dump` of a 10,000-peer interface is synthetic; the iperf3 JSON is a
real capture (4 streams).
"""

from __future__ import annotations

import base64

from pytest_benchmark.fixture import BenchmarkFixture

from harness.parsers.iperf import parse_iperf_json
from harness.parsers.wgdump import parse_wg_dump
from tests.support.paths import DATA

PEERS = 10_000


def _key(n: int) -> str:
    return base64.b64encode(n.to_bytes(32, "little")).decode()


def synthetic_dump(peers: int) -> str:
    """An interface line and ``peers`` peer lines, every third without endpoint or handshake."""
    lines = [f"{_key(1 << 255)}\t{_key((1 << 255) + 1)}\t51820\toff"]
    for i in range(peers):
        a, b = divmod(i, 250)
        if i % 3 == 2:
            endpoint, handshake = "(none)", 0
        else:
            endpoint, handshake = f"198.18.{a % 256}.{b + 1}:{20000 + i % 40000}", 1795556672 + i
        allowed = f"10.{a % 256}.{b}.0/24,fd00:{i:x}::/64"
        counters = f"{handshake}\t{i * 1000}\t{i * 2000}"
        lines.append(f"{_key(i + 2)}\t(none)\t{endpoint}\t{allowed}\t{counters}\toff")
    return "\n".join(lines) + "\n"


def test_bench_parse_wg_dump_10k_peers(benchmark: BenchmarkFixture) -> None:
    text = synthetic_dump(PEERS)
    dump = benchmark(parse_wg_dump, text)
    assert len(dump.peers) == PEERS
    assert dump.listen_port == 51820
    last = dump.peers[-1]
    assert last.public_key == _key(PEERS + 1)
    assert last.rx_bytes == (PEERS - 1) * 1000 and last.tx_bytes == (PEERS - 1) * 2000
    assert sum(1 for p in dump.peers if p.endpoint is None) == PEERS // 3
    assert dump.peers[0].allowed_ips == ("10.0.0.0/24", "fd00:0::/64")


def test_bench_parse_iperf_json_tcp4(benchmark: BenchmarkFixture) -> None:
    text = (DATA / "iperf3" / "tcp4.json").read_text()
    result = benchmark(parse_iperf_json, text)
    assert result.streams == 4
    (forward,) = result.directions
    assert forward.direction == "forward"
    assert forward.retransmits == 43531
    assert len(forward.intervals) == 4 and forward.intervals[0].omitted
