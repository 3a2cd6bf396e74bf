"""How the adaptive paired rounds (harness/results/sequential.py) behave, on synthetic samples:

  python benchmarks/sequential.py [--trials 10000] [--max-rounds 60] [--min-effect 0.05]
                                  [--cv 0.05,0.07,0.10] [--noise normal,t3+drift,outliers+drift]

Each trial is one comparison: rounds of four runs, A B B A, generated up to the
cap, then judged after every round from the first look on exactly as `decide`
judges (the same `judge_look`), stopping at the first decision. Per noise model,
coefficient of variation (run to run) and true change of B (0: A/A), it prints
one Markdown row: how often the answer was each outcome, how often the cap came
with no answer, the median and 90th percentile of the rounds taken, and whether
the targets hold (A/A: false positives <= 1% and SAME >= 90%; -10%: REGRESSED
>= 95%; -5%: REGRESSED >= 80%; none for a change inside the margin).

Noise models, on the log of each run's value (standard deviation = the CV):
  normal          independent normal noise
  t3+drift        half the variance an AR(1) drift between consecutive runs
                  (coefficient 0.8), half independent Student-t noise with 3
                  degrees of freedom (heavy tails)
  outliers+drift  the same drift; the other half a mixture: 90% normal, 10%
                  slow runs (a normal mean 3 and standard deviation 2 of its
                  standard deviations lower)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.results.sequential import (  # noqa: E402
    DEFAULT_ALPHA,
    DEFAULT_MAX_ROUNDS,
    DEFAULT_MIN_EFFECT,
    DEFAULT_SAME_ERROR,
    MIN_ROUNDS,
    ORDERS,
    judge_look,
    round_change,
)

SHIFTS = (0.0, -0.025, -0.05, -0.10)
SLOW_SHARE, SLOW_MEAN, SLOW_SD = 0.1, -3.0, 2.0
"""The slow runs of the "slow" tails, in standard deviations of their normal part."""


class Noise(NamedTuple):
    drift_share: float
    """The share of the run-to-run variance that is AR(1) drift."""
    phi: float
    """The AR(1) coefficient between consecutive runs."""
    tails: str
    """The rest: "normal", "t3" (Student-t, 3 degrees of freedom) or "slow" (a mixture)."""


NOISES = {
    "normal": Noise(0.0, 0.0, "normal"),
    "t3+ar0.5": Noise(0.5, 0.5, "t3"),
    "slow+ar0.9": Noise(0.5, 0.9, "slow"),
    "ar0.3": Noise(1.0, 0.3, "normal"),
}
"""The first three make the table; ar0.3 (all of the noise correlated with the run
before) shows what alternating the order of the rounds does."""
DEFAULT_NOISES = ("normal", "t3+ar0.5", "slow+ar0.9")


def noise(rng: np.random.Generator, model: Noise, cv: float, shape: tuple[int, int]) -> np.ndarray:
    """Log-scale noise of consecutive runs (along the last axis), standard deviation ``cv``."""
    drift_sd = cv * np.sqrt(model.drift_share)
    step = rng.normal(0.0, drift_sd * np.sqrt(1 - model.phi**2), shape)
    drift = np.empty(shape)
    drift[:, 0] = rng.normal(0.0, drift_sd, shape[0])
    for i in range(1, shape[1]):
        drift[:, i] = model.phi * drift[:, i - 1] + step[:, i]
    own_sd = cv * np.sqrt(1 - model.drift_share)
    if model.tails == "normal":
        return drift + rng.normal(0.0, own_sd, shape)
    if model.tails == "t3":
        return drift + rng.standard_t(3, shape) * own_sd / np.sqrt(3)
    # Variance of the mixture in units of its normal part's: within plus between the two parts.
    p, m, s = SLOW_SHARE, SLOW_MEAN, SLOW_SD
    sd = own_sd / np.sqrt((1 - p) + p * s**2 + p * (1 - p) * m**2)
    slow = rng.random(shape) < p
    return drift + np.where(slow, rng.normal(m * sd, s * sd, shape), rng.normal(0.0, sd, shape))


def round_changes(
    rng: np.random.Generator, model: Noise, cv: float, shift: float, trials: int, rounds: int, alternate: bool
) -> np.ndarray:
    """(trials, rounds) per-round changes, B changed by ``shift``; the runs of round k
    in the order ORDERS[k % 2] (A B B A, B A A B), or with ``alternate`` False always
    the first."""
    runs = np.exp(noise(rng, model, cv, (trials, 4 * rounds))).reshape(trials, rounds, 4)
    orders = [ORDERS[k % len(ORDERS)] if alternate else ORDERS[0] for k in range(rounds)]
    is_a = np.array([[c == "A" for c in order] for order in orders])  # (rounds, 4)
    mean_a = (runs * is_a).sum(axis=-1) / is_a.sum(axis=-1)
    mean_b = (runs * ~is_a).sum(axis=-1) / (~is_a).sum(axis=-1) * (1 + shift)
    return round_change(mean_a, mean_b)


def run_sequence(
    changes: np.ndarray, max_rounds: int, min_effect: float, alpha: float, same_error: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per trial: the outcome ('regressed', 'improved', 'same' or 'unknown', for a
    higher-is-better metric) and the rounds taken, stopping at the first decision."""
    trials = changes.shape[0]
    outcome = np.full(trials, "unknown", dtype=object)
    taken = np.full(trials, max_rounds)
    open_ = np.arange(trials)
    for n in range(MIN_ROUNDS, max_rounds + 1):
        if open_.size == 0:
            break
        look = judge_look(changes[open_, :n], max_rounds, min_effect, alpha, same_error)
        done = look.code != 0
        idx = open_[done]
        outcome[idx] = np.where(
            look.code[done] == 1, "same", np.where(look.estimate[done] < 0, "regressed", "improved")
        )
        taken[idx] = n
        open_ = open_[~done]
    return outcome, taken


