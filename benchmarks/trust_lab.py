"""A/A and A/B on real local-lab measurements, interleaved:

  python benchmarks/trust_lab.py [--pairs 30] [--duration 3] [--save FILE.json]

One local lab (benchmarks/overhead.toml: one TCP flow through wireguard-go)
stays up. A is the plain link; B is the same link with a tbf rate limit
calibrated so B is about 10% slower than A. Samples alternate A, B, A, B...
so drift hits both alike. Then, from these real samples, many comparisons are
drawn with the same `judge` as `wgharness compare` (alpha 0.05, minimum
effect 5%): A/A (two disjoint draws from A) for the false-positive rate, and
A/B for the detection rate, at each number of repetitions per side.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.lab.spec import link_frame_bytes, load_lab  # noqa: E402
from harness.results.compare import judge  # noqa: E402
from harness.results.records import Direction  # noqa: E402
from harness.run.orchestrator import LabInstance  # noqa: E402
from harness.run.throughput import run_flow  # noqa: E402
from harness.targets.links import tbf_burst_bytes  # noqa: E402

# TCP payload bytes per link byte through the tunnel at MTU 1420: 1420-byte inner
# packets carry 1368 bytes of TCP payload (IPv4 20 + TCP 20 + timestamps 12) and
# leave as an Ethernet frame of link_frame_bytes(1420) on the veth, what tbf counts.
GOODPUT_PER_LINK_BYTE = 1368 / link_frame_bytes(1420)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--duration", type=int, default=3)
    parser.add_argument("--save", help="write the raw samples here (JSON)")
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args()

    lab = load_lab(ROOT / "benchmarks" / "overhead.toml")
    params = replace(lab.suites[0].params, duration=args.duration)
    flow = params.flows[0]
    inst = LabInstance(lab)
    inst.up()
    try:
        a, b = inst.ends
        link_hosts = [
            (inst.hosts["a"], inst.link_ifname(0, "a")),
            (inst.hosts["b"], inst.link_ifname(0, "b")),
        ]

        def sample() -> float:
            return run_flow(a.host, b.host, b.inner_ip, flow, params).result.directions[0].receiver_bps

        def limit(rate_bps: int | None) -> None:
            for host, ifname in link_hosts:
                if rate_bps is None:
                    host.run(["tc", "qdisc", "del", "dev", ifname, "root"])
                else:
                    host.check(["tc", "qdisc", "replace", "dev", ifname, "root", "tbf", "rate", f"{rate_bps}bit",
                                "burst", str(tbf_burst_bytes(rate_bps)), "latency", "50ms"])  # fmt: skip

        base = statistics.median(sample() for _ in range(5))
        rate = int(0.9 * base / GOODPUT_PER_LINK_BYTE)
        for _ in range(3):  # calibrate the limit to a 10% slowdown
            limit(rate)
            got = statistics.median(sample() for _ in range(3))
            limit(None)
            print(
                f"calibration: A {base / 1e6:.0f} Mbit/s, limit {rate / 1e6:.0f} Mbit/s -> B {got / 1e6:.0f}",
                file=sys.stderr,
            )
            if abs(got / base - 0.9) < 0.02:
                break
            rate = int(rate * 0.9 * base / got)
        A: list[float] = []
        B: list[float] = []
        for i in range(args.pairs):
            order = ("A", "B") if i % 2 == 0 else ("B", "A")
            for side in order:
                limit(rate if side == "B" else None)
                (B if side == "B" else A).append(sample())
            limit(None)
        print(
            f"pair {args.pairs}: A median {statistics.median(A) / 1e6:.0f}, B median {statistics.median(B) / 1e6:.0f}",
            file=sys.stderr,
        )
    finally:
        inst.down()

    if args.save:
        Path(args.save).write_text(json.dumps({"A": A, "B": B, "limit_bps": rate, "duration": args.duration}))
    rng = random.Random(7)
    cv = statistics.stdev(A) / statistics.mean(A)
    print(f"A: n={len(A)}, median {statistics.median(A) / 1e6:.1f} Mbit/s, CV {cv:.1%}; "
          f"B: n={len(B)}, median {statistics.median(B) / 1e6:.1f} Mbit/s "
          f"({statistics.median(B) / statistics.median(A) - 1:+.1%}); tbf limit {rate / 1e6:.0f} Mbit/s\n")  # fmt: skip
    print(
        "| n per side | A/A false positives | A/A inconclusive | A/B regressed (detected) | A/B inconclusive |"
    )
    print("|---|---|---|---|---|")
    for n in (3, 4, 5, 6, 8, 10):
        if 2 * n > len(A):
            break
        aa: dict[str, int] = {}
        ab: dict[str, int] = {}
        for _ in range(args.draws):
            draw = rng.sample(A, 2 * n)
            v = judge(draw[:n], draw[n:], Direction.HIGHER, "bit/s", 0.05, 0.05)[0]
            aa[v] = aa.get(v, 0) + 1
            v = judge(rng.sample(A, n), rng.sample(B, n), Direction.HIGHER, "bit/s", 0.05, 0.05)[0]
            ab[v] = ab.get(v, 0) + 1
        fp = (aa.get("regressed", 0) + aa.get("improved", 0)) / args.draws
        print(f"| {n} | {fp:.1%} | {aa.get('inconclusive', 0) / args.draws:.1%} "
              f"| {ab.get('regressed', 0) / args.draws:.1%} | {ab.get('inconclusive', 0) / args.draws:.1%} |")  # fmt: skip


if __name__ == "__main__":
    main()
