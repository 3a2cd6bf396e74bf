"""Adaptive paired rounds: after each round, is one metric of build B different
from build A, the same, or not known yet? Pure functions, no I/O, no clock.

A round runs both builds on one host, interleaved: A B B A, the next B A A B
(`ORDERS`), so a drift of the host that is linear over a round cancels out and
the runs on either side of a round's border do not always count for the same
build. The rounds loop (in the run layer) asks `decide` after every round and
stops at `Decision.stop`: the outcome is no longer UNKNOWN, or ``max_rounds``
rounds were run. The rules all live here:

* Per round, the change is the log ratio of B's mean to A's mean in that round
  (`round_change`); the estimate is the mean of these per-round changes, tested
  with a one-sample t statistic (a paired test: each round is its own block).
  Reported as a relative change, exp(estimate) - 1.
* SAME when the equivalence interval (estimate ± t·se, at this look's SAME
  boundary) lies inside ± the minimum effect. This comes first, so a change that
  is significant but shown smaller than the minimum effect is SAME.
* DIFFERENT (REGRESSED or IMPROVED, by the metric's better direction) when the
  difference interval (estimate ± t·se, at this look's DIFFERENT boundary)
  excludes 0, and the change was not shown smaller than the minimum effect. The
  minimum effect is the smallest change that must be caught, not a floor the
  estimate must pass: the estimate of a true change of exactly the minimum
  effect falls short of it half the time, so that floor would miss it as often.
  A change between 0 and the minimum effect may end either way.
* UNKNOWN otherwise: run another round. Still UNKNOWN at ``max_rounds``, it is
  reported as unknown (with its samples, by the caller).
* Repeated looks: a look after every round from `MIN_ROUNDS` on, each test at a
  group-sequential boundary from Lan–DeMets alpha spending with the
  O'Brien–Fleming-type function (`spent`, `boundaries`): over all looks up to
  the cap, P(DIFFERENT | no change) <= ``alpha`` (two-sided) and P(SAME | the
  change is exactly ± the minimum effect) <= ``same_error``. The boundaries are
  computed for Brownian motion (the recursion of Armitage, McPherson and Rowe,
  `spending_boundaries`) and applied through the t distribution of the look's
  degrees of freedom. Looking less often than every round is only more
  conservative. benchmarks/sequential.py measures all this on synthetic noise.
* A round where one side's mean is zero and the other's is not is DIFFERENT at
  once (a relative change from or to zero has no interval); both zero is no
  change. Negative or NaN values, or a round without a value of A or B, are
  refused (ValueError).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

import numpy as np
from scipy.stats import norm
from scipy.stats import t as student_t

from harness.results.records import Direction, Verdict

MIN_ROUNDS = 3
"""The first look: after this many rounds (two degrees of freedom for the t statistic)."""
DEFAULT_MAX_ROUNDS = 60
DEFAULT_MIN_EFFECT = 0.05
"""The smallest relative change to catch, and the margin of SAME (± this)."""
DEFAULT_ALPHA = 0.008
"""P(DIFFERENT) when nothing changed, over all looks, two-sided: 0.8%, so that the
measured rate stays under 1% with room for what the boundaries' model leaves out."""
DEFAULT_SAME_ERROR = 0.05
"""P(SAME) when the change is exactly ± the minimum effect, over all looks."""
ORDERS = ("ABBA", "BAAB")
"""The order of the runs in round k is ORDERS[k % 2] (k from 0). Always A B B A, a
correlation between consecutive runs would link the last A of a round with the
first A of the next and make the per-round changes positively correlated (the
test then too bold); alternating makes that link negative (the test cautious)."""


class Outcome(StrEnum):
    """The three-way answer on one metric after a look."""

    DIFFERENT = "different"
    """Significant, and not shown smaller than the minimum effect."""
    SAME = "same"
    """Shown inside ± the minimum effect."""
    UNKNOWN = "unknown"
    """Neither yet: run another round (or, at the cap, report the samples)."""

    @property
    def decided(self) -> bool:
        """DIFFERENT or SAME: no more rounds needed."""
        return self is not Outcome.UNKNOWN


