"""The bisect core on made-up verdicts: every place of one step among 2 to 17 builds,
two steps, a flaky middle, unknowns and skipped builds. A verdict comes from a
made-up throughput per build: a change past 5% is decided, one under 2% is the
same, anything between is unknown."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import pytest

from harness.results.bisect import (
    Conclusion,
    Finding,
    Measure,
    Observation,
    Reference,
    Standing,
    StepLabel,
    next_move,
    standing,
    steps_bound,
)

L = StepLabel


def verdict(values: Sequence[float], build: int, reference: Reference, flaky: Collection[int]) -> StepLabel:
    if build in flaky:
        return L.UNKNOWN
    ratio = values[build] / values[0 if reference is Reference.GOOD else -1]
    if ratio < 0.95:
        return L.REGRESSED
    if ratio > 1.05:
        return L.IMPROVED
    return L.SAME if abs(ratio - 1) < 0.02 else L.UNKNOWN


def bisect(
    values: Sequence[float],
    flaky: Collection[int] = (),
    skipped: Collection[int] = (),
    failed: Collection[int] = (),
) -> tuple[Conclusion, list[Observation]]:
    seen: list[Observation] = []
    while True:
        move = next_move(len(values), seen, skipped)
        if isinstance(move, Conclusion):
            return move, seen
        assert (move.build, move.reference) not in {(o.build, o.reference) for o in seen}, "measured twice"
        label = L.FAILED if move.build in failed else verdict(values, move.build, move.reference, flaky)
        seen.append(Observation(move.build, move.reference, label))
        assert len(seen) <= 2 * len(values), "no end"


def one_step(n: int, k: int, drop: float = 0.8) -> list[float]:
    return [1.0 if i < k else drop for i in range(n)]


@pytest.mark.parametrize("n", range(2, 18))
def test_one_step_at_every_place_is_found_in_log2_steps(n: int) -> None:
    for k in range(1, n):
        done, seen = bisect(one_step(n, k))
        assert (done.finding, done.first_bad, done.last_good) == (Finding.FIRST_BAD, k, k - 1), (n, k)
        assert len(seen) <= steps_bound(n), (n, k, seen)


@pytest.mark.parametrize("n", range(2, 12))
def test_nothing_changed_or_an_improvement_is_no_regression(n: int) -> None:
    for values in ([1.0] * n, [1.0] * (n // 2) + [1.2] * (n - n // 2)):
        done, seen = bisect(values)
        assert done.finding is Finding.NO_REGRESSION, values
        assert seen[-1] == Observation(n - 1, Reference.GOOD, verdict(values, n - 1, Reference.GOOD, ()))
        assert len(seen) <= steps_bound(n)


@pytest.mark.parametrize("n", range(4, 14))
def test_two_steps_are_ambiguous_never_a_culprit(n: int) -> None:
    for k1 in range(1, n - 1):
        for k2 in range(k1 + 1, n):
            values = [1.0 if i < k1 else 0.9 if i < k2 else 0.8 for i in range(n)]
            done, _ = bisect(values)
            assert done.finding is Finding.AMBIGUOUS and "more than one step" in done.reason, (
                n,
                k1,
                k2,
                done,
            )


@pytest.mark.parametrize("n", range(4, 14))
def test_a_flaky_build_never_leads_to_a_wrong_culprit(n: int) -> None:
    for k in range(1, n):
        for j in range(1, n - 1):
            done, _ = bisect(one_step(n, k), flaky={j})
            if done.finding is Finding.FIRST_BAD:
                assert done.first_bad == k and j not in (k - 1, k), (n, k, j)
            else:
                assert done.finding is Finding.AMBIGUOUS and k in done.candidates and j in done.candidates, (
                    n,
                    k,
                    j,
                )


def test_a_flaky_build_just_before_the_step_is_named_with_it() -> None:
    done, seen = bisect(one_step(9, 4), flaky={3})
    assert (done.finding, done.candidates, done.last_good) == (Finding.AMBIGUOUS, (3, 4), 2)
    assert Observation(3, Reference.BAD, L.UNKNOWN) in seen  # the bad end asked too before passing it over


@pytest.mark.parametrize("n", range(4, 12))
def test_skipped_builds_are_passed_over(n: int) -> None:
    for k in range(1, n):
        for j in range(1, n - 1):
            for how in ("skipped", "failed"):
                kw = {how: {j}}
                done, seen = bisect(one_step(n, k), **kw)  # type: ignore[arg-type]
                assert all(o.build != j for o in seen) or how == "failed"
                if j == k - 1 or j == k:
                    assert done.finding is Finding.AMBIGUOUS and {j, k} <= set(done.candidates), (
                        n,
                        k,
                        j,
                        how,
                    )
                else:
                    assert (done.finding, done.first_bad) == (Finding.FIRST_BAD, k), (n, k, j, how)


def test_unknown_everywhere_is_ambiguous() -> None:
    done, _ = bisect([1.0, 0.97, 0.97, 0.97, 0.97])  # a 3% drop: neither same nor different
    assert done.finding is Finding.AMBIGUOUS and "the bad end against the good end: unknown" in done.reason


def test_a_small_middle_told_apart_by_the_bad_end() -> None:
    # Build 2 is 3% slower than good (unknown) and much faster than bad: good.
    done, seen = bisect([1.0, 1.0, 0.97, 0.97, 0.7, 0.7])
    assert (done.finding, done.first_bad) == (Finding.FIRST_BAD, 4)
    assert Observation(2, Reference.BAD, L.IMPROVED) in seen


def test_a_bad_build_before_a_good_one_is_not_monotonic() -> None:
    seen = [Observation(2, Reference.GOOD, L.REGRESSED), Observation(4, Reference.GOOD, L.SAME)]
    done = next_move(6, seen)
    assert isinstance(done, Conclusion) and "not monotonic" in done.reason


def test_the_same_as_both_ends_is_ambiguous() -> None:
    seen = [Observation(2, Reference.GOOD, L.SAME), Observation(2, Reference.BAD, L.SAME)]
    done = next_move(6, seen)
    assert isinstance(done, Conclusion) and done.finding is Finding.AMBIGUOUS and "both ends" in done.reason


def test_the_first_move_is_the_middle_against_the_good_end() -> None:
    assert next_move(9, []) == Measure(4, Reference.GOOD)
    assert next_move(2, []) == Measure(1, Reference.GOOD)
    assert next_move(6, [], skipped={2}) == Measure(3, Reference.GOOD)


def test_standing_table() -> None:
    assert standing(None, None) is Standing.UNMEASURED
    assert standing(L.UNKNOWN, None) is Standing.PENDING
    assert standing(None, L.SAME) is Standing.PENDING
    assert standing(L.REGRESSED, L.IMPROVED) is Standing.MIDDLE
    assert standing(L.REGRESSED, L.UNKNOWN) is Standing.BAD
    assert standing(L.IMPROVED, None) is Standing.GOOD
    assert standing(L.SAME, L.FAILED) is Standing.SKIPPED


@pytest.mark.parametrize(
    ("count", "seen", "skipped"),
    [
        (1, [], ()),
        (5, [], {0}),
        (5, [], {4}),
        (5, [Observation(0, Reference.GOOD, L.SAME)], ()),
        (5, [Observation(4, Reference.BAD, L.SAME)], ()),
        (5, [Observation(7, Reference.GOOD, L.SAME)], ()),
    ],
)
def test_what_cannot_be_is_refused(count: int, seen: list[Observation], skipped: set[int]) -> None:
    with pytest.raises(ValueError):
        next_move(count, seen, skipped)
