"""Change points over a metric's stored history (`wgharness changes`, and `report`).

A series is one metric of one case of one lab on one fingerprint
(`harness.results.fingerprint`), its points in the order they were measured:
one point per build (or per run without a build label), each with every sample
its runs measured. The segmentation and the significance test on top are this
module's job; what reads the store (`harness.results.history`) and what renders
are not. Pure functions: no store, no clock; the same series always gives the
same answer (the permutations are drawn with a fixed seed).

The rules:

* A point's value is the median of its samples. The series is judged on the
  ranks of these values (mid-ranks for ties): a slow run or a heavy tail moves
  a rank by one place, whatever its size.
* Candidates: ruptures' `KernelCPD` with the linear kernel (least squares, an
  exact penalised search, Pelt) on the standardised ranks, at least
  `MIN_SEGMENT` points a segment, penalty 2 ln n (n points).
* The test of a change point at index c, between its neighbours a and b (the
  change points before and after it, or the series' ends): in the window
  [a, b) the standardised rank sum (Mann–Whitney) of the points before c,
  ``|Z_c|``; p is the share of random permutations of the window whose largest
  ``|Z|`` over every split the window allows is at least as large (`PERMUTATIONS`
  of them, and the observed order counted as one). Taking the largest over all
  splits makes the test honest about c having been chosen where the split looks
  best (E-divisive's idea, as Apache Otava uses it).
* Pruning: while a change point has p > alpha (`ALPHA`), the one with the largest
  p (the smallest ``|Z|`` among equals) is removed and its neighbours are tested
  again in their wider windows. Then each segment left is searched for its best
  split, tested the same way, and added when significant; each change point is
  moved to the best split of its window; this repeats until nothing changes
  (at most `MAX_PASSES` times), and a last pruning leaves only significant ones.
* The step: the Hodges–Lehmann shift (the median of every difference of a point
  after and a point before, within the window), relative to the median before;
  its interval is the distribution-free (Moses) 95% interval of that shift,
  divided by the same median. It does not allow for the change point having been
  placed where the segments differ most: for a small step it leans away from zero.
* The verdict by the metric's better direction: IMPROVED or REGRESSED. A metric
  without one (`Direction.NONE`) has no change points.
* New: a change point is new when the series without its newest point has no
  change point with the same verdict within `NEW_TOLERANCE` points of it: it
  appeared with the newest point. Stateless: a nightly job asks once after
  storing its run, and a change point is new on the first night it is found (if
  it is lost again and found later, it is new again).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import ruptures
from scipy.stats import norm, rankdata

from harness.results.records import Direction, Verdict

MIN_SEGMENT = 3
"""Points on each side of a change point, at least."""
ALPHA = 0.01
"""A change point stays when its p is at most this."""
PERMUTATIONS = 1999
"""Permutations per test: the smallest p is 1 / (PERMUTATIONS + 1) = 0.0005."""
MAX_PASSES = 10
"""Rounds of pruning, adding and moving, at most."""
NEW_TOLERANCE = 2
"""How far (in points) a change point may have moved and still be the one found before."""
CONFIDENCE = 0.95
"""Of the interval on the step."""


@dataclass(frozen=True)
class Point:
    """One point of a series: a build (or a run without one) and its samples."""

    label: str
    """The build label, or ``run ID`` for a run without one."""
    run_ids: tuple[str, ...]
    samples: tuple[float, ...]

    @property
    def value(self) -> float:
        """What the series judges: the median of the samples."""
        return float(np.median(self.samples)) if self.samples else math.nan


@dataclass(frozen=True)
class Series:
    """A metric's history on one fingerprint, oldest point first."""

    lab: str
    key: str
    """The measurement key (suite/case[/direction]/metric)."""
    metric: str
    unit: str
    direction: Direction
    fingerprint: str
    """The fingerprint's series label, ``runner@hash``."""
    points: tuple[Point, ...]

    def values(self) -> np.ndarray:
        """Each point's value (`Point.value`), oldest first."""
        return np.array([p.value for p in self.points], dtype=float)


