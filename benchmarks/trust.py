"""How far the comparison can be trusted, on synthetic samples:

  python benchmarks/trust.py [--trials 1000] [--cv 0.06]

For each repetition count n (per side), draws A/A pairs (same distribution)
and A/B pairs (B 10% slower) from a normal distribution with the given
coefficient of variation (0.06 is what the local lab shows run to run), runs
the same `judge` that `wgharness compare` uses (alpha 0.05, minimum effect 5%)
and prints the false-positive rate (A/A flagged as changed) and the detection
rate (A/B flagged as regressed) as a Markdown table.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.results.compare import judge  # noqa: E402
from harness.results.records import Direction  # noqa: E402


def rates(n: int, trials: int, shift: float, cv: float, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    for _ in range(trials):
        a = [rng.gauss(1.0, cv) for _ in range(n)]
        b = [rng.gauss(1.0 + shift, cv) for _ in range(n)]
        verdict = judge(a, b, Direction.HIGHER, "bit/s", 0.05, 0.05)[0]
        counts[verdict] = counts.get(verdict, 0) + 1
    return {k: v / trials for k, v in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--cv", type=float, default=0.06)
    args = parser.parse_args()
    print("| n per side | A/A false positives | A/A inconclusive | A/B -10% detected | A/B inconclusive |")
    print("|---|---|---|---|---|")
    for n in (3, 4, 5, 6, 8, 10, 15):
        aa = rates(n, args.trials, 0.0, args.cv, seed=n)
        ab = rates(n, args.trials, -0.10, args.cv, seed=1000 + n)
        fp = aa.get("regressed", 0) + aa.get("improved", 0)
        print(
            f"| {n} | {fp:.1%} | {aa.get('inconclusive', 0):.1%} | {ab.get('regressed', 0):.1%} "
            f"| {ab.get('inconclusive', 0):.1%} |"
        )


if __name__ == "__main__":
    main()
