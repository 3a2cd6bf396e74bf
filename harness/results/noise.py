"""`wgharness noise`: each metric's run-to-run spread, per runner (fingerprint)
and lab, from the A/A data in the store, and the number of rounds the sequential
design (`harness.results.sequential`) should start with at that spread.

The rules:

* The runs: those with measurements to trust (passed or failed), each in the
  series of its fingerprint (`harness.results.fingerprint`, ``runner@hash``).
* One value per run and build: the median of the run's values of the metric (a
  run that interleaves variants gives one per variant's build). Runs of one build
  label are A/A: their differences are noise. Values without a build label are
  no A/A evidence and are left out.
* The spread of one metric in one series and lab is the coefficient of
  variation of those per-run medians, pooled over the builds with two runs or
  more: sqrt(sum over builds of sum_i (m_i / mean_b - 1)^2 / sum over builds of
  (n_b - 1)). With one build it is the sample standard deviation over the mean.
  ``n`` counts the runs it pools.
* Metrics: the judged ones (a throughput, or a figure with a better direction);
  counters kept for the record and yes/no outcomes are left out.
* The starting rounds: `starting_rounds` of the spread, from `AA_ROUNDS`.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.results.fingerprint import fingerprint
from harness.results.records import TRUSTED_STATUSES, Direction, MetricKind
from harness.results.sequential import DEFAULT_MAX_ROUNDS
from harness.results.store import Store

AA_ROUNDS: tuple[tuple[float, int], ...] = (
    (0.01, 9), (0.02, 12), (0.03, 15), (0.05, 21), (0.07, 27), (0.10, 38), (0.12, 46), (0.14, 54),
)  # fmt: skip
"""(run-to-run CV, rounds): the median number of rounds an A/A comparison took to
its decision under the sequential design's defaults (minimum effect 5%, alpha
0.8%, cap 60), normal noise, the hardest of the measured models; measured with
``benchmarks/sequential.py --noise normal --cv 0.01,...,0.14 --trials 4000``
(docs/comparing.md). The rounds grow with about the square of the CV."""


def starting_rounds(cv: float) -> int:
    """The rounds to start with at run-to-run spread ``cv``: what an A/A comparison
    needs in the median (`AA_ROUNDS`, linear in between, rounded up); most nights
    nothing changed, and a real change of 10% decides sooner. Below the table its
    first row; above it the cap (`DEFAULT_MAX_ROUNDS`), where the design no longer
    meets its targets (raise the cap or the minimum effect)."""
    if math.isnan(cv) or cv < 0:
        raise ValueError(f"cv {cv}: a coefficient of variation is 0 or more")
    if cv > AA_ROUNDS[-1][0]:
        return DEFAULT_MAX_ROUNDS
    cvs, rounds = zip(*AA_ROUNDS, strict=True)
    return math.ceil(float(np.interp(cv, cvs, rounds)) - 1e-9)  # 1e-9: a table row stays itself


@dataclass(frozen=True)
class Spread:
    """One metric's run-to-run spread in one series (fingerprint) and lab."""

    series: str
    """The fingerprint's label, ``runner@hash``."""
    runner: str
    lab: str
    key: str
    """The metric's key, ``suite/case[/flow_direction]/metric``."""
    unit: str
    n: int
    """Runs pooled (each in a build with another run of it)."""
    builds: int
    cv: float
    """Coefficient of variation of the per-run medians (0.05: 5%)."""
    rounds: int
    """The starting number of rounds (`starting_rounds`)."""


def pooled_cv(groups: Sequence[Sequence[float]]) -> float:
    """The coefficient of variation pooled over ``groups`` (each the per-run
    medians of one build; those with fewer than two values are skipped); NaN when
    no group has two values or a group's mean is zero."""
    squares, df = 0.0, 0
    for values in groups:
        if len(values) < 2:
            continue
        mean = statistics.fmean(values)
        if mean == 0:
            return math.nan
        squares += sum((v / mean - 1) ** 2 for v in values)
        df += len(values) - 1
    return math.sqrt(squares / df) if df else math.nan


def spreads(
    store: Store, *, lab: str | None = None, runner: str | None = None, metrics: Sequence[str] = ()
) -> list[Spread]:
    """Every judged metric's spread, per series and lab, from the stored runs (only
    lab ``lab``, runner ``runner``, the metrics named ``metrics`` when given); sorted
    by lab, series and metric."""
    medians: dict[tuple[str, str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    about: dict[tuple[str, str, str], tuple[str, str]] = {}  # -> (runner, unit)
    for summary in store.list_runs(limit=1_000_000):
        if summary.status not in TRUSTED_STATUSES or lab not in (None, summary.lab_name):
            continue
        details = store.get_run(summary.id)
        print_ = fingerprint(details)
        if runner not in (None, print_.runner):
            continue
        values: dict[tuple[str, str], list[float]] = defaultdict(list)
        for m in details.measurements:
            build = m.build or details.run.build
            judged = m.direction != Direction.NONE and m.kind != MetricKind.OUTCOME
            if build and judged and (not metrics or m.metric in metrics):
                values[m.key, build].append(m.value)
                about[print_.label, summary.lab_name, m.key] = (print_.runner, m.unit)
        for (key, build), vs in values.items():
            medians[print_.label, summary.lab_name, key][build].append(statistics.median(vs))
    out = []
    for (series, lab_name, key), by_build in medians.items():
        groups = [vs for vs in by_build.values() if len(vs) >= 2]
        cv = pooled_cv(groups)
        if math.isnan(cv):
            continue
        run_name, unit = about[series, lab_name, key]
        out.append(Spread(series, run_name, lab_name, key, unit, sum(map(len, groups)), len(groups), cv,
                          starting_rounds(cv)))  # fmt: skip
    return sorted(out, key=lambda s: (s.lab, s.series, s.key))
