"""``wgharness bisect``: find the first bad build of a range by adaptive paired rounds.

* `run_step` measures one step: a build against an end, in adaptive rounds
  (`harness.run.rounds.run_adaptive`), stored as a run of its own (build label:
  the candidate's). Its argument, a `StepRequest`, is a plain dataclass that
  `harness.codec` turns into JSON and back, so a step can be queued as a job.
* `run_bisect` asks the core (`harness.results.bisect.next_move`) what to measure,
  builds a commit when one is needed (`harness.run.builds`), runs the step and
  feeds its verdict back, until the core concludes. The bisect is stored as a run
  of lab ``bisect:LAB`` (build ``GOOD..BAD``), with its plan (``bisect-plan.json``)
  stored first, each step (``bisect-step-NNN.json``) as soon as it is measured,
  and at the end the report (``bisect.json``) and its summary (``summary.md``).
* Resume: a bisect of the same plan (lab file, ends, builds, settings) that did
  not conclude (interrupted, broken, killed) lends its measured steps to the
  next one, which runs only what is still missing; ``--resume ID`` names the one.
* A signal (Ctrl-C, SIGTERM, SIGHUP) ends the step's run as interrupted (its lab
  comes down) and the bisect as interrupted; a build's worktree is removed.
"""

from __future__ import annotations

import functools
import os
import shlex
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from harness import __version__
from harness.codec import from_json, to_json
from harness.errors import HarnessError, InfraError, UsageError
from harness.lab.spec import Lab, load_lab
from harness.results.bisect import (
    BISECT_ARTIFACT,
    LAB_PREFIX,
    PLAN_ARTIFACT,
    STEP_ARTIFACT,
    BisectPlan,
    BisectReport,
    Build,
    Conclusion,
    Finding,
    MetricEvidence,
    Reference,
    Step,
    StepLabel,
    next_move,
    step_label,
    stored_report,
)
from harness.results.records import RunRecord, RunStatus, new_run_id
from harness.results.render.bisect import render_markdown, step_line
from harness.results.rounds import ROUNDS_ARTIFACT, RoundsReport, RoundsSettings, Stop
from harness.results.store import Store
from harness.run.builds import GitRange, build_commit
from harness.run.cleanup import signals_deferred
from harness.run.hostlock import LockPolicy
from harness.run.rounds import RoundsRequest, plan_adaptive, run_adaptive
from harness.run.runner import RunOptions

STATUS_BY_FINDING = {
    Finding.NO_REGRESSION: RunStatus.PASSED,
    Finding.FIRST_BAD: RunStatus.FAILED,
    Finding.AMBIGUOUS: RunStatus.FAILED,
}
"""How a concluded bisect's record is finished (ambiguous: failed, the error saying why)."""


@dataclass(frozen=True)
class StepRequest:
    """One step: ``candidate`` against ``baseline`` in adaptive rounds on ``lab``, the
    programs set on the tunnel ends ``ends`` (empty: every end). JSON-able (`harness.codec`)."""

    lab: str
    ends: tuple[str, ...]
    baseline: Build
    candidate: Build
    settings: RoundsSettings
    store: str | None = None
    duration: int | None = None
    suites: tuple[str, ...] | None = None
    runner: str | None = None
    no_lock: bool = False
    lock_timeout: float | None = None
    clean_stale: bool = False
    verbose: bool = False
    job: str | None = None
    """The fleet job that runs the step (`harness.fleet`), stored with its run."""

    def rounds_request(self) -> RoundsRequest:
        options = RunOptions(
            lab=self.lab,
            suites=self.suites,
            duration=self.duration,
            build=self.candidate.label,
            store=self.store,
            verbose=self.verbose,
            lock=LockPolicy(enabled=not self.no_lock, timeout=self.lock_timeout),
            runner=self.runner,
            clean_stale=self.clean_stale,
            job=self.job,
        )
        return RoundsRequest(
            options,
            self.baseline.label,
            self.settings,
            self.baseline.program,
            self.candidate.program,
            self.ends or None,
        )


@dataclass(frozen=True)
class StepResult:
    run_id: str | None
    status: RunStatus
    """The step's run: passed (a verdict), failed (a test failed: the build is skipped),
    error or interrupted (no verdict: the bisect stops)."""
    label: StepLabel
    rounds: int
    metrics: tuple[MetricEvidence, ...] = ()
    note: str = ""


def run_step(request: StepRequest) -> StepResult:
    """Measure one step (see the top)."""
    done = run_adaptive(request.rounds_request())
    return step_result(done.run_id, done.status, done.report)


def step_result(run_id: str | None, status: RunStatus, report: RoundsReport | None) -> StepResult:
    """A step's result from its run's status and rounds report (None: the rounds never
    began): a verdict only from a run that passed and decided or reached its cap."""
    measured = status is RunStatus.PASSED and report is not None and report.stop in (Stop.DECIDED, Stop.CAP)
    return StepResult(
        run_id,
        status,
        step_label(report, measured),
        report.rounds if report else 0,
        tuple(MetricEvidence.of(m) for m in report.metrics) if report else (),
        (report.note if report else "") or ("" if measured else f"the step's run {status}"),
    )


