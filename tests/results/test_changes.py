"""Change points (harness/results/changes.py) on fixed series, and a short run of
benchmarks/changes.py (tests/results/test_changes_command.py: on stores)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from harness.results.changes import (
    MIN_SEGMENT,
    ChangePoint,
    Found,
    Point,
    Series,
    appeared,
    change_points,
    find,
    shift,
)
from harness.results.records import Direction, Verdict
from tests.support.paths import ROOT

NOISE = np.exp(np.random.default_rng(21).normal(0.0, 0.02, 60))
"""Fixed run-to-run noise, 2%."""


def _series(values: np.ndarray, direction: Direction = Direction.HIGHER, label: str = "ci@1") -> Series:
    points = tuple(Point(f"b{i:02d}", (f"r{i}",), (float(v),)) for i, v in enumerate(values))
    return Series("local", "throughput/tcp-1/receiver_bps", "receiver_bps", "bit/s", direction, label, points)


def _stepped(n: int, steps: dict[int, float]) -> np.ndarray:
    values = 700e6 * NOISE[:n].copy()
    for at, by in steps.items():
        values[at:] *= 1 + by
    return values


def test_a_flat_series_has_no_change_point() -> None:
    assert change_points(_series(_stepped(60, {}))) == []


def test_a_clear_step_is_found_at_its_build_with_its_sign_and_size() -> None:
    values = _stepped(40, {25: -0.10})
    (cp,) = change_points(_series(values))
    assert cp.index == 25 and (cp.last_good.label, cp.first_bad.label) == ("b24", "b25")
    assert cp.verdict is Verdict.REGRESSED and cp.p <= 0.001
    assert cp.low < cp.change < cp.high and cp.low < -0.10 < cp.high and -0.13 < cp.change < -0.07
    assert (cp.start, cp.end) == (0, 40) and cp.after < cp.before
    assert not cp.new and not cp.alarm  # found long before the newest point
    # The same step of a time (lower is better) is an improvement.
    (down,) = change_points(_series(values, Direction.LOWER))
    assert down.index == 25 and down.verdict is Verdict.IMPROVED
    (up,) = change_points(_series(_stepped(40, {25: +0.10})))
    assert up.index == 25 and up.verdict is Verdict.IMPROVED and up.change > 0


def test_two_steps_are_both_found() -> None:
    found = change_points(_series(_stepped(50, {15: +0.10, 32: -0.12})))
    assert [(cp.index, cp.verdict) for cp in found] == [(15, Verdict.IMPROVED), (32, Verdict.REGRESSED)]
    assert (found[0].start, found[0].end, found[1].start, found[1].end) == (0, 32, 15, 50)


def test_a_slow_drift_shows_up() -> None:
    """A week of nightlies each 3% slower than the one before, then flat: no two
    neighbours differ by more than the noise of one comparison, and still a change
    point within the ramp."""
    values = _stepped(50, {20 + i: -0.03 for i in range(7)})
    found = change_points(_series(values))
    assert found and all(18 <= cp.index <= 29 and cp.verdict is Verdict.REGRESSED for cp in found)


def test_new_is_found_with_the_newest_point_and_not_without_it() -> None:
    """Stateless: at the first length of the series where the step is found, it is
    new (a regression: an alarm); one point later it is no longer new."""
    full = _stepped(45, {30: -0.10})
    lengths = [n for n in range(31, 46) if change_points(_series(full[:n]))]
    first = lengths[0]
    assert MIN_SEGMENT <= first - 30 <= 8 and lengths == list(range(first, 46))
    (cp,) = change_points(_series(full[:first]))
    assert cp.new and cp.alarm and cp.index == 30
    (later,) = change_points(_series(full[: first + 1]))
    assert not later.new and not later.alarm
    # An improvement is new, and no alarm.
    (better,) = change_points(_series(full[:first], Direction.LOWER))
    assert better.new and not better.alarm


def test_appeared_allows_a_change_point_to_move_a_little() -> None:
    now = Found(30, 0.001, False)
    assert not appeared(now, [Found(28, 0.002, False)])
    assert appeared(now, [Found(27, 0.002, False)])
    assert appeared(now, [Found(30, 0.002, True)])  # the other way: another change point
    assert appeared(now, [])


def test_heavy_tails_alone_make_no_change_point() -> None:
    """A flat series with three slow runs (30% low) and Student-t noise."""
    rng = np.random.default_rng(5)
    values = 700e6 * np.exp(rng.standard_t(3, 60) * 0.03)
    values[[10, 31, 47]] *= 0.7
    assert find(values) == []


def test_short_and_degenerate_series() -> None:
    assert find([1.0] * (2 * MIN_SEGMENT - 1) + [9.0]) == []
    assert find([5.0] * 30) == []  # all tied
    assert find([]) == []
    with pytest.raises(ValueError, match="NaN"):
        find([1.0, float("nan")] * 5)
    with pytest.raises(ValueError, match="alpha"):
        find([1.0] * 10, alpha=0)
    none = _series(_stepped(40, {20: -0.3}), Direction.NONE)
    assert change_points(none) == []  # a figure with no better direction has no verdict


def test_the_same_series_gives_the_same_answer() -> None:
    values = _stepped(40, {20: -0.05})
    assert change_points(_series(values)) == change_points(_series(values))


def test_shift_and_its_interval() -> None:
    est, low, high = shift(np.array([10.0, 11, 12, 13]), np.array([20.0, 21, 22, 23]))
    assert est == 10 and low < 10 < high and low >= 7 and high <= 13
    est, low, high = shift(np.array([1.0, 2, 3]), np.array([1.0, 2, 3]))
    assert est == 0 and low < 0 < high


def test_the_benchmark_runs_and_prints_its_tables() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "changes.py"), "--trials", "8"],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout  # fmt: skip
    assert "| precision |" in out and "| false change points per 100 runs |" in out
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| t3 |")]
    assert [len(r) for r in rows] == [8, 8, 4, 4] + [6] * 8  # a row per CV in 1 and 2, per step too in 3


def test_a_change_point_names_its_builds() -> None:
    s = _series(_stepped(40, {25: -0.10}))
    cp = ChangePoint(s, 25, -0.1, -0.12, -0.08, 0.001, Verdict.REGRESSED, True)
    assert (cp.last_good.label, cp.first_bad.label, cp.alarm) == ("b24", "b25", True)
