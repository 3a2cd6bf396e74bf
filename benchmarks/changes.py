"""How `wgharness changes` (harness/results/changes.py) finds steps, on synthetic histories:

  python benchmarks/changes.py [--trials 500] [--cv 0.05,0.10] [--noise normal,t3,slow] [--seed 1]

One value per build (what a series judges: the median of a build's samples),
noise on its log with the run-to-run CV as standard deviation:
  normal  independent normal noise
  t3      Student-t with 3 degrees of freedom (heavy tails), scaled to the CV
  slow    a mixture: 90% normal, 10% slow runs (a normal mean 3 and standard
          deviation 2 of its standard deviations lower), scaled to the CV
  t3+ar0.5  half the variance an AR(1) drift from build to build (coefficient
          0.5), half t3: builds that are not independent (not in the default set)

Three Markdown tables, a row per noise model and CV:
1. Histories of 60 builds with 0, 1 or 2 steps (a third each) of 3-15% (size
   uniform, either way), each at least 10 builds from either end and from the
   other: precision (change points found within 2 builds of a step, each step
   matched once, of all found; and within 5), recall (within 2) by step size,
   and the share of the steps found that were found at exactly the right
   build. ``--trials`` histories a row.
2. Flat histories of 100 builds: false change points per 100 builds, looked at
   once at the end (``--trials`` a row); and per 100 nights, the new
   regressions a nightly job would be failed for, asking after every build from
   the 20th on (``--trials``/4 histories a row, 81 nights each).
3. After 40 flat builds, a step of -5%, -10% or -15%, or a drift of -10% over 7
   builds (a week of nightlies): asking after every build, the builds measured
   with the step when a new regression within 2 builds of it (the drift: of its
   week) is first reported, up to 30 (``--trials``/5 histories a row).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.results.changes import ALPHA, Found, appeared, find  # noqa: E402

SLOW_SHARE, SLOW_MEAN, SLOW_SD = 0.1, -3.0, 2.0
"""The slow runs of the "slow" model, in standard deviations of its normal part."""
TOLERANCE = 2
"""A change point within this many builds of a step finds it."""
SIZES = ((0.03, 0.06), (0.06, 0.10), (0.10, 0.15))
"""The step-size bands recall is shown by."""


def noise(rng: np.random.Generator, model: str, cv: float, n: int) -> np.ndarray:
    """Log-scale noise of ``n`` consecutive builds, standard deviation ``cv``."""
    if model == "normal":
        return rng.normal(0.0, cv, n)
    if model == "t3":
        return rng.standard_t(3, n) * cv / np.sqrt(3)
    if model == "t3+ar0.5":  # half the variance an AR(1) drift between consecutive builds
        drift = np.empty(n)
        drift[0] = rng.normal(0.0, cv / np.sqrt(2))
        steps = rng.normal(0.0, cv / np.sqrt(2) * np.sqrt(1 - 0.5**2), n)
        for i in range(1, n):
            drift[i] = 0.5 * drift[i - 1] + steps[i]
        return drift + noise(rng, "t3", cv / np.sqrt(2), n)
    if model != "slow":
        raise ValueError(f"noise {model!r}: expected normal, t3, slow or t3+ar0.5")
    p, m, s = SLOW_SHARE, SLOW_MEAN, SLOW_SD
    sd = cv / np.sqrt((1 - p) + p * s**2 + p * (1 - p) * m**2)
    slow = rng.random(n) < p
    return np.where(slow, rng.normal(m * sd, s * sd, n), rng.normal(0.0, sd, n))


def stepped(rng: np.random.Generator, model: str, cv: float, n: int, steps: dict[int, float]) -> np.ndarray:
    """A history of ``n`` builds at level 1 with noise, ``steps``: build index -> relative step."""
    log = noise(rng, model, cv, n)
    for at, by in steps.items():
        log[at:] += np.log1p(by)
    return np.exp(log)


def match(found: list[int], at: list[int], tolerance: int) -> list[int | None]:
    """For each step, the change point matched to it (the nearest within ``tolerance``
    builds not matched to an earlier step), or None."""
    free = list(found)
    out: list[int | None] = []
    for a in at:
        near = sorted((f for f in free if abs(f - a) <= tolerance), key=lambda f: abs(f - a))
        out.append(near[0] if near else None)
        if near:
            free.remove(near[0])
    return out


def segmentation(rng: np.random.Generator, model: str, cv: float, trials: int, alpha: float) -> str:
    found_total = matched = matched_far = exact = 0
    hits = np.zeros(len(SIZES))
    steps_by_size = np.zeros(len(SIZES))
    for _ in range(trials):
        k = int(rng.integers(0, 3))
        while True:
            at = sorted(int(a) for a in rng.integers(10, 51, k))
            if k < 2 or at[1] - at[0] >= 10:
                break
        sizes = rng.uniform(0.03, 0.15, k) * rng.choice([-1, 1], k)
        history = stepped(rng, model, cv, 60, dict(zip(at, sizes, strict=True)))
        found = [f.index for f in find(history, alpha)]
        found_total += len(found)
        matched_far += sum(m is not None for m in match(found, at, 5))
        for a, size, m in zip(at, sizes, match(found, at, TOLERANCE), strict=True):
            band = min(i for i, (_, hi) in enumerate(SIZES) if abs(size) <= hi)
            steps_by_size[band] += 1
            if m is not None:
                matched += 1
                hits[band] += 1
                exact += m == a
    precision = " | ".join(f"{m / found_total:.0%}" if found_total else "–" for m in (matched, matched_far))
    recall = " | ".join(f"{h / n:.0%}" if n else "–" for h, n in zip(hits, steps_by_size, strict=True))
    return f"| {model} | {cv:.0%} | {precision} | {recall} | {exact / max(matched, 1):.0%} |"


def nightly(values: np.ndarray, first: int, alpha: float) -> Iterator[tuple[int, list[Found]]]:
    """Asking after every build from ``first`` builds on, as a nightly job would: each
    length and the new regressions (falls, for a higher-is-better metric) then reported."""
    before = find(values[: first - 1], alpha)
    for n in range(first, values.size + 1):
        now = find(values[:n], alpha)
        yield n, [f for f in now if not f.rise and appeared(f, before)]
        before = now


def flat(rng: np.random.Generator, model: str, cv: float, trials: int, alpha: float) -> str:
    false = sum(len(find(stepped(rng, model, cv, 100, {}), alpha)) for _ in range(trials))
    nights = alarms = 0
    for _ in range(max(trials // 4, 1)):
        for _, new in nightly(stepped(rng, model, cv, 100, {}), 20, alpha):
            alarms += bool(new)
            nights += 1
    return f"| {model} | {cv:.0%} | {100 * false / (100 * trials):.2f} | {100 * alarms / nights:.2f} |"


def delay(rng: np.random.Generator, model: str, cv: float, trials: int, shape: str, alpha: float) -> str:
    start, after = 40, 30
    if shape == "drift":
        steps, last = {start + i: 0.9 ** (1 / 7) - 1 for i in range(7)}, start + 6
    else:
        steps, last = {start: float(shape.rstrip("%")) / 100}, start
    got = []
    for _ in range(trials):
        values = stepped(rng, model, cv, start + after, steps)
        alarms = (n for n, new in nightly(values, start + 1, alpha)
                  if any(start - TOLERANCE <= f.index <= last + TOLERANCE for f in new))  # fmt: skip
        got.append(next((n - start for n in alarms), None))
    seen = np.array([g for g in got if g is not None])
    share = seen.size / len(got)
    median = f"{np.median(seen):.0f}" if seen.size else "–"
    p90 = f"{np.percentile(seen, 90):.0f}" if seen.size and share >= 0.9 else "> 30"
    return f"| {model} | {cv:.0%} | {shape} | {share:.0%} | {median} | {p90} |"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--cv", default="0.05,0.10", help="comma-separated run-to-run CVs")
    parser.add_argument("--noise", default="normal,t3,slow", help="comma-separated noise models")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--alpha", type=float, default=ALPHA, help="the changes module's ALPHA by default")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    cvs = [float(c) for c in args.cv.split(",")]
    models = args.noise.split(",")
    began = time.monotonic()

    print(f"1. Histories of 60 builds, 0-2 steps of 3-15% ({args.trials} a row)\n")
    bands = " | ".join(f"recall {lo:.0%}-{hi:.0%}" for lo, hi in SIZES)
    print(f"| noise | CV | precision | precision within 5 | {bands} | at the right build |")
    print("|---|---|---|---|---|---|---|---|")
    for model in models:
        for cv in cvs:
            print(segmentation(rng, model, cv, args.trials, args.alpha), flush=True)

    print(
        f"\n2. Flat histories of 100 builds ({args.trials} a row; nights: {max(args.trials // 4, 1)} histories a row)\n"
    )
    print("| noise | CV | false change points per 100 runs | new regressions per 100 nights |")
    print("|---|---|---|---|")
    for model in models:
        for cv in cvs:
            print(flat(rng, model, cv, args.trials, args.alpha), flush=True)

    trials = max(args.trials // 5, 1)
    print(f"\n3. Runs after the step until a new regression is reported ({trials} a row)\n")
    print("| noise | CV | step | found within 30 runs | runs after the step, median | 90th percentile |")
    print("|---|---|---|---|---|---|")
    for model in models:
        for cv in cvs:
            for shape in ("-5%", "-10%", "-15%", "drift"):
                print(delay(rng, model, cv, trials, shape, args.alpha), flush=True)
    print(f"\n({time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    main()
