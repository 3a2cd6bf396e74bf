"""What change-point detection costs per series, as `report` and `nightly` run it on
every series of a lab (harness/results/changes.py, `change_points`):

  python benchmarks/changes_cost.py [--lengths 30,100,300,1000] [--repeat 5] [--seed 1]

For each history length, a flat series and one with a -10% step in the middle
(noise: normal, CV 5%), and each run twice: ``cold`` in a fresh process's caches
(the permutation nulls are cached by window length) and ``warm`` again after it.
Prints a Markdown table of the median seconds per series over ``--repeat`` series.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.results import changes  # noqa: E402


def history(rng: np.random.Generator, n: int, step: float) -> np.ndarray:
    values = np.exp(rng.normal(0.0, 0.05, n))
    values[n // 2 :] *= 1 + step
    return values


def timed(values: np.ndarray) -> float:
    began = time.perf_counter()
    found = changes.find(values)
    if found:  # change_points also looks without the newest point
        changes.find(values[:-1])
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="30,100,300,1000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print("| builds | series | cold s (median) | warm s (median) |")
    print("|---|---|---|---|")
    for n in (int(x) for x in args.lengths.split(",")):
        for name, step in (("flat", 0.0), ("-10% step", -0.10)):
            cold, warm = [], []
            for _ in range(args.repeat):
                changes._null_without_ties.cache_clear()
                values = history(rng, n, step)
                cold.append(timed(values))
                warm.append(timed(values))
            print(f"| {n} | {name} | {statistics.median(cold):.3f} | {statistics.median(warm):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
