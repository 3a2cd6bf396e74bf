"""What a fleet job is, without the queue: its kind, its arguments, its labels.

The rules:
* A job is a ``wgharness`` command line that a worker runs on its own machine, as
  a child process: `KINDS` maps each kind of job to the function that makes that
  command line from the job's arguments. Adding a kind (a cell of a matrix) is
  one small function and one row of `KINDS`; a bisect step (``bisect-step``) is
  one such.
* Arguments are JSON (`harness.codec`): a lab file travels as its text *and* the
  path it was submitted with (`LabFile`). A worker runs the file at that path when
  it holds the very same text there (so paths inside it resolve as on the
  submitting machine); otherwise it writes the text into a folder of its own and
  runs that copy.
* Labels: a job names the labels a runner must have (``--label kvm``); a worker
  with labels L takes the jobs whose labels are all in L. On the queue each set of
  labels is a procrastinate queue of its own (`queue_of`), and a worker listens on
  the queue of every subset of its labels (`queues_for`).
* Every run a job makes carries the job's id (``--fleet-job``, stored as runs.job),
  so a job run again after its worker was lost can tell what is already stored.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from harness.codec import decode, encode, to_json
from harness.errors import UsageError
from harness.run.bisect import StepRequest

QUEUE_PREFIX = "wgh"
"""Every job queue's name begins so; ``wgh`` alone is the queue of jobs that need no label."""
MAINTENANCE_QUEUE = "wgh-maintenance"
"""The queue of the fleet's own periodic work (giving back the jobs of lost workers)."""
MAX_LABELS = 6
"""A worker listens on a queue per subset of its labels: 2**6 = 64 at most."""
_LABEL = re.compile(r"[a-z0-9][a-z0-9_.-]{0,23}")


def parse_labels(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """Labels from ``kvm,windows`` (or a list of such), sorted, each once; a label is
    lower-case letters, digits, ``_.-``, up to 24 characters."""
    if text is None:
        return ()
    parts = [text] if isinstance(text, str) else list(text)
    labels = {p.strip() for part in parts for p in part.split(",") if p.strip()}
    for label in sorted(labels):
        if not _LABEL.fullmatch(label):
            raise UsageError(
                f"label {label!r}: lower-case letters, digits, '_', '.' and '-', up to 24 characters"
            )
    if len(labels) > MAX_LABELS:
        raise UsageError(f"at most {MAX_LABELS} labels, got {len(labels)}")
    return tuple(sorted(labels))


def queue_of(labels: Sequence[str]) -> str:
    """The queue of jobs that need exactly ``labels`` (sorted): ``wgh:kvm:windows``."""
    return ":".join((QUEUE_PREFIX, *sorted(labels)))


def labels_of(queue: str) -> tuple[str, ...]:
    """The labels a job on ``queue`` needs (the inverse of `queue_of`)."""
    return tuple(queue.split(":")[1:])


def queues_for(labels: Sequence[str]) -> list[str]:
    """The queues a worker with ``labels`` takes jobs from: one per subset of them."""
    ordered = sorted(set(labels))
    return [
        queue_of(subset) for n in range(len(ordered) + 1) for subset in itertools.combinations(ordered, n)
    ]


def can_run(worker_labels: Sequence[str], job_labels: Sequence[str]) -> bool:
    """Whether a worker with ``worker_labels`` takes a job that needs ``job_labels``."""
    return set(job_labels) <= set(worker_labels)


# -- the arguments of each kind ----------------------------------------------------
@dataclass(frozen=True)
class LabFile:
    path: str
    """As given to ``submit`` (a worker resolves a relative one from its working folder)."""
    text: str
    """The file's text, so a worker without the file (or with another version) can run it."""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass(frozen=True)
class RunArgs:
    """``wgharness run LAB``'s options that say what to measure (how to hold the
    machine is the worker's business: ``--no-lock``, ``--lock-timeout``)."""

    lab: LabFile
    suites: tuple[str, ...] = ()
    duration: int | None = None
    repeat: int | None = None
    build: str | None = None


@dataclass(frozen=True)
class NightlyArgs:
    """``wgharness nightly LAB``: a run of a build compared with a baseline; its
    reports are written on the worker, in ``out``."""

    lab: LabFile
    build: str
    baseline: str
    out: str
    suites: tuple[str, ...] = ()
    duration: int | None = None
    repeat: int | None = None


@dataclass(frozen=True)
class BisectStepArgs:
    """A step of ``wgharness bisect --fleet``: its request, whose lab, store, runner and
    lock settings the worker replaces with its own (its programs must be at the same
    paths on the worker)."""

    lab: LabFile
    step: StepRequest


def _common(lab_file: str, suites: Sequence[str], duration: int | None, repeat: int | None) -> list[str]:
    argv = [lab_file]
    for suite in suites:
        argv += ["--suite", suite]
    if duration is not None:
        argv += ["--duration", str(duration)]
    if repeat is not None:
        argv += ["--repeat", str(repeat)]
    return argv


def run_command(args: RunArgs, lab_file: str) -> list[str]:
    argv = ["run", *_common(lab_file, args.suites, args.duration, args.repeat)]
    return argv + (["--build", args.build] if args.build else [])


def nightly_command(args: NightlyArgs, lab_file: str) -> list[str]:
    argv = ["nightly", *_common(lab_file, args.suites, args.duration, args.repeat)]
    return argv + ["--build", args.build, "--baseline", args.baseline, "--out", args.out]


def bisect_step_command(args: BisectStepArgs, lab_file: str) -> list[str]:
    step = replace(args.step, lab=lab_file, store=None, runner=None, job=None)
    return ["bisect", lab_file, "--step-json", to_json(step)]


def bisect_step_summary(args: BisectStepArgs) -> str:
    step = args.step
    return f"bisect step {args.lab.path}: {step.candidate.label} against {step.baseline.label}"


@dataclass(frozen=True)
class Kind:
    args: type
    """The dataclass of its arguments (it has a ``lab: LabFile``)."""
    command: Callable[[Any, str], list[str]]
    """The ``wgharness`` arguments that run a job of the kind, given the lab file to use."""
    summary: Callable[[Any], str] | None = None
    """One line for a job list, when the command line is too long to read (default: it)."""


KINDS: dict[str, Kind] = {
    "run": Kind(RunArgs, run_command),
    "nightly": Kind(NightlyArgs, nightly_command),
    "bisect-step": Kind(BisectStepArgs, bisect_step_command, bisect_step_summary),
}
"""Every kind of job, by name."""


def encode_args(kind: str, args: object) -> dict[str, Any]:
    if kind not in KINDS or not isinstance(args, KINDS[kind].args):
        raise ValueError(f"no job kind {kind!r} takes {type(args).__name__}")
    return {"kind": kind, "args": encode(args)}


def decode_args(payload: Any) -> tuple[str, Any]:
    """The kind and arguments of a job (`encode_args`'s inverse); a `ValueError` naming
    what is wrong for a payload this version cannot run."""
    if not isinstance(payload, dict) or set(payload) != {"kind", "args"}:
        raise ValueError("a job's arguments are {kind, args}")
    kind = payload["kind"]
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r} (this worker knows: {', '.join(KINDS)})")
    return kind, decode(payload["args"], KINDS[kind].args)


def describe(kind: str, args: Any) -> str:
    """One line for a job list: ``run benchmarks/overhead.toml --duration 1``."""
    summary = KINDS[kind].summary
    return summary(args) if summary else " ".join(KINDS[kind].command(args, args.lab.path))