@dataclass(frozen=True)
class ChangePoint:
    """A step in a series between ``points[index - 1]`` and ``points[index]``."""

    series: Series
    index: int
    """Index of the first point after the step (the first bad build when it regressed)."""
    change: float
    """Relative change of the segment after against the segment before (+0.05 = 5% higher)."""
    low: float
    high: float
    """An interval on ``change``."""
    p: float
    """How sure: the probability of a step at least this large between these segments by chance."""
    verdict: Verdict
    """IMPROVED or REGRESSED, by the metric's direction."""
    new: bool
    """Found only with the newest point of the series: what a nightly run should act on."""
    start: int = 0
    """The first point of the segment before (the change point before, or 0)."""
    end: int = 0
    """One past the last point of the segment after (the change point after, or the length)."""
    before: float = math.nan
    """The median of the point values of the segment before."""
    after: float = math.nan
    """The median of the point values of the segment after."""

    @property
    def last_good(self) -> Point:
        return self.series.points[self.index - 1]

    @property
    def first_bad(self) -> Point:
        return self.series.points[self.index]

    @property
    def alarm(self) -> bool:
        """New and a regression: what fails `wgharness changes` (exit status 1)."""
        return self.new and self.verdict is Verdict.REGRESSED


@dataclass(frozen=True)
class Found:
    """A change point of a sequence of values (`find`)."""

    index: int
    """The first value after the step."""
    p: float
    rise: bool
    """The values after rank above those before."""


def _z(ranks: np.ndarray) -> np.ndarray:
    """|standardised rank sum| of the first k values, for every split k = 1 .. m-1 (along the
    last axis; leading axes are independent windows); its permutation variance, so ties count."""
    m = ranks.shape[-1]
    centred = ranks - ranks.mean(axis=-1, keepdims=True)
    squares = (centred**2).sum(axis=-1, keepdims=True)
    k = np.arange(1, m)
    sums = np.cumsum(centred, axis=-1)[..., :-1]
    var = k * (m - k) / (m * (m - 1)) * squares
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(var > 0, np.abs(sums) / np.sqrt(var), 0.0)


def _splits(ranks: np.ndarray) -> np.ndarray:
    """`_z` at the splits a window allows: k = MIN_SEGMENT .. m - MIN_SEGMENT."""
    m = ranks.shape[-1]
    return _z(ranks)[..., MIN_SEGMENT - 1 : m - MIN_SEGMENT]


def _null_of(ranks: np.ndarray) -> np.ndarray:
    """The largest ``|Z|`` of each permutation of ``ranks``, sorted."""
    rng = np.random.default_rng(ranks.size)
    shuffled = rng.permuted(np.broadcast_to(ranks, (PERMUTATIONS, ranks.size)), axis=1)
    return np.sort(_splits(shuffled).max(axis=1))


@functools.lru_cache(maxsize=512)
def _null_without_ties(m: int) -> np.ndarray:
    return _null_of(np.arange(1.0, m + 1))


def _null(ranks: np.ndarray) -> np.ndarray:
    """Without ties the permutation distribution depends on the window's length alone."""
    if np.unique(ranks).size == ranks.size:
        return _null_without_ties(ranks.size)
    return _null_of(ranks)


def _p(z: float, null: np.ndarray) -> float:
    """Share of permutations at least as extreme, counting the observed order as one."""
    beyond = null.size - int(np.searchsorted(null, z * (1 - 1e-12), side="left"))
    return (1 + beyond) / (1 + null.size)


class _Test(NamedTuple):
    p: float
    z: float
    best: int
    """The split of largest ``|Z|`` in the window, as an index into the series."""


def _test(values: np.ndarray, lo: int, split: int | None, hi: int) -> _Test:
    """The test of a split at ``split`` (None: the window's best) in the window [lo, hi)."""
    ranks = rankdata(values[lo:hi])
    z = _splits(ranks)
    best = int(np.argmax(z))
    at = best if split is None else split - lo - MIN_SEGMENT
    return _Test(_p(float(z[at]), _null(ranks)), float(z[at]), lo + MIN_SEGMENT + best)


def _windows(cps: list[int], n: int) -> list[tuple[int, int, int]]:
    edges = [0, *cps, n]
    return [(edges[i], c, edges[i + 2]) for i, c in enumerate(cps)]


def _prune(values: np.ndarray, cps: list[int], alpha: float) -> list[int]:
    cps = list(cps)
    while cps:
        tests = [_test(values, lo, c, hi) for lo, c, hi in _windows(cps, values.size)]
        worst = max(range(len(cps)), key=lambda i: (tests[i].p, -tests[i].z))
        if tests[worst].p <= alpha:
            break
        del cps[worst]
    return cps


