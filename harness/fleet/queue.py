"""The fleet's queue: procrastinate on the shared store's PostgreSQL.

The rules:
* procrastinate is the queue (workers claim jobs with SKIP LOCKED, heartbeats,
  retries, periodic tasks); nothing here queues by itself. Its tables live in the
  store's database, in a schema of their own (`queue_schema`), made on first use.
* A worker runs one job at a time (concurrency 1: a benchmark owns its machine),
  each as a child ``wgharness`` process (`jobs.KINDS`), with the run's own signal
  handling and teardown. The child is started in a session of its own and dies with
  the worker: if the worker is killed, the kernel sends it SIGTERM, and the run
  tears its lab down and is stored as interrupted.
* A worker that dies mid-job stops sending heartbeats; after the lease
  (``--lease``, procrastinate's stalled worker timeout) the periodic task
  `give_back` of any live worker puts its job back on the queue (procrastinate's
  ``get_stalled_jobs`` and ``retry_job``), and another worker runs it again.
* A job run again first reads what its earlier attempts stored (runs.job): a run
  that passed or failed is the job's result, and the job ends without running
  again; a run left running is finished as error (its worker was lost). So a job
  is never counted twice.
* SIGINT, SIGTERM or SIGHUP on a worker: the signal is passed to the running job's
  run, which tears its lab down and is stored as interrupted; the job goes back
  on the queue (procrastinate's retry) and the worker exits with 128 + the signal.
  An idle worker just exits so.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import EXIT_OK, StoreError, UsageError
from harness.fleet.jobs import (
    KINDS,
    MAINTENANCE_QUEUE,
    LabFile,
    decode_args,
    describe,
    encode_args,
    labels_of,
    queue_of,
    queues_for,
)
from harness.fleet.postgres import Queue, queue_place, reason
from harness.procs import dies_with_us

if TYPE_CHECKING:
    from harness.results.store import Store

JOB_TASK = "wgharness_job"
GIVE_BACK_TASK = "wgharness_give_back"
DEFAULT_LEASE = 60.0
"""Seconds without a worker's heartbeat before its job is given to another worker."""
MAX_ATTEMPTS = 10
"""A job given back (its worker lost, or stopped by a signal) runs at most this often."""
INTERRUPTED_STATUSES = (128 + signal.SIGHUP, 128 + signal.SIGINT, 128 + signal.SIGTERM)


class JobAbandoned(Exception):
    """The worker was stopped by a signal while the job ran: the job is run again."""


def need_procrastinate() -> Any:
    try:
        import procrastinate
    except ImportError:
        raise UsageError(
            "the fleet needs the procrastinate package: pip install 'wgharness[fleet]'"
        ) from None
    return procrastinate


def _every(seconds: float) -> str:
    """A cron with seconds (procrastinate's sixth field) firing about every ``seconds``."""
    step = next(s for s in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30) if s >= min(seconds, 30))
    return f"* * * * * */{step}"


@dataclass
class _Holder:
    """The worker's state, once it is made (after the queue is open)."""

    state: WorkerState | None = None


def make_app(place: Queue, *, lease: float = DEFAULT_LEASE, worker: _Holder | None = None) -> Any:
    """The procrastinate app on ``place`` with the fleet's two tasks: the job, and the
    periodic give-back of lost workers' jobs (checked about every quarter lease)."""
    procrastinate = need_procrastinate()
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=place.conninfo, min_size=1, max_size=4)
    )

    @app.task(
        name=JOB_TASK,
        pass_context=True,
        retry=procrastinate.RetryStrategy(max_attempts=MAX_ATTEMPTS, retry_exceptions={JobAbandoned}),
    )
    async def wgharness_job(context: Any, payload: dict[str, Any]) -> str:
        if worker is None or worker.state is None:  # a submitting process never runs a job
            raise RuntimeError("no worker")
        return await worker.state.run_job(str(context.job.id), payload)

    @app.periodic(cron=_every(lease / 4), periodic_id="lost")
    @app.task(name=GIVE_BACK_TASK, queue=MAINTENANCE_QUEUE, queueing_lock=GIVE_BACK_TASK, priority=100,
              pass_context=True)  # fmt: skip
    async def give_back(context: Any, timestamp: int) -> None:
        manager = context.app.job_manager
        for job in await manager.get_stalled_jobs(seconds_since_heartbeat=lease):
            if worker is not None and worker.state is not None:
                worker.state.say(f"job {job.id}: its worker was lost; giving it back to the queue")
            await manager.retry_job(job)
        await manager.delete_old_jobs(nb_hours=1, queue=MAINTENANCE_QUEUE, include_failed=True)

    return app


