"""A fleet for real, as root, on the test PostgreSQL: workers on this machine run
queued lab runs (benchmarks/overhead.toml, one second measured), each stored once
with its runner; a worker killed with SIGKILL mid-job loses the job to the other;
SIGTERM on a worker mid-job interrupts the run and queues the job again."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.fleet.jobs import LabFile, RunArgs
from harness.fleet.queue import JobRow, list_jobs, submit
from harness.procs import alive_since
from harness.results.records import RunStatus
from harness.results.store import Store
from harness.targets.ledger import STATE_VARIABLE
from tests.support.killed import Launched
from tests.support.paths import ROOT
from tests.support.postgres import own_fleet

pytestmark = pytest.mark.integration

LAB = "benchmarks/overhead.toml"  # two namespaces, one TCP flow
LEASE = "4"  # seconds: a worker silent this long has lost its job


@pytest.fixture
def fleet(no_leftovers: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The store's URL (a schema of the test's own), and a machine lock and lab
    registry of the test's own, which the workers and their runs inherit."""
    monkeypatch.setenv(STATE_VARIABLE, str(tmp_path / "state"))
    with own_fleet() as url:
        yield url


def _queue(url: str, n: int) -> list[int]:
    args = RunArgs(LabFile(LAB, (ROOT / LAB).read_text()), duration=1, repeat=1)
    return [submit(url, "run", args, ()) for _ in range(n)]


def _wait_for(what: str, check: Callable[[], bool], timeout: float, *workers: Launched) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            logs = "\n".join(w.err_path.read_text()[-3000:] for w in workers)
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.5)


def _jobs(url: str) -> dict[int, JobRow]:
    with Store.open(url, create=False) as store:
        return {row.id: row for row in list_jobs(url, store)}


def _worker(tmp_path: Path, url: str, runner: str, *extra: str) -> Launched:
    return Launched(
        tmp_path, "worker", "--store", url, "--runner", runner, "--lease", LEASE, *extra, name=runner
    )


def _stop(*workers: Launched) -> None:
    for w in workers:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait(30)


def test_two_workers_share_six_runs_and_one_killed_mid_job_loses_it_to_the_other(
    fleet: str, tmp_path: Path
) -> None:
    ids = _queue(fleet, 6)
    alpha = _worker(tmp_path, fleet, "alpha")
    beta = _worker(tmp_path, fleet, "beta")
    try:
        # alpha mid-job: its run's lab is up
        _wait_for("alpha's first lab", lambda: re.search(r"lab overhead \[\w+\] up", alpha.err_path.read_text())
                  is not None, 60, alpha, beta)  # fmt: skip
        taken = re.findall(r"worker alpha: job (\d+): wgharness run", alpha.err_path.read_text())
        killed_job = int(taken[-1])
        os.kill(alpha.proc.pid, signal.SIGKILL)
        assert alpha.proc.wait(10) == -signal.SIGKILL
        _wait_for("all six jobs", lambda: all(j.status == "succeeded" for j in _jobs(fleet).values()), 180,
                  alpha, beta)  # fmt: skip
        beta.proc.send_signal(signal.SIGTERM)  # an idle worker just stops
        assert beta.proc.wait(30) == 128 + signal.SIGTERM
    finally:
        _stop(alpha, beta)
    jobs = _jobs(fleet)
    assert sorted(jobs) == ids
    with Store.open(fleet, create=False) as store:
        for job_id, job in jobs.items():
            passed = [(run_id, runner) for run_id, status, runner in job.runs if status == RunStatus.PASSED]
            assert len(passed) == 1, (job_id, job.runs)  # stored once each
            others = [(status, runner) for _, status, runner in job.runs if status != RunStatus.PASSED]
            if job_id == killed_job:
                # the half-run is no result; the job ran again on beta
                assert passed[0][1] == "beta"
                assert [runner for _, runner in others] == ["alpha"], job.runs
                assert others[0][0] in ("interrupted", "error"), job.runs
            else:
                assert others == [], (job_id, job.runs)
            assert store.get_run(passed[0][0]).run.job == str(job_id)
        assert len(store.list_runs()) == 7
        for summary in store.list_runs():
            run = store.get_run(summary.id).run
            assert not alive_since(run.pid, run.started_at)  # every run's process is gone
    log = alpha.err_path.read_text() + beta.err_path.read_text()
    assert f"job {killed_job}: its worker was lost; giving it back to the queue" in log
    assert "worker beta: stopped after" in log


def test_sigterm_on_a_worker_mid_job_interrupts_the_run_and_queues_the_job_again(
    fleet: str, tmp_path: Path
) -> None:
    [job_id] = _queue(fleet, 1)
    first = _worker(tmp_path, fleet, "first")
    try:
        _wait_for("the lab", lambda: re.search(r"lab overhead \[\w+\] up", first.err_path.read_text()) is not None,
                  60, first)  # fmt: skip
        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(60) == 128 + signal.SIGTERM
    finally:
        _stop(first)
    job = _jobs(fleet)[job_id]
    assert (job.status, job.attempts) == ("todo", 1), job
    assert [(status, runner) for _, status, runner in job.runs] == [("interrupted", "first")]
    second = _worker(tmp_path, fleet, "second", "--once")
    try:
        assert second.proc.wait(120) == 0, second.err_path.read_text()[-3000:]
    finally:
        _stop(second)
    job = _jobs(fleet)[job_id]
    assert job.status == "succeeded"
    assert sorted((status, runner) for _, status, runner in job.runs) == [
        ("interrupted", "first"), ("passed", "second"),
    ]  # fmt: skip