def _add(values: np.ndarray, cps: list[int], alpha: float) -> list[int]:
    edges = [0, *cps, values.size]
    found = []
    for lo, hi in zip(edges, edges[1:], strict=False):
        if hi - lo >= 2 * MIN_SEGMENT and (t := _test(values, lo, None, hi)).p <= alpha:
            found.append(t.best)
    return sorted(cps + found)


def _move(values: np.ndarray, cps: list[int]) -> list[int]:
    """Each change point to the best split of its window, one after the other (so that
    segments keep their least length)."""
    cps = list(cps)
    for i in range(len(cps)):
        lo, c, hi = _windows(cps, values.size)[i]
        cps[i] = _test(values, lo, c, hi).best
    return cps


def _candidates(values: np.ndarray) -> list[int]:
    ranks = rankdata(values)
    spread = ranks.std()
    if spread == 0:
        return []
    signal = ((ranks - ranks.mean()) / spread).reshape(-1, 1)
    algo = ruptures.KernelCPD(kernel="linear", min_size=MIN_SEGMENT).fit(signal)
    return [int(b) for b in algo.predict(pen=2 * math.log(values.size))[:-1]]


def find(values: Sequence[float] | np.ndarray, alpha: float = ALPHA) -> list[Found]:
    """The change points of ``values`` (oldest first), by the module's rules; NaN refused."""
    v = np.asarray(values, dtype=float)
    if np.isnan(v).any():
        raise ValueError("a value is NaN")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha {alpha}: expected a fraction between 0 and 1")
    if v.size < 2 * MIN_SEGMENT:
        return []
    cps = _candidates(v)
    for _ in range(MAX_PASSES):
        before = cps
        cps = _move(v, _add(v, _prune(v, cps, alpha), alpha))
        if cps == before:
            break
    cps = _prune(v, cps, alpha)
    out = []
    for lo, c, hi in _windows(cps, v.size):
        ranks = rankdata(v[lo:hi])
        rise = ranks[c - lo :].mean() > ranks[: c - lo].mean()
        out.append(Found(c, _test(v, lo, c, hi).p, bool(rise)))
    return out


def shift(
    before: np.ndarray, after: np.ndarray, confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """The Hodges–Lehmann shift of ``after`` against ``before`` (the median of all
    differences a - b) and its distribution-free (Moses) interval."""
    diffs = np.sort(np.subtract.outer(after, before).ravel())
    n1, n2 = before.size, after.size
    z = float(norm.isf((1 - confidence) / 2))
    k = math.floor(n1 * n2 / 2 - z * math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12))
    k = min(max(k, 0), (diffs.size - 1) // 2)
    return float(np.median(diffs)), float(diffs[k]), float(diffs[diffs.size - 1 - k])


def appeared(found: Found, earlier: Sequence[Found]) -> bool:
    """``found`` (in the whole series) is new: ``earlier`` (found without the newest
    point) has none within `NEW_TOLERANCE` points of it that moved the same way."""
    return not any(abs(e.index - found.index) <= NEW_TOLERANCE and e.rise == found.rise for e in earlier)


def _verdict(rise: bool, direction: Direction) -> Verdict:
    better = rise if direction == Direction.HIGHER else not rise
    return Verdict.IMPROVED if better else Verdict.REGRESSED


def change_points(series: Series, alpha: float = ALPHA) -> list[ChangePoint]:
    """The change points of ``series``, oldest first."""
    if series.direction == Direction.NONE:
        return []
    values = series.values()
    found = find(values, alpha)
    earlier = find(values[:-1], alpha) if found else []
    out = []
    for i, f in enumerate(found):
        lo = found[i - 1].index if i else 0
        hi = found[i + 1].index if i + 1 < len(found) else values.size
        before, after = values[lo : f.index], values[f.index : hi]
        base = float(np.median(before))
        hl, low, high = (x / abs(base) if base else math.nan for x in shift(before, after))
        out.append(ChangePoint(series, f.index, hl, low, high, f.p, _verdict(f.rise, series.direction),
                               appeared(f, earlier), lo, hi, base, float(np.median(after))))  # fmt: skip
    return out
