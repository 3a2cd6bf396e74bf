"""Real adaptive nightly comparisons on the local lab, one after another:

  python benchmarks/rounds_lab.py [--comparisons 60] [--slowdown 0] [--rate 200mbit]
                                  [--duration 1] [--max-rounds 20] [--json FILE] [--lock FILE]

Each comparison is one real `wgharness nightly --rounds adaptive` (a lab brought
up, rounds of A B B A / B A A B until the metric is decided or the cap, the lab
torn down), on a copy of labs/local-variants.toml whose link is limited by tbf
to ``--rate`` (a limited link is steadier than a free one, so a comparison
decides in fewer rounds: the issue allows it to make 60 comparisons affordable).

``--slowdown 0`` is A/A: both builds are Debian's wireguard-go. ``--slowdown
0.1`` makes B a stand-in for a 10% slower build: a wrapper that starts
wireguard-go and limits its tunnel interface with tbf to (1 - slowdown) times the
rate the link allows in inner bytes; the change each comparison estimated is
reported, so the slowdown achieved is measured, not assumed.

Each nightly measures under this machine's benchmark lock (`harness.run.hostlock`),
as any nightly does, so no other lab measures beside it; ``--lock FILE``
also holds FILE (flock) around each comparison, e.g. the test suite's
/tmp/wgh-integration.lock, to keep integration tests off the machine meanwhile.
Prints one Markdown row of outcomes and rounds (and progress on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scipy.stats import beta  # noqa: E402

from harness.codec import from_json  # noqa: E402
from harness.lab.spec import link_frame_bytes, parse_rate  # noqa: E402
from harness.results.rounds import ROUNDS_ARTIFACT, RoundsReport  # noqa: E402
from harness.results.store import Store  # noqa: E402

# tbf on the link counts the Ethernet frame of each 1420-byte inner packet; on the
# tunnel interface it counts the inner packet itself.
INNER_PER_LINK_BYTE = 1420 / link_frame_bytes(1420)

WRAPPER = """#!/bin/sh
# wireguard-go whose tunnel interface sends at most {rate} bit/s (tbf): a stand-in
# for a slower build (benchmarks/rounds_lab.py)
case "$1" in -*|"") exec /usr/bin/wireguard-go "$@" ;; esac
( i=0; while [ $i -lt 100 ]; do
    tc qdisc replace dev "$1" root tbf rate {rate}bit burst 64kb latency 50ms 2>/dev/null && exit 0
    i=$((i + 1)); sleep 0.05; done ) &