@contextlib.asynccontextmanager
async def opened(store_url: str, **kwargs: Any) -> AsyncIterator[Any]:
    """The app, open: the queue's schema made if the database has none yet, and the
    store's tables (one process at a time: two workers starting at once would
    both make them)."""
    import psycopg
    from procrastinate.exceptions import ProcrastinateException

    from harness.results.store import Store

    place = queue_place(store_url)
    app = make_app(place, **kwargs)
    await place.prepare(lambda: Store.open(store_url).close())
    try:
        async with app.open_async():
            yield app
    except (psycopg.Error, ProcrastinateException) as exc:  # the database went away meanwhile
        raise StoreError(f"store {place.shown}: {reason(exc)}") from None


# -- submitting and listing ------------------------------------------------------------
def submit(store_url: str, kind: str, args: object, labels: Sequence[str]) -> int:
    """Queue a job; its id."""
    payload = encode_args(kind, args)

    async def defer() -> int:
        async with opened(store_url) as app:
            task = app.tasks[JOB_TASK]
            return int(await task.configure(queue=queue_of(labels)).defer_async(payload=payload))

    return asyncio.run(defer())


@dataclass(frozen=True)
class JobRow:
    id: int
    status: str
    attempts: int
    labels: tuple[str, ...]
    what: str
    runs: tuple[tuple[str, str, str | None], ...]
    """(run id, status, runner) of each run the job made, newest first."""


def list_jobs(store_url: str, store: Store | None) -> list[JobRow]:
    """Every fleet job, newest first, with the runs it stored (``store``: None when the
    store holds no table yet)."""

    async def read() -> list[Any]:
        async with opened(store_url) as app:
            return list(await app.job_manager.list_jobs_async(task=JOB_TASK))

    rows = []
    for job in sorted(asyncio.run(read()), key=lambda j: -int(j.id)):
        try:
            kind, args = decode_args(job.task_kwargs.get("payload"))
            what = describe(kind, args)
        except ValueError as exc:
            what = f"(unreadable: {exc})"
        runs = store.runs_of_job(str(job.id)) if store is not None else []
        rows.append(
            JobRow(
                int(job.id),
                str(job.status),
                job.attempts,
                labels_of(job.queue),
                what,
                tuple((s.id, str(s.status), runner) for s, runner in runs),
            )  # fmt: skip
        )
    return rows


# -- the worker ------------------------------------------------------------------------
@dataclass
class WorkerOptions:
    store: str
    runner: str
    labels: tuple[str, ...] = ()
    wait: bool = True
    """False (``--once``): stop when no job is waiting."""
    max_jobs: int | None = None
    lease: float = DEFAULT_LEASE
    run_options: tuple[str, ...] = ()
    """More options for every run (``--no-lock``, ``--lock-timeout S``)."""


@dataclass
class WorkerState:
    options: WorkerOptions
    store: Store
    say: Callable[[str], None]
    child: asyncio.subprocess.Process | None = None
    signals: list[int] = field(default_factory=list)
    done: int = 0
    stop: Callable[[], None] = lambda: None

    async def run_job(self, job_id: str, payload: dict[str, Any]) -> str:
        try:
            return await self._run_job(job_id, payload)
        finally:
            self.done += 1
            if self.options.max_jobs is not None and self.done >= self.options.max_jobs:
                self.stop()

    async def _run_job(self, job_id: str, payload: dict[str, Any]) -> str:
        from harness.results.records import TRUSTED_STATUSES, RunStatus

        kind, args = decode_args(payload)  # a ValueError fails the job: no retry helps
        earlier = await asyncio.to_thread(self.store.runs_of_job, job_id)
        for run, runner in earlier:
            if run.status in (RunStatus.RUNNING, RunStatus.ABORTED):
                error = f"its worker ({runner}) was lost; fleet job {job_id} was given to another"
                await asyncio.to_thread(self.store.finish_run, run.id, RunStatus.ERROR, error)
                self.say(f"job {job_id}: run {run.id} of a lost worker stored as error")
        for run, runner in earlier:
            if run.status in TRUSTED_STATUSES:
                self.say(f"job {job_id}: already stored as run {run.id} ({run.status}, runner {runner})")
                return run.id
        folder = tempfile.mkdtemp(prefix=f"wgh-job-{job_id}-")
        try:
            lab_file = lab_file_to_run(args.lab, Path(folder))
            argv = [*KINDS[kind].command(args, lab_file), "--store", self.options.store,
                    "--runner", self.options.runner, "--fleet-job", job_id, "--clean-stale",
                    *self.options.run_options]  # fmt: skip
            self.say(f"job {job_id}: wgharness {' '.join(argv)}")
            self.child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "harness", *argv,
                start_new_session=True, preexec_fn=dies_with_us(),  # SIGTERM if the worker dies
            )  # fmt: skip
            code = await self.child.wait()
        finally:
            self.child = None
            shutil.rmtree(folder, ignore_errors=True)
        self.say(f"job {job_id}: wgharness {kind} ended with status {code}")
        if self.signals and code in INTERRUPTED_STATUSES:
            raise JobAbandoned(f"stopped by {signal.Signals(self.signals[0]).name}: the job is run again")
        if code not in (0, 1):  # 1: a test failed or a regression: a result all the same
            raise RuntimeError(f"wgharness {kind} ended with status {code}")
        return "done"

    def on_signal(self, signum: int) -> None:
        first = not self.signals
        self.signals.append(signum)
        if first:
            self.say(f"{signal.Signals(signum).name}: stopping (a running job is stopped and queued again)")
            if self.child is not None and self.child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.child.send_signal(signum)
            self.stop()


