"""Benchmarks of the harness's spine (issue: local lab), run as root:

  python benchmarks/spine.py updown   [--repeat N] [--lab labs/local.toml]
      lab up (hosts, link, tunnel, verified handshake) and down times.
  python benchmarks/spine.py overhead [--repeat N] [--duration S]
      one TCP flow measured by `wgharness run` against the same flow run by
      hand (benchmarks/hand_lab.sh), interleaved so drift hits both alike.

Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.lab.spec import load_lab  # noqa: E402
from harness.results.store import Store  # noqa: E402
from harness.run.orchestrator import LabInstance  # noqa: E402


def updown(args: argparse.Namespace) -> None:
    lab = load_lab(args.lab)
    ups, downs = [], []
    for _ in range(args.repeat):
        instance = LabInstance(lab)
        t0 = time.monotonic()
        instance.up()
        t1 = time.monotonic()
        instance.down()
        t2 = time.monotonic()
        ups.append(t1 - t0)
        downs.append(t2 - t1)
    print("| lab | n | up median (s) | up min-max | down median (s) | down min-max |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {lab.name} | {args.repeat} | {statistics.median(ups):.2f} | {min(ups):.2f}-{max(ups):.2f} "
        f"| {statistics.median(downs):.2f} | {min(downs):.2f}-{max(downs):.2f} |"
    )


def overhead(args: argparse.Namespace) -> None:
    harness, hand = [], []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        for _ in range(args.repeat):
            subprocess.run(
                [sys.executable, "-m", "harness", "run", str(ROOT / "benchmarks" / "overhead.toml"),
                 "--duration", str(args.duration), "--store", url],
                check=True, capture_output=True, cwd=ROOT,
            )  # fmt: skip
            store = Store.open(url)
            run = store.get_run("latest")
            harness += [m.value for m in run.measurements if m.metric == "receiver_bps"]
            store.close()
            out = subprocess.run(
                ["bash", str(ROOT / "benchmarks" / "hand_lab.sh"), str(args.duration), "1"],
                check=True,
                capture_output=True,
                text=True,
            )
            hand.append(float(out.stdout.strip().splitlines()[-1]))
    h, m = statistics.median(harness), statistics.median(hand)
    print("| path | n | median Mbit/s | min-max Mbit/s |")
    print("|---|---|---|---|")
    for name, values in (("wgharness run", harness), ("hand-run iperf3", hand)):
        print(
            f"| {name} | {len(values)} | {statistics.median(values) / 1e6:.1f} "
            f"| {min(values) / 1e6:.1f}-{max(values) / 1e6:.1f} |"
        )
    print(f"\nharness / hand = {h / m:.3f} ({(h / m - 1) * 100:+.1f}%)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("updown")
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--lab", default=str(ROOT / "labs" / "local.toml"))
    p.set_defaults(func=updown)
    p = sub.add_parser("overhead")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--duration", type=int, default=10)
    p.set_defaults(func=overhead)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