def target(shift: float, rates: dict[str, float], min_effect: float) -> str:
    if shift == 0:
        ok = rates["regressed"] + rates["improved"] <= 0.01 and rates["same"] >= 0.90
    elif shift <= -0.10:
        ok = rates["regressed"] >= 0.95
    elif shift <= -min_effect:
        ok = rates["regressed"] >= 0.80
    else:
        return "–"
    return "yes" if ok else "**no**"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=10000)
    parser.add_argument("--max-rounds", type=int, default=DEFAULT_MAX_ROUNDS)
    parser.add_argument("--min-effect", type=float, default=DEFAULT_MIN_EFFECT)
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA)
    parser.add_argument("--cv", default="0.05,0.07,0.10", help="comma-separated run-to-run CVs")
    parser.add_argument("--noise", default=",".join(DEFAULT_NOISES), help="comma-separated noise models")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--same-order", action="store_true", help="every round A B B A (no alternation)")
    args = parser.parse_args(argv)
    cvs = [float(c) for c in args.cv.split(",")]
    models = args.noise.split(",")
    for name in models:
        if name not in NOISES:
            parser.error(f"unknown noise model {name!r} (expected one of: {', '.join(NOISES)})")
    started = time.monotonic()
    order = f"always {ORDERS[0]}" if args.same_order else " then ".join(ORDERS)
    print(
        f"{args.trials} trials per row; cap {args.max_rounds} rounds of 4 runs ({order}), minimum effect "
        f"{args.min_effect:.1%}, alpha {args.alpha:g}, SAME error {DEFAULT_SAME_ERROR:g}\n"
    )
    print(
        "| noise | CV | B vs A | different | regressed | same | unknown at cap | rounds median | rounds p90 | target met |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model in models:
        for cv in cvs:
            for s, shift in enumerate(SHIFTS):
                # The same row draws the same noise whichever other rows are asked for.
                rng = np.random.default_rng([args.seed, list(NOISES).index(model), round(cv * 1000), s])
                changes = round_changes(
                    rng, NOISES[model], cv, shift, args.trials, args.max_rounds, not args.same_order
                )
                outcome, taken = run_sequence(
                    changes, args.max_rounds, args.min_effect, args.alpha, DEFAULT_SAME_ERROR
                )
                rates = {
                    k: float(np.mean(outcome == k)) for k in ("regressed", "improved", "same", "unknown")
                }
                change = "A/A" if shift == 0 else f"{shift:+.1%}"
                print(
                    f"| {model} | {cv:.0%} | {change} | {rates['regressed'] + rates['improved']:.2%} "
                    f"| {rates['regressed']:.1%} | {rates['same']:.1%} | {rates['unknown']:.1%} "
                    f"| {np.median(taken):g} | {np.percentile(taken, 90, method='inverted_cdf'):g} | {target(shift, rates, args.min_effect)} |"
                )
    print(f"\n({time.monotonic() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
