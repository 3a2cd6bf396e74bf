"""The fleet's queue on the test PostgreSQL, without a lab (no root): jobs queued and
listed, a lost worker's job given back by procrastinate's own stalled-job calls,
and a job run again that finds its result already stored."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

from harness.cli import main
from harness.fleet.jobs import LabFile, RunArgs, encode_args, queue_of
from harness.fleet.postgres import queue_place
from harness.fleet.queue import (
    GIVE_BACK_TASK,
    JOB_TASK,
    WorkerOptions,
    WorkerState,
    list_jobs,
    opened,
    submit,
)
from harness.results.records import RunRecord, RunStatus
from harness.results.store import Store
from tests.support.paths import ROOT
from tests.support.postgres import own_fleet

LAB = str(ROOT / "benchmarks" / "overhead.toml")


@pytest.fixture
def fleet() -> Any:
    with own_fleet() as url:
        yield url


def test_jobs_are_queued_by_their_labels_and_listed(fleet: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["submit", "run", LAB, "--duration", "1", "--label", "kvm", "--store", fleet]) == 0
    assert capsys.readouterr().out.startswith("job ")
    args = RunArgs(LabFile(LAB, Path(LAB).read_text()), repeat=2)
    second = submit(fleet, "run", args, ())
    rows = list_jobs(fleet, None)
    assert [(r.id, r.status, r.labels, r.runs) for r in rows] == [
        (second, "todo", (), ()),
        (second - 1, "todo", ("kvm",), ()),
    ]
    assert rows[1].what == f"run {LAB} --duration 1"
    assert main(["jobs", "--store", fleet]) == 0
    out = capsys.readouterr().out
    assert f"run {LAB} --repeat 2" in out and "kvm" in out
    # the queue's tables are beside the store's, in a schema of their own
    engine = sa.create_engine(fleet)
    with engine.connect() as conn:
        assert "procrastinate_jobs" not in sa.inspect(conn).get_table_names()
        assert "procrastinate_jobs" in sa.inspect(conn).get_table_names(schema=queue_place(fleet).schema)
    engine.dispose()


def test_the_job_of_a_worker_gone_silent_goes_back_to_the_queue(fleet: str) -> None:
    payload = encode_args("run", RunArgs(LabFile(LAB, "x")))

    async def scenario() -> tuple[str, int]:
        async with opened(fleet, lease=5.0) as app:
            job_id = await app.tasks[JOB_TASK].configure(queue=queue_of(())).defer_async(payload=payload)
            manager = app.job_manager
            lost = await manager.register_worker()
            taken = await manager.fetch_job(queues=[queue_of(())], worker_id=lost)
            assert taken.id == job_id
            give_back = app.tasks[GIVE_BACK_TASK]
            await give_back(SimpleNamespace(app=app), timestamp=0)  # its heartbeat is fresh: kept
            [job] = await manager.list_jobs_async(id=job_id)
            assert str(job.status) == "doing"
            await app.connector.execute_query_async(
                query="UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 minute'"
            )
            await give_back(SimpleNamespace(app=app), timestamp=0)
            [job] = await manager.list_jobs_async(id=job_id)
            return str(job.status), job.attempts

    assert asyncio.run(scenario()) == ("todo", 1)


def _run(store: Store, run_id: str, job: str, status: RunStatus | None, runner: str) -> None:
    store.begin_run(RunRecord(run_id, datetime.now(UTC), "overhead", LAB, "0" * 64, "", None, "0",
                              "wgharness run", 1, "elsewhere", runner=runner, job=job))  # fmt: skip
    if status is not None:
        store.finish_run(run_id, status)


def test_a_job_run_again_keeps_its_stored_result_and_closes_the_lost_half_run(fleet: str) -> None:
    """The worker that ran job 7 stored its run, then was lost before the queue heard
    of it; a second attempt was lost mid-run. The third attempt runs nothing: the
    result stands, and the half-run is finished as error."""
    with Store.open(fleet) as store:
        _run(store, "aaaaaaaaaaaa", "7", RunStatus.PASSED, "alpha")
        _run(store, "bbbbbbbbbbbb", "7", None, "beta")
        _run(store, "cccccccccccc", "8", None, "beta")
        said: list[str] = []
        state = WorkerState(WorkerOptions(fleet, "gamma"), store, said.append)
        payload = encode_args("run", RunArgs(LabFile(LAB, "never run")))
        assert asyncio.run(state.run_job("7", payload)) == "aaaaaaaaaaaa"
        assert store.get_run("bbbbbbbbbbbb").summary.status == RunStatus.ERROR
        assert "(beta) was lost" in str(store.get_run("bbbbbbbbbbbb").summary.error)
        assert store.get_run("cccccccccccc").summary.status == RunStatus.RUNNING  # another job's
        assert sorted((r.id, runner) for r, runner in store.runs_of_job("7")) == [
            ("aaaaaaaaaaaa", "alpha"), ("bbbbbbbbbbbb", "beta"),
        ]  # fmt: skip
        assert any("already stored as run aaaaaaaaaaaa" in line for line in said)
