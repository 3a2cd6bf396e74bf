"""Adaptive paired rounds: run two builds round after round in one lab until every
metric is decided, or the cap. The loop only asks `harness.results.sequential.decide`;
the records it fills are `harness.results.rounds`'s.

* `run_rounds` is the loop, on a callable that measures one round (so it runs
  without a lab in the tests): after each round it asks `decide` for every
  metric not yet decided, and stops when all are, at ``max_rounds``, when a round
  did not complete (a test failed or errored), or when the first round measured
  no metric the settings name.
* `RoundsPlugin` is that callable for a real run: a pytest plugin that runs the
  collected tests round by round instead of all in a row. The lab stays up
  across rounds; its tunnel is swapped between the two builds as `[[variants]]`
  swaps it (`LabInstance.switch_variant`). Round k runs repetitions 2k-1 and 2k
  of every flow, for A and B in the order ``ORDERS[(k-1) % 2]`` (A B B A, then
  B A A B). Everything goes into one run, each measurement labelled with its
  build, so ``compare build:A build:B`` reads the same samples. The report is
  stored with the run (`ROUNDS_ARTIFACT`) whatever ends the rounds, Ctrl-C and
  SIGTERM included (then as interrupted).
* `run_adaptive` validates the request (usage errors before anything is
  created), names the two builds' variants, and runs the lab with the plugin.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import pytest

from harness.codec import to_json
from harness.errors import UsageError
from harness.lab.spec import Lab, VariantSpec, load_lab
from harness.results.records import RunStatus
from harness.results.render.rounds import progress_line
from harness.results.rounds import (
    ROUNDS_ARTIFACT,
    MetricId,
    MetricRounds,
    RoundsReport,
    RoundsSettings,
    Side,
    Stop,
    round_repetitions,
    round_samples,
)
from harness.results.sequential import ORDERS, Round, decide
from harness.run.runner import RunOptions, run_lab
from harness.targets.base import HostKind

if TYPE_CHECKING:
    from harness.run.session import RunSession

PAIRED_SUITES = ("throughput",)
"""The suites whose tests run once per variant (they take the ``variant`` fixture)."""


@dataclass(frozen=True)
class Measured:
    """What one round measured."""

    samples: Mapping[MetricId, Round]
    problem: str | None = None
    """Why the round did not complete (a test failed or errored); None: it did."""


Measure = Callable[[int, str], Measured]
"""Runs round k (from 1) in the order given (``ORDERS``: "ABBA" or "BAAB")."""


def run_rounds(
    measure: Measure, start: RoundsReport, on_round: Callable[[RoundsReport], None] | None = None
) -> RoundsReport:
    """Rounds from ``start`` (no round run yet, or some) until `RoundsReport.stop`;
    ``on_round`` hears the report after every round."""
    report = start
    while report.stop is None:
        k = report.rounds + 1
        report = next_round(report, measure(k, ORDERS[(k - 1) % 2]))
        if on_round is not None:
            on_round(report)
    return report


def next_round(report: RoundsReport, measured: Measured) -> RoundsReport:
    """``report`` with one more round: each undecided metric's decision asked
    again, a decided one's kept; and whether to stop."""
    k = report.rounds + 1
    s = report.settings
    known = {m.metric: m for m in report.metrics}
    ids = sorted(measured.samples, key=lambda m: m.key) if k == 1 else list(known)
    problems = [measured.problem] if measured.problem else []
    metrics: list[MetricRounds] = []
    for mid in ids:
        before = known.get(mid)
        sample = measured.samples.get(mid)
        if sample is None:
            problems.append(f"round {k}: no value of {mid.short} for both builds")
            if before is not None:
                metrics.append(before)
            continue
        rounds = (*(before.rounds if before else ()), sample)
        decision = before.decision if before is not None and before.decision.outcome.decided else None
        if decision is None:
            try:
                decision = decide(rounds, mid.direction, min_effect=s.effect_for(mid.metric),
                                  alpha=s.alpha, max_rounds=s.max_rounds, same_error=s.same_error)  # fmt: skip
            except ValueError as exc:  # a negative or NaN value
                problems.append(f"{mid.short}: {exc}")
                if before is not None:
                    metrics.append(before)
                continue
        metrics.append(MetricRounds(mid, rounds, decision))
    stop, note = None, ""
    if problems:
        stop, note = Stop.FAILED, "; ".join(problems)
    elif not metrics:
        stop, note = Stop.NOTHING, f"round 1 measured no metric named {', '.join(s.metrics)} for both builds"
    elif all(m.decision.outcome.decided for m in metrics):
        stop = Stop.DECIDED
    elif k >= s.max_rounds:
        stop = Stop.CAP
    return replace(report, rounds=k, metrics=tuple(metrics), stop=stop, note=note)