def stored_step(store: Store, run_id: str) -> StepResult:
    """The result of a step whose run is stored (measured elsewhere, e.g. by a fleet worker)."""
    details = store.get_run(run_id)
    report = None
    if ROUNDS_ARTIFACT in details.artifacts:
        report = from_json(store.get_artifact(run_id, ROUNDS_ARTIFACT), RoundsReport)
    return step_result(run_id, details.summary.status, report)


@dataclass(frozen=True)
class BisectRequest:
    step: StepRequest
    """What every step shares (its ends, settings, store...); its builds are replaced."""
    builds: tuple[Build, ...]
    """Good end first, bad end last; a commit's program is None until built."""
    source: str
    git: GitRange | None = None
    resume: str | None = None
    command: str = ""


@dataclass(frozen=True)
class BisectOutcome:
    bisect_id: str
    report: BisectReport
    status: RunStatus
    """passed (no regression), failed (a culprit, or ambiguous), error, interrupted."""
    resumed_from: str | None = None


def lab_ends(lab: Lab, ends: Sequence[str] | None) -> tuple[str, ...]:
    """The tunnel ends the builds run on: those named, or the lab's one end with a
    ``program`` of its own. UsageError otherwise."""
    hosts = [e.host for e in lab.tunnel.ends]
    if lab.variants:
        raise UsageError(f"{lab.path} has [[variants]]: a bisect names its own builds; use a lab without")
    if ends:
        other = [h for h in ends if h not in hosts]
        if other:
            raise UsageError(
                f"--end {','.join(other)}: no tunnel end of {lab.path} (its ends: {', '.join(hosts)})"
            )
        return tuple(h for h in hosts if h in ends)
    custom = [e.host for e in lab.tunnel.ends if e.program]
    if len(custom) != 1:
        raise UsageError(
            f"{lab.path}: name the tunnel end whose build changes with --end ({' or '.join(hosts)}, or {','.join(hosts)})"
        )
    return (custom[0],)


def settings_key(step: StepRequest) -> str:
    """What of a step's request changes a verdict, as text (part of the plan)."""
    suites = ",".join(step.suites) if step.suites else "*"
    return f"{to_json(step.settings)} duration={step.duration} suites={suites}"


def _find_resumable(
    store: Store, lab: Lab, plan: BisectPlan, resume: str | None
) -> tuple[str, BisectReport] | None:
    """The steps to take over: those of bisect ``resume``, or of the newest bisect of
    this plan that did not conclude."""
    if resume is not None:
        details = store.get_run(resume)
        if PLAN_ARTIFACT not in details.artifacts:
            raise UsageError(f"--resume {resume}: run {details.run.id} is no bisect")
        old = stored_report(details.artifacts, functools.partial(store.get_artifact, details.run.id))
        if old.plan.key() != plan.key():
            raise UsageError(
                f"--resume {resume}: bisect {details.run.id} was of other builds, ends, lab file or settings"
            )
        return details.run.id, old
    unfinished = (RunStatus.INTERRUPTED, RunStatus.ERROR, RunStatus.ABORTED)
    statuses = (RunStatus.INTERRUPTED, RunStatus.ERROR, RunStatus.RUNNING)
    for run in store.runs_of_lab(LAB_PREFIX + lab.name, statuses=statuses, limit=20):
        if run.status not in unfinished:
            continue
        details = store.get_run(run.id)
        if PLAN_ARTIFACT in details.artifacts:
            old = stored_report(details.artifacts, functools.partial(store.get_artifact, run.id))
            if old.plan.key() == plan.key():
                return run.id, old
    return None


class _Record:
    """The bisect's run in the store: begun, its steps added one by one, finished."""

    def __init__(self, store: Store, lab: Lab, plan: BisectPlan, step: StepRequest, command: str) -> None:
        self.store = store
        self.id = new_run_id()
        first, last = plan.builds[0].label, plan.builds[-1].label
        store.begin_run(
            RunRecord(
                id=self.id,
                started_at=datetime.now(UTC),
                lab_name=LAB_PREFIX + lab.name,
                lab_path=lab.path,
                lab_sha256=lab.sha256,
                lab_text=lab.text,
                build=f"{first}..{last}"[:255],
                harness_version=__version__,
                command=command or shlex.join(sys.argv),
                pid=os.getpid(),
                hostname=socket.gethostname(),
                runner=step.runner or socket.gethostname(),
            )
        )
        store.add_artifact(self.id, PLAN_ARTIFACT, to_json(plan, indent=1).encode(), "application/json")

    def add_step(self, step: Step) -> None:
        name = STEP_ARTIFACT.format(step.number)
        self.store.add_artifact(self.id, name, to_json(step, indent=1).encode(), "application/json")

    def finish(self, report: BisectReport, status: RunStatus, error: str | None) -> None:
        if report.conclusion is not None:
            data = to_json(report, indent=1).encode()
            self.store.add_artifact(self.id, BISECT_ARTIFACT, data, "application/json")
            self.store.add_artifact(self.id, "summary.md", render_markdown(report).encode(), "text/markdown")
        self.store.finish_run(self.id, status, error)