exec /usr/bin/wireguard-go "$@"
"""


def lab_text(rate: str, duration: int, program_b: str) -> str:
    base = (ROOT / "labs" / "local-variants.toml").read_text()
    base = base.replace('name = "local-variants"', 'name = "rounds-lab"')
    base = base.replace('b_address = "198.18.0.2/24"\n', f'b_address = "198.18.0.2/24"\nrate = "{rate}"\n', 1)
    base = base.replace(
        'build = "debian-b"\nprogram = "/usr/bin/wireguard-go"',
        f'build = "debian-b"\nprogram = "{program_b}"',
    )
    base = base.replace("duration = 3", f"duration = {duration}")
    return base


def one(i: int, lab: Path, store: str, out: Path, args: argparse.Namespace) -> dict[str, object]:
    cmd = [
        str(ROOT / ".venv" / "bin" / "wgharness"),
        "nightly",
        str(lab),
        "--build", "debian-b", "--baseline", "build:debian-a",
        "--rounds", "adaptive", "--max-rounds", str(args.max_rounds),
        "--store", store, "--out", str(out / f"night-{i}"),
        "--runner", "rounds-lab",
    ]  # fmt: skip
    with contextlib.ExitStack() as stack:
        if args.lock:
            fcntl.flock(stack.enter_context(open(args.lock, "w")), fcntl.LOCK_EX)
        started = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        seconds = time.monotonic() - started
    db = Store.open(store, create=False)
    run = db.list_runs(limit=1)[0]
    report = from_json(db.get_artifact(run.id, ROUNDS_ARTIFACT), RoundsReport)
    m = report.metrics[0]
    return {
        "exit": proc.returncode,
        "outcome": m.label,
        "rounds": m.decision.rounds,
        "change": m.decision.change,
        "seconds": round(seconds, 1),
        "run": run.id,
        "round_changes": [statistics.fmean(r.b) / statistics.fmean(r.a) - 1 for r in m.rounds if r.a and r.b],
    }


def upper_95(k: int, n: int) -> float:
    """Clopper–Pearson: the one-sided 95% upper bound on a rate seen k times in n."""
    return 1.0 if k >= n else float(beta.ppf(0.95, k + 1, n - k))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--comparisons", type=int, default=60)
    parser.add_argument("--slowdown", type=float, default=0.0)
    parser.add_argument("--rate", default="200mbit")
    parser.add_argument("--duration", type=int, default=1)
    parser.add_argument("--max-rounds", type=int, default=20)
    parser.add_argument("--json", help="write every comparison's outcome here")
    parser.add_argument("--lock", metavar="FILE", help="also hold this flock around each comparison")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("rounds_lab.py: needs root (network namespaces)")
    # SIGTERM unwinds as Ctrl-C does: the temporary directory is removed (a nightly
    # under way gets the signal from the terminal's process group, or ends alone).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    with tempfile.TemporaryDirectory(prefix="wgh-rounds-lab-") as tmp:
        work = Path(tmp)
        program_b = "/usr/bin/wireguard-go"
        if args.slowdown > 0:
            inner = parse_rate(args.rate) * INNER_PER_LINK_BYTE * (1 - args.slowdown)
            wrapper = work / "wireguard-go-slow"
            wrapper.write_text(WRAPPER.format(rate=int(inner)))
            wrapper.chmod(0o755)
            program_b = str(wrapper)
        lab = work / "lab.toml"
        lab.write_text(lab_text(args.rate, args.duration, program_b))
        store = f"sqlite:///{work / 'runs.db'}"
        rows = []
        for i in range(args.comparisons):
            row = one(i, lab, store, work, args)
            rows.append(row)
            print(
                f"{i + 1:3d}/{args.comparisons}: {row['outcome']:9s} after {row['rounds']:2d} rounds, "
                f"{row['change']:+.2%}, {row['seconds']:.0f} s (exit {row['exit']})",
                file=sys.stderr,
                flush=True,
            )

    n = len(rows)
    count = {
        o: sum(1 for r in rows if r["outcome"] == o) for o in ("regressed", "improved", "same", "unknown")
    }
    different = count["regressed"] + count["improved"]
    rounds = sorted(int(r["rounds"]) for r in rows)  # type: ignore[call-overload]
    p90 = rounds[min(n - 1, math.ceil(0.9 * n) - 1)]
    per_round = [c for r in rows for c in r["round_changes"]]  # type: ignore[attr-defined]
    minutes = statistics.fmean(float(r["seconds"]) for r in rows) / 60  # type: ignore[arg-type]
    what = "A/A" if args.slowdown == 0 else f"-{args.slowdown:.0%} (tbf on B's tunnel)"
    print(
        "| B vs A | comparisons | different | regressed | same | unknown at cap | "
        "rounds median | rounds p90 | mean change | per-round change sd | minutes per comparison |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {what} | {n} | {different} ({different / n:.1%}; 95% upper bound {upper_95(different, n):.1%}) "
        f"| {count['regressed']} ({count['regressed'] / n:.1%}) | {count['same']} ({count['same'] / n:.1%}) "
        f"| {count['unknown']} ({count['unknown'] / n:.1%}) | {statistics.median(rounds):g} | {p90} "
        f"| {statistics.fmean(float(r['change']) for r in rows):+.2%} "  # type: ignore[arg-type]
        f"| {statistics.stdev(per_round):.2%} | {minutes:.2f} |"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(vars(args) | {"comparisons": rows}, indent=1))


if __name__ == "__main__":
    main()
