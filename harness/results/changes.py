"""Change points over a metric's stored history (`wgharness changes`, and `report`).

A series is one metric of one case of one lab on one fingerprint
(`harness.results.fingerprint`), its points in the order they were measured:
one point per build (or per run without a build label), each with every sample
its runs measured. The segmentation and the significance test on top are this
module's job; what reads the store and what renders are not.

This file holds the types the rest of the harness codes against; the
detection itself is being written (issue 21).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.results.records import Direction, Verdict


@dataclass(frozen=True)
class Point:
    """One point of a series: a build (or a run without one) and its samples."""

    label: str
    """The build label, or ``run ID`` for a run without one."""
    run_ids: tuple[str, ...]
    samples: tuple[float, ...]


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

    @property
    def last_good(self) -> Point:
        return self.series.points[self.index - 1]

    @property
    def first_bad(self) -> Point:
        return self.series.points[self.index]


def change_points(series: Series) -> list[ChangePoint]:
    """The change points of ``series``, oldest first."""
    raise NotImplementedError(f"change points of {series.key}: being written (issue 21)")
