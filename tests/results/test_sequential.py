"""Adaptive paired rounds: the three-way decision and the stopping rule on fixed,
hand-made rounds, the sequential boundaries against known values, and one short
run of benchmarks/sequential.py."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from harness.results.records import Verdict
from harness.results.sequential import (
    DEFAULT_ALPHA,
    DEFAULT_MAX_ROUNDS,
    DEFAULT_SAME_ERROR,
    MIN_ROUNDS,
    Outcome,
    Round,
    boundaries,
    decide,
    spending_boundaries,
)
from tests.support.paths import ROOT

# Round-to-round wobble of B against A, mean 0, standard deviation about 3.4%.
WOBBLE = (0.04, -0.03, 0.02, -0.05, 0.03, 0.0, -0.02, 0.05, -0.04, 0.0)


def rounds_of(ratios: list[float] | tuple[float, ...], base: float = 700e6) -> list[Round]:
    """One round per ratio: A measured ``base`` twice, B ``base * ratio`` twice."""
    return [Round((base, base), (base * r, base * r)) for r in ratios]


def first_decision(ratios: list[float], direction: str = "higher", **kw: int) -> tuple[int, Outcome, Verdict]:
    """Asks after every round, as the rounds loop does, until `Decision.stop`."""
    for n in range(1, len(ratios) + 1):
        d = decide(rounds_of(ratios[:n]), direction, **kw)
        if d.stop:
            return n, d.outcome, d.verdict
    raise AssertionError("ran out of rounds before the cap")


def test_clearly_different_is_regressed_with_its_interval() -> None:
    d = decide(rounds_of([0.80 + w / 10 for w in WOBBLE]), "higher")
    assert (d.outcome, d.verdict) == (Outcome.DIFFERENT, Verdict.REGRESSED), d.reason
    assert d.change == pytest.approx(-0.20, abs=0.002)
    assert d.interval[0] < d.change < d.interval[1] < -0.05
    assert d.p < 1e-6 and d.rounds == 10 and d.stop


def test_clearly_same_and_significant_but_small_is_same() -> None:
    d = decide(rounds_of([1 + w / 10 for w in WOBBLE]), "higher")
    assert (d.outcome, d.verdict) == (Outcome.SAME, Verdict.UNCHANGED), d.reason
    assert -0.05 < d.interval[0] < d.interval[1] < 0.05 and d.stop
    # 2% slower every time, hardly any spread: significant, but shown inside ±5%.
    small = decide(rounds_of([0.98 + w / 100 for w in WOBBLE]), "higher")
    assert small.p < 0.001 and small.outcome == Outcome.SAME, small.reason


def test_undecided_then_decided_after_more_rounds() -> None:
    ratios = [0.95 + w for w in WOBBLE * 6]  # 5% slower, 3.4% round-to-round wobble
    early = decide(rounds_of(ratios[:6]), "higher")
    assert early.outcome == Outcome.UNKNOWN and not early.stop and "run more rounds" in early.reason
    n, outcome, verdict = first_decision(ratios)
    assert (outcome, verdict) == (Outcome.DIFFERENT, Verdict.REGRESSED) and 6 < n < DEFAULT_MAX_ROUNDS


def test_unknown_at_the_cap_stops() -> None:
    ratios = [1 + 3 * w for w in WOBBLE]  # 10% wobble: 10 rounds can tell nothing
    n, outcome, verdict = first_decision(ratios, max_rounds=10)
    assert (n, outcome, verdict) == (10, Outcome.UNKNOWN, Verdict.INCONCLUSIVE)
    d = decide(rounds_of(ratios), "higher", max_rounds=10)
    assert d.stop and "cap of 10 rounds" in d.reason
    with pytest.raises(ValueError, match="more than max_rounds"):
        decide(rounds_of([*ratios, 1.0]), "higher", max_rounds=10)


def test_before_the_first_look_it_is_unknown() -> None:
    d = decide(rounds_of([0.5] * (MIN_ROUNDS - 1)), "higher")
    assert d.outcome == Outcome.UNKNOWN and not d.stop and math.isnan(d.p)
    assert d.change == pytest.approx(-0.5) and f"first look is after {MIN_ROUNDS}" in d.reason
    assert decide([], "higher").outcome == Outcome.UNKNOWN


@pytest.mark.parametrize(
    ("ratio", "direction", "verdict"),
    [
        (0.8, "higher", Verdict.REGRESSED),  # throughput down
        (1.25, "higher", Verdict.IMPROVED),
        (1.25, "lower", Verdict.REGRESSED),  # latency up
        (0.8, "lower", Verdict.IMPROVED),
    ],
)
def test_direction_aware(ratio: float, direction: str, verdict: Verdict) -> None:
    d = decide(rounds_of([ratio + w / 10 for w in WOBBLE]), direction)
    assert (d.outcome, d.verdict) == (Outcome.DIFFERENT, verdict), d.reason


def test_degenerate_samples() -> None:
    # Identical values every round: nothing to wait for.
    same = decide(rounds_of([1.0] * MIN_ROUNDS), "higher")
    assert (same.outcome, same.change) == (Outcome.SAME, 0.0)
    # Exactly 10% lower every round, no spread: different at the first look.
    lower = decide(rounds_of([0.9] * MIN_ROUNDS), "higher")
    assert lower.verdict == Verdict.REGRESSED and lower.change == pytest.approx(-0.1)
    # Both sides zero in a round counts as no change there.
    zeros = [Round((0.0, 0.0), (0.0, 0.0)), *rounds_of([1.0] * MIN_ROUNDS)]
    assert decide(zeros, "higher").outcome == Outcome.SAME
    # One side zero: different at once, whatever the round.
    b_zero = decide([*rounds_of([1.0]), Round((5.0, 5.0), (0.0, 0.0))], "higher")
    assert (b_zero.verdict, b_zero.change) == (Verdict.REGRESSED, -1.0) and "B measured zero" in b_zero.reason
    a_zero = decide([Round((0.0,), (0.002,))], "lower")  # lost packets: none, then some
    assert (a_zero.verdict, a_zero.change) == (Verdict.REGRESSED, math.inf)
    # A zero among the values of a round only lowers that round's mean.
    assert decide([Round((1.0, 1.0), (0.0, 2.0))] * MIN_ROUNDS, "higher").outcome == Outcome.SAME


@pytest.mark.parametrize(
    ("rounds", "message"),
    [
        ([Round((1.0,), ())], "round 1: no B value"),
        ([Round((1.0, -1.0), (1.0,))], "round 1: A has a negative or NaN value"),
        ([Round((1.0,), (math.nan,))], "round 1: B has a negative or NaN value"),
    ],
)
def test_bad_rounds_are_refused(rounds: list[Round], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decide(rounds, "higher")


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="direction"):
        decide([], "up")
    with pytest.raises(ValueError, match="alpha"):
        decide([], "higher", alpha=0.0)
    with pytest.raises(ValueError, match="at least"):
        boundaries(MIN_ROUNDS - 1, 0.01, 0.05)


def test_boundaries_match_known_values() -> None:
    # One look: the fixed-sample critical values.
    assert spending_boundaries([1.0], 0.05, 2)[0] == pytest.approx(1.960, abs=0.002)
    assert spending_boundaries([1.0], 0.05, 1)[0] == pytest.approx(1.645, abs=0.002)
    # Five equally spaced looks, O'Brien–Fleming-type spending, two-sided 0.05
    # (Lan and DeMets; the values gsDesign and ldbounds give).
    got = spending_boundaries([0.2, 0.4, 0.6, 0.8, 1.0], 0.05, 2)
    assert got == pytest.approx((4.877, 3.357, 2.680, 2.290, 2.031), abs=0.005)
    b = boundaries(DEFAULT_MAX_ROUNDS, DEFAULT_ALPHA, DEFAULT_SAME_ERROR)
    assert len(b.different) == len(b.same) == DEFAULT_MAX_ROUNDS - MIN_ROUNDS + 1
    assert list(b.different) == sorted(b.different, reverse=True)
    assert all(d > s for d, s in zip(b.different, b.same, strict=True))
    assert b.at(DEFAULT_MAX_ROUNDS) == (b.different[-1], b.same[-1])


def test_the_simulation_runs_and_prints_its_table() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sequential.py"), "--trials", "40", "--cv", "0.05,0.1"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=120,
    ).stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and "%" in line]
    assert len(rows) == 3 * 2 * 4  # noise models x CVs x (A/A and three changes)
    assert any(r.startswith("| normal | 10% | A/A |") for r in rows)
    assert any(r.startswith("| slow+ar0.9 | 5% | -10.0% |") for r in rows)