def _built(request: BisectRequest, builds: list[Build], i: int, say: Callable[[str], None]) -> Build:
    """Build ``i``, built now if it is a commit not built yet."""
    b = builds[i]
    if b.program is not None or b.problem is not None or request.git is None:
        return b
    say(f"building {b.label} ({b.commit})")
    builds[i] = build_commit(request.git, b)
    if builds[i].problem:
        say(f"{b.label}: {builds[i].problem}: skipped")
    return builds[i]


Measurer = Callable[[StepRequest], StepResult]
"""What measures a step: `run_step` here, or one that queues it as a job and waits."""


def run_bisect(
    request: BisectRequest, say: Callable[[str], None], measure: Measurer | None = None
) -> BisectOutcome:
    """Bisect the range (see the top); ``say`` hears a line per build and step;
    ``measure`` measures each step (default: `run_step`, in this process)."""
    step0 = request.step
    lab = load_lab(step0.lab)
    ends = lab_ends(lab, step0.ends or None)
    step0 = replace(step0, ends=ends)
    builds = list(request.builds)
    plan = BisectPlan(lab.path, lab.sha256, ends, tuple(request.builds), request.source, settings_key(step0))
    # Usage errors before anything is built, run or stored (a commit's program: once built).
    plan_adaptive(replace(step0, baseline=builds[0], candidate=builds[-1]).rounds_request())
    from harness.run.pytest_plugin import root_problem

    problem = root_problem() if measure is None else None  # measured elsewhere: no lab here
    if problem is not None:
        raise UsageError(problem)
    Store.open(step0.store).close()
    for i, end in ((0, "good"), (len(builds) - 1, "bad")):
        b = _built(request, builds, i, say)
        if b.problem:
            raise InfraError(f"the {end} end {b.label}: {b.problem}")
    with Store.open(step0.store) as store:
        old = _find_resumable(store, lab, plan, request.resume)
        record = _Record(store, lab, plan, step0, request.command)
        report = BisectReport(plan, builds=tuple(builds))
        if old is not None:
            old_id, old_report = old
            say(
                f"bisect {record.id}: taking over {len(old_report.steps)} measured step(s) of bisect {old_id}"
            )
            for s in old_report.steps:
                taken = replace(s, number=len(report.steps) + 1, reused_from=s.reused_from or old_id)
                record.add_step(taken)
                report = replace(report, steps=(*report.steps, taken))
        else:
            say(
                f"bisect {record.id}: {len(builds)} builds, {builds[0].label} (good) to {builds[-1].label} (bad)"
            )
        status: RunStatus = RunStatus.ERROR
        error: str | None = "the bisect broke"
        try:
            report, status, error = _bisect_loop(
                request, step0, report, builds, record, say, measure or run_step
            )
        except KeyboardInterrupt as exc:
            status, error = RunStatus.INTERRUPTED, None
            report = replace(report, builds=tuple(builds), note=str(exc) or "interrupted")
        except HarnessError as exc:
            status, error = RunStatus.ERROR, str(exc)
            report = replace(report, builds=tuple(builds), note=error)
        finally:
            with signals_deferred(reraise=False):
                record.finish(report, status, error)
    return BisectOutcome(record.id, report, status, old[0] if old else None)


def _bisect_loop(
    request: BisectRequest,
    step0: StepRequest,
    report: BisectReport,
    builds: list[Build],
    record: _Record,
    say: Callable[[str], None],
    measure: Measurer,
) -> tuple[BisectReport, RunStatus, str | None]:
    n = len(builds)
    while True:
        skipped = {i for i, b in enumerate(builds) if b.problem}
        move = next_move(n, [s.observation for s in report.steps], skipped, [b.label for b in builds])
        if isinstance(move, Conclusion):
            report = replace(report, conclusion=move, builds=tuple(builds))
            error = f"{move.finding}: {move.reason}" if move.finding is Finding.AMBIGUOUS else None
            return report, STATUS_BY_FINDING[move.finding], error
        candidate = _built(request, builds, move.build, say)
        if candidate.problem:
            continue
        ref = 0 if move.reference is Reference.GOOD else n - 1
        number = len(report.steps) + 1
        say(f"step {number}: {candidate.label} against the {move.reference} end {builds[ref].label}")
        result = measure(replace(step0, baseline=builds[ref], candidate=candidate))
        if result.status.infrastructure:
            report = replace(report, builds=tuple(builds), note=f"step {number}: {result.note}")
            if result.status is RunStatus.INTERRUPTED:
                raise KeyboardInterrupt(report.note)
            raise InfraError(f"{report.note} (run {result.run_id}); resume with the same command")
        step = Step(
            number,
            move.build,
            move.reference,
            ref,
            result.label,
            result.run_id,
            result.rounds,
            result.metrics,
            result.note,
        )
        record.add_step(step)
        report = replace(report, steps=(*report.steps, step))
        say(step_line(report, step))