OUTCOME_CODES = (Outcome.UNKNOWN, Outcome.SAME, Outcome.DIFFERENT)
"""`judge_look`'s codes: index into this tuple."""


@dataclass(frozen=True)
class Round:
    """One round (a block A B B A or B A A B): the values of A and of B measured in it."""

    a: tuple[float, ...]
    b: tuple[float, ...]


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    verdict: Verdict
    """IMPROVED or REGRESSED when DIFFERENT, UNCHANGED when SAME, INCONCLUSIVE when UNKNOWN."""
    change: float
    """Relative change of B against A (-0.1: B 10% lower)."""
    interval: tuple[float, float]
    """Relative change, the interval that decided: the equivalence interval when
    SAME, else the difference interval (the wider one: it holds 0 when UNKNOWN)."""
    p: float
    """This look's nominal two-sided p-value (the boundary, not p, is adjusted for
    the looks); NaN when no test was made (before the first look, or a zero)."""
    rounds: int
    max_rounds: int
    reason: str

    @property
    def stop(self) -> bool:
        """Decided, or no round left to run."""
        return self.outcome.decided or self.rounds >= self.max_rounds


def spent(t: float, level: float) -> float:
    """The O'Brien–Fleming-type spending function of Lan and DeMets: the error
    spent by information fraction ``t`` (0 < t <= 1) out of ``level``."""
    return float(2 * norm.sf(norm.isf(level / 2) / math.sqrt(t)))


def spending_boundaries(times: Sequence[float], level: float, sides: int) -> tuple[float, ...]:
    """z boundaries at looks made at information fractions ``times`` (increasing,
    the last 1) such that a standard Brownian motion's standardised value first
    crosses one at look k with probability spent(t_k) - spent(t_k-1) on each side
    (``level`` / ``sides`` per side): ``sides`` 2 for |z| >= b, 1 for z >= b.
    +inf where (almost) nothing is to be spent."""
    increments = np.diff([0.0, *times])
    h = math.sqrt(float(increments.min())) / 16  # grid step of the score S = z * sqrt(t)
    x = np.arange(-math.ceil(8 / h), math.ceil(8 / h) + 1) * h
    edges = np.concatenate([x - h / 2, [x[-1] + h / 2]])
    out: list[float] = []
    before = 0.0
    mass = np.zeros_like(x)
    for k, t in enumerate(times):
        sd = math.sqrt(float(increments[k]))
        if k == 0:  # the score at the first look: normal, variance t
            mass = norm.pdf(x / sd) / norm.pdf(x / sd).sum()
        else:  # paths still running, moved on by the increment since the last look
            offsets = np.arange(-math.ceil(8 * sd / h), math.ceil(8 * sd / h) + 1) * h
            kernel = norm.pdf(offsets / sd)
            mass = np.convolve(mass, kernel / kernel.sum(), mode="same")
        now = spent(t, level / sides)
        need, before = now - before, now
        # Mass at or above each edge, each grid mass spread evenly over its cell.
        tail = np.concatenate([np.cumsum(mass[::-1])[::-1], [0.0]])
        if need <= 0 or need < tail[tail > 0].min(initial=1.0):
            out.append(math.inf)
            continue
        s = float(np.interp(need, tail[::-1], edges[::-1]))
        out.append(s / math.sqrt(t))
        alive = np.clip((s - (x - h / 2)) / h, 0, 1)
        if sides == 2:
            alive *= np.clip((x + h / 2 + s) / h, 0, 1)
        mass = mass * alive
    return tuple(out)


