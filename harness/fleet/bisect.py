"""``wgharness bisect --fleet``: each step of a bisect measured by a fleet worker.

The rules:
* The bisect itself runs where it was started (it builds the commits there and
  stores its record); `FleetSteps` measures a step by queuing it as a job of kind
  ``bisect-step`` (`harness.fleet.jobs.BisectStepArgs`) and waiting for the job to
  end, asking the queue every `POLL` seconds. The step's result is read back from
  the run its job stored (`harness.run.bisect.stored_step`), as `run_step` would
  have made it here.
* A job that ended without a run (it broke before its run began, or was
  cancelled) is a step in error: the bisect stops, and resumes later.
* A signal (Ctrl-C, SIGTERM, SIGHUP) while waiting cancels the job if no worker has
  taken it yet (procrastinate's cancel); a job already running runs to its end on
  its worker, its run stored but not part of the bisect. The bisect is stored as
  interrupted.
* The builds' programs travel by path: every worker must see them at the same path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.fleet.jobs import BisectStepArgs
from harness.fleet.queue import JOB_TASK, lab_file_of, opened, submit
from harness.results.bisect import step_label
from harness.results.records import TRUSTED_STATUSES, RunStatus
from harness.results.store import Store
from harness.run.bisect import StepRequest, StepResult, stored_step
from harness.run.cleanup import signals_deferred

POLL = 1.5
"""Seconds between two looks at a step's job."""
ENDED = frozenset({"succeeded", "failed", "cancelled", "aborted"})
"""The statuses of a procrastinate job that has ended (a job given back is ``todo`` again)."""


async def _wait(store_url: str, job_id: int) -> str:
    """The status the job ended with."""
    async with opened(store_url) as app:
        while True:
            jobs = list(await app.job_manager.list_jobs_async(id=job_id, task=JOB_TASK))
            if not jobs:
                return "deleted"
            status = str(jobs[0].status)
            if status in ENDED:
                return status
            await asyncio.sleep(POLL)


async def _cancel(store_url: str, job_id: int) -> bool:
    """Cancel the job if no worker has taken it: whether it was."""
    async with opened(store_url) as app:
        return bool(await app.job_manager.cancel_job_by_id_async(job_id))


def job_result(store: Store, job_id: int, job_status: str) -> tuple[StepResult, str | None]:
    """The step's result from what the ended job stored, and the runner that ran it:
    its run that passed or failed, else its newest run; none: an error step."""
    runs = store.runs_of_job(str(job_id))
    chosen = [r for r in runs if r[0].status in TRUSTED_STATUSES] or runs
    if not chosen:
        note = f"fleet job {job_id} ended {job_status} without storing a run"
        return StepResult(None, RunStatus.ERROR, step_label(None, False), 0, note=note), None
    run, runner = chosen[0]
    return stored_step(store, run.id), runner


@dataclass(frozen=True)
class FleetSteps:
    """A `harness.run.bisect.Measurer` that has each step measured by the fleet."""

    store: str
    labels: Sequence[str]
    say: Callable[[str], None]

    def __call__(self, request: StepRequest) -> StepResult:
        args = BisectStepArgs(lab_file_of(request.lab), request)
        job_id = submit(self.store, "bisect-step", args, self.labels)
        self.say(f"queued as fleet job {job_id}")
        started = time.monotonic()
        try:
            status = asyncio.run(_wait(self.store, job_id))
        except KeyboardInterrupt:
            with signals_deferred(reraise=False):
                cancelled = asyncio.run(_cancel(self.store, job_id))
            self.say(
                f"fleet job {job_id} cancelled"
                if cancelled
                else f"fleet job {job_id} is running on a worker: it runs to its end"
            )
            raise
        with Store.open(self.store) as store:
            result, runner = job_result(store, job_id, status)
        took = time.monotonic() - started
        self.say(f"fleet job {job_id} {status} after {took:.0f} s: run {result.run_id} (runner {runner})")
        return result
