"""Statistics for comparing two samples of a metric: pure functions, no I/O.

* Significance: the two-sided Mann–Whitney U test (rank based, no normality
  assumed: throughput samples are often skewed). With few samples the exact
  distribution is used, and it has a floor: with n values on each side the
  smallest two-sided p-value possible is 2 / C(2n, n), so n = 3 can never
  reach p < 0.05. `min_samples_for` says how many are needed.
* Size: the relative change of the medians, with a percentile bootstrap
  confidence interval (resampling each side independently, fixed seed, so
  the same data always gives the same interval).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import mannwhitneyu


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    q1: float
    q3: float

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        return Summary(0, math.nan, math.nan, math.nan)
    q1, med, q3 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return Summary(len(values), float(med), float(q1), float(q3))


def min_p_value(n_a: int, n_b: int) -> float:
    """The smallest two-sided p-value the exact Mann–Whitney U test can give."""
    if n_a < 1 or n_b < 1:
        return 1.0
    return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))


def min_samples_for(alpha: float) -> int:
    """Samples per side needed before p < alpha is possible at all."""
    n = 1
    while min_p_value(n, n) >= alpha:
        n += 1
    return n


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Mann–Whitney U p-value; 1.0 when either side is empty or all values tie."""
    if not a or not b:
        return 1.0
    if len(set(a) | set(b)) == 1:
        return 1.0
    return float(mannwhitneyu(a, b, alternative="two-sided", method="auto").pvalue)


def relative_change(base: float, cand: float) -> float:
    """(cand - base) / base; +inf/-inf/nan when the base is zero."""
    if base == 0:
        return math.nan if cand == 0 else math.copysign(math.inf, cand)
    return (cand - base) / abs(base)


def bootstrap_change_ci(
    base: Sequence[float], cand: Sequence[float], confidence: float = 0.95, rounds: int = 4000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval for the relative change of the medians."""
    if not base or not cand:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    a = np.asarray(base, dtype=float)
    b = np.asarray(cand, dtype=float)
    ma = np.median(rng.choice(a, size=(rounds, a.size), replace=True), axis=1)
    mb = np.median(rng.choice(b, size=(rounds, b.size), replace=True), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        change = (mb - ma) / np.abs(ma)
    change = change[np.isfinite(change)]
    if change.size == 0:
        return (math.nan, math.nan)
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(change, [tail, 100 - tail])
    return (float(lo), float(hi))