@dataclass(frozen=True)
class Boundaries:
    """z boundaries of each look (looks after rounds `MIN_ROUNDS` .. ``max_rounds``)."""

    max_rounds: int
    different: tuple[float, ...]
    """Two-sided, for the test of no change at level alpha."""
    same: tuple[float, ...]
    """One-sided, for each of the two tests of the equivalence margin."""

    def at(self, rounds: int) -> tuple[float, float]:
        """(different, same) boundaries of the look after ``rounds`` rounds."""
        return self.different[rounds - MIN_ROUNDS], self.same[rounds - MIN_ROUNDS]


@functools.lru_cache(maxsize=32)
def boundaries(max_rounds: int, alpha: float, same_error: float) -> Boundaries:
    """The boundaries of a look after every round from `MIN_ROUNDS` to ``max_rounds``."""
    if max_rounds < MIN_ROUNDS:
        raise ValueError(f"max_rounds {max_rounds}: at least {MIN_ROUNDS}")
    times = [n / max_rounds for n in range(MIN_ROUNDS, max_rounds + 1)]
    return Boundaries(
        max_rounds, spending_boundaries(times, alpha, 2), spending_boundaries(times, same_error, 1)
    )


def round_change(mean_a: np.ndarray, mean_b: np.ndarray) -> np.ndarray:
    """Per round, the log ratio of B's mean to A's: the sample the look tests."""
    return np.log(np.asarray(mean_b, dtype=float) / np.asarray(mean_a, dtype=float))


class Look(NamedTuple):
    """`judge_look`'s answer, arrays over the leading axes (log scale)."""

    code: np.ndarray
    """Index into `OUTCOME_CODES`."""
    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    """The interval that decided (see `Decision.interval`)."""
    p: np.ndarray
    p_boundary: float
    """This look's nominal two-sided p below which the change is significant."""


def judge_look(
    changes: np.ndarray, max_rounds: int, min_effect: float, alpha: float, same_error: float
) -> Look:
    """The look after n rounds, for per-round ``changes`` (`round_change`) along the
    last axis (n of them); leading axes are independent comparisons."""
    d = np.asarray(changes, dtype=float)
    n = d.shape[-1]
    if not MIN_ROUNDS <= n <= max_rounds:
        raise ValueError(f"{n} rounds: a look needs {MIN_ROUNDS} to max_rounds ({max_rounds})")
    est = d.mean(axis=-1)
    se = d.std(axis=-1, ddof=1) / math.sqrt(n)
    df = n - 1
    z_diff, z_same = boundaries(max_rounds, alpha, same_error).at(n)
    p_boundary = float(2 * norm.sf(z_diff))
    t_diff = float(student_t.isf(norm.sf(z_diff), df)) if math.isfinite(z_diff) else math.inf
    t_same = float(student_t.isf(norm.sf(z_same), df)) if math.isfinite(z_same) else math.inf
    below = math.log1p(-min_effect) if min_effect < 1 else -math.inf
    above = math.log1p(min_effect)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.where(se > 0, np.abs(est) / se, np.where(est == 0, 0.0, math.inf))
        same_half = np.where(se > 0, t_same * se, 0.0)
        diff_half = np.where(se > 0, t_diff * se, 0.0)
    same = (est - same_half > below) & (est + same_half < above)
    different = ~same & (stat > t_diff)
    code = np.where(same, 1, np.where(different, 2, 0))
    half = np.where(same, same_half, diff_half)
    p = 2 * student_t.sf(stat, df)
    return Look(code, est, est - half, est + half, p, p_boundary)


def _pct(x: float) -> str:
    return ">+999%" if x > 9.99 else f"{x:+.1%}"  # an early look's interval can reach anywhere