def stopped(report: RoundsReport, how: Stop, note: str) -> RoundsReport:
    """``report`` ended from outside the loop (interrupted, broken)."""
    return report if report.stop is not None else replace(report, stop=how, note=note)


class RoundsPlugin:
    """A plugin object for `run_lab`: runs the collected tests round by round,
    with `run_rounds`, and stores the report with the run."""

    def __init__(self, start: RoundsReport, variants: tuple[str, str]) -> None:
        self.report = start
        self.variants = dict(zip("AB", variants, strict=True))
        """Variant name of A and of B."""

    def _round_items(self, items: list[pytest.Item], k: int, order: str) -> list[pytest.Item]:
        """Round k's tests: each of its four runs (a letter of ``order``) in turn,
        its flows in the order collected."""
        reps = round_repetitions(k)
        out: list[pytest.Item] = []
        for j, letter in enumerate(order):
            rep, variant = reps[j // 2], self.variants[letter]
            out += [i for i in items if _param(i, "repetition") == rep and _param(i, "variant") == variant]
        return out

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        from harness.run.pytest_plugin import RUN_KEY

        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            raise session.Interrupted(f"{session.testsfailed} error(s) during collection")
        if session.config.option.collectonly:
            return True
        run: RunSession = session.config.stash[RUN_KEY]
        items = list(session.items)
        a, b = self.report.baseline.build, self.report.candidate.build

        def measure(k: int, order: str) -> Measured:
            chosen = self._round_items(items, k, order)
            following = self._round_items(items, k + 1, ORDERS[k % 2])
            failed = session.testsfailed
            for i, item in enumerate(chosen):
                # The next round's first test as the next item keeps the lab up, should it run.
                nextitem = chosen[i + 1] if i + 1 < len(chosen) else (following[0] if following else None)
                item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
                if session.shouldfail:
                    raise session.Failed(session.shouldfail)
                if session.shouldstop:
                    raise session.Interrupted(session.shouldstop)
            failed = session.testsfailed - failed
            values = run.store.get_run(run.run_id).measurements
            samples = round_samples(values, k, a, b, self.report.settings.metrics)
            return Measured(samples, f"round {k}: {failed} test(s) failed or errored" if failed else None)

        def on_round(report: RoundsReport) -> None:
            self.report = report
            run.progress.step(progress_line(report))

        try:
            self.report = run_rounds(measure, self.report, on_round)
        except KeyboardInterrupt:
            self.report = stopped(
                self.report, Stop.INTERRUPTED, f"interrupted in round {self.report.rounds + 1}"
            )
            raise
        except Exception as exc:
            self.report = stopped(self.report, Stop.FAILED, f"round {self.report.rounds + 1}: {exc}")
            raise
        finally:
            run.artifact(ROUNDS_ARTIFACT, to_json(self.report, indent=1).encode(), "application/json")
        return True


def _param(item: pytest.Item, name: str) -> object:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get(name) if callspec is not None else None


@dataclass(frozen=True)
class RoundsRequest:
    """Two builds to run against each other in adaptive rounds."""

    options: RunOptions
    """The lab and its overrides; ``build`` is the candidate's label (the run's build)."""
    baseline: str
    """The baseline's build label."""
    settings: RoundsSettings
    baseline_program: str | None = None
    candidate_program: str | None = None
    ends: tuple[str, ...] | None = None
    """The tunnel ends (hosts) whose program the builds set; None: every end."""


@dataclass(frozen=True)
class RoundsOutcome:
    run_id: str | None
    """None when pytest stopped before the run was stored."""
    status: RunStatus
    report: RoundsReport | None
    """None when the rounds never began (the run broke before its first test)."""


def paired_variants(lab: Lab, request: RoundsRequest) -> tuple[VariantSpec, VariantSpec]:
    """The baseline's and the candidate's variants: the lab file's ``[[variants]]``
    with their build labels, or, for a lab without, the programs given (either may
    be None: the lab's own). UsageError on what does not fit."""
    base, cand = request.baseline, request.options.build
    if not cand:
        raise UsageError("adaptive rounds need the candidate's build label (--build)")
    if base == cand:
        raise UsageError(f"the baseline and the candidate are both build {base!r}")
    programs = (request.baseline_program, request.candidate_program)
    if lab.variants:
        if any(programs):
            raise UsageError(
                f"{lab.path} has [[variants]]: name the programs there, not with --baseline-program/--candidate-program"
            )
        by_build = {v.build: v for v in lab.variants}
        missing = [label for label in (base, cand) if label not in by_build]
        if missing:
            raise UsageError(
                f"{lab.path}: no variant has build {' or '.join(map(repr, missing))} "
                f"(its variants' builds: {', '.join(by_build)})"
            )
        return by_build[base], by_build[cand]
    hosts = tuple(e.host for e in lab.tunnel.ends)
    if request.ends is not None:
        other = [h for h in request.ends if h not in hosts]
        if other or not request.ends:
            raise UsageError(
                f"{lab.path}: {', '.join(other) or 'no end'} is no tunnel end (its ends: {', '.join(hosts)})"
            )
        hosts = tuple(h for h in hosts if h in request.ends)
    local = all(lab.hosts[h].kind is HostKind.NETNS for h in hosts)
    for option, program in zip(("--baseline-program", "--candidate-program"), programs, strict=True):
        if program and local and "/" in program and not os.access(program, os.X_OK):
            raise UsageError(f"{option} {program}: not an executable file")
    return (
        VariantSpec("baseline", base, hosts, program=request.baseline_program),
        VariantSpec("candidate", cand, hosts, program=request.candidate_program),
    )


def plan_adaptive(request: RoundsRequest) -> tuple[RunOptions, RoundsPlugin]:
    """Validate the request (UsageError before anything is created): the run's
    options and the plugin that runs its rounds."""
    options = request.options
    if options.repeat is not None:
        raise UsageError("--repeat: adaptive rounds run two repetitions of each build per round")
    settings = request.settings
    if settings.max_rounds < 3:
        raise UsageError(
            f"--max-rounds: at least 3 (the first look is after round 3), got {settings.max_rounds}"
        )
    lab = load_lab(options.lab).with_overrides(suites=options.suites)
    unpaired = [s.name for s in lab.suites if s.name not in PAIRED_SUITES]
    if unpaired:
        raise UsageError(
            f"{options.lab}: suite {', '.join(unpaired)} does not run per build: adaptive rounds "
            f"measure {', '.join(PAIRED_SUITES)} (choose it with --suite)"
        )
    a, b = paired_variants(lab, request)
    report = RoundsReport(Side(a.build, a.program, a.impl), Side(b.build, b.program, b.impl), settings)
    plugin = RoundsPlugin(report, (a.name, b.name))
    return replace(options, repeat=2 * settings.max_rounds, variants=(a, b)), plugin


def run_adaptive(request: RoundsRequest) -> RoundsOutcome:
    """Validate, then run the lab in adaptive rounds (see the top)."""
    options, plugin = plan_adaptive(request)
    outcome = run_lab(options, plugins=(plugin,))
    begun = plugin.report.rounds > 0 or plugin.report.stop is not None
    return RoundsOutcome(outcome.run_id, outcome.status, plugin.report if begun else None)