def lab_file_to_run(lab: LabFile, folder: Path) -> str:
    """The lab file to run: the submitted path if it holds the same text here, else a copy."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if Path(lab.path).read_text() == lab.text:
            return lab.path
    copy = folder / (Path(lab.path).name or "lab.toml")
    copy.write_text(lab.text)
    return str(copy)


def _quiet_tracebacks(say: Callable[[str], None]) -> None:
    """procrastinate's warnings and errors as one line each, without their traceback
    (a job's failure is the run's, and the run has said why)."""
    import logging

    class OneLine(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            reason = f": {record.exc_info[1]}" if record.exc_info and record.exc_info[1] else ""
            text = re.sub(
                r"\(payload=.*\)(?= ended with)", "", record.getMessage(), flags=re.S
            )  # the lab's text
            say(f"{text}{reason}"[:400])

    log = logging.getLogger("procrastinate")
    log.addHandler(OneLine(logging.WARNING))
    log.propagate = False


def run_worker(options: WorkerOptions) -> int:
    """Run jobs until stopped (a signal, ``--once`` with nothing waiting, ``--max-jobs``);
    the exit status: 0, or 128 + the signal that stopped it."""
    from harness.results.store import Store, mask_passwords

    def say(text: str) -> None:
        print(f"worker {options.runner}: {mask_passwords(text)}", file=sys.stderr, flush=True)

    _quiet_tracebacks(say)
    states: list[WorkerState] = []

    async def work() -> None:
        loop = asyncio.get_running_loop()
        holder = _Holder()
        async with opened(options.store, lease=options.lease, worker=holder) as app:
            with Store.open(options.store) as store:  # its tables made by `opened`
                state = holder.state = WorkerState(options, store, say)
                states.append(state)
                running = asyncio.create_task(
                    app.run_worker_async(
                        queues=[*queues_for(options.labels), MAINTENANCE_QUEUE],
                        name=options.runner,
                        concurrency=1,
                        wait=options.wait,
                        install_signal_handlers=False,
                        update_heartbeat_interval=options.lease / 4,
                        stalled_worker_timeout=options.lease,
                        fetch_job_polling_interval=min(5.0, options.lease / 4),
                    )  # fmt: skip
                )

                def stop() -> None:  # procrastinate's worker, cancelled, stops gracefully: the job ends first
                    running.cancel()

                state.stop = stop
                for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    loop.add_signal_handler(signum, state.on_signal, signum)
                labels = ",".join(options.labels) or "none"
                say(f"taking jobs with labels {labels} from {queue_place(options.store).schema}")
                with contextlib.suppress(asyncio.CancelledError):
                    await running

    asyncio.run(work())
    done = states[0].done if states else 0
    say(f"stopped after {done} job{'s' if done != 1 else ''}")
    return 128 + states[0].signals[0] if states and states[0].signals else EXIT_OK


def lab_file_of(path: str) -> LabFile:
    """A lab file to submit, checked here first (a bad lab is a usage error now, not
    a failed job later)."""
    from harness.lab.spec import load_lab

    lab = load_lab(path)
    return LabFile(path=path, text=lab.text)