def decide(
    rounds: Sequence[Round],
    direction: Direction,
    *,
    min_effect: float = DEFAULT_MIN_EFFECT,
    alpha: float = DEFAULT_ALPHA,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    same_error: float = DEFAULT_SAME_ERROR,
) -> Decision:
    """The decision on one metric after ``len(rounds)`` rounds (this look) out of
    at most ``max_rounds``; ``direction`` is the metric's better one, "higher"
    (throughput) or "lower" (latency, time)."""
    if direction not in (Direction.HIGHER, Direction.LOWER):
        raise ValueError(f"direction {direction!r}: expected 'higher' or 'lower'")
    if not (0 < alpha < 1 and 0 < same_error < 1 and min_effect >= 0):
        raise ValueError(f"alpha {alpha}, same_error {same_error} in (0, 1), min_effect {min_effect} >= 0")
    n = len(rounds)
    if n > max_rounds:
        raise ValueError(f"{n} rounds: more than max_rounds ({max_rounds})")
    means_a, means_b = [], []
    for i, r in enumerate(rounds, 1):
        for side, values in (("A", r.a), ("B", r.b)):
            if not values:
                raise ValueError(f"round {i}: no {side} value")
            if any(not v >= 0 for v in values):
                raise ValueError(f"round {i}: {side} has a negative or NaN value")
        means_a.append(sum(r.a) / len(r.a))
        means_b.append(sum(r.b) / len(r.b))

    def decision(
        outcome: Outcome, change: float, interval: tuple[float, float], p: float, reason: str
    ) -> Decision:
        if outcome is Outcome.DIFFERENT:
            worse = change < 0 if direction == Direction.HIGHER else change > 0
            verdict = Verdict.REGRESSED if worse else Verdict.IMPROVED
        else:
            verdict = Verdict.UNCHANGED if outcome is Outcome.SAME else Verdict.INCONCLUSIVE
        if outcome is Outcome.UNKNOWN:
            reason += (
                f": still unknown at the cap of {max_rounds} rounds"
                if n >= max_rounds
                else ": run more rounds"
            )
        return Decision(outcome, verdict, change, interval, p, n, max_rounds, reason)

    for i, (ma, mb) in enumerate(zip(means_a, means_b, strict=True), 1):
        if (ma == 0) != (mb == 0):
            zero, other = ("B", "A") if mb == 0 else ("A", "B")
            change = -1.0 if mb == 0 else math.inf
            return decision(Outcome.DIFFERENT, change, (math.nan, math.nan), math.nan,
                            f"round {i}: {zero} measured zero and {other} did not")  # fmt: skip
    a = np.array(means_a)
    b = np.array(means_b)
    both_zero = (a == 0) & (b == 0)
    d = np.where(both_zero, 0.0, round_change(np.where(both_zero, 1.0, a), np.where(both_zero, 1.0, b)))
    if n < MIN_ROUNDS:
        change = math.expm1(float(d.mean())) if n else math.nan
        return decision(Outcome.UNKNOWN, change, (math.nan, math.nan), math.nan,
                        f"{n} round(s), the first look is after {MIN_ROUNDS}")  # fmt: skip
    look = judge_look(d, max_rounds, min_effect, alpha, same_error)
    outcome = OUTCOME_CODES[int(look.code)]
    with np.errstate(over="ignore"):  # an early look's interval may reach past any ratio
        change, low, high = (float(np.expm1(x)) for x in (look.estimate, look.low, look.high))
    interval = (low, high)
    p = float(look.p)
    shown = f"interval [{_pct(interval[0])}, {_pct(interval[1])}]"
    if outcome is Outcome.SAME:
        reason = f"{_pct(change)}, the {shown} lies within ±{min_effect:.0%}"
    elif outcome is Outcome.DIFFERENT:
        reason = f"{_pct(change)}, p={p:.2g} below this look's boundary {look.p_boundary:.2g}, {shown}"
    else:
        reason = (
            f"{_pct(change)}, p={p:.2g} not below this look's boundary {look.p_boundary:.2g} "
            f"and not shown within ±{min_effect:.0%}, {shown}"
        )
    return decision(outcome, change, interval, p, f"after {n} rounds: {reason}")
