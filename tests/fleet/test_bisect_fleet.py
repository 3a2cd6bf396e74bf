"""`wgharness bisect --fleet` without a lab (no root): the ``bisect-step`` job's codec
and command line, a step's result read back from its stored run, the command
line's one-line errors, and a step's job cancelled when the bisect is interrupted."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.cli import main
from harness.codec import from_json, to_json
from harness.fleet import bisect as fleet_bisect
from harness.fleet.bisect import FleetSteps, job_result
from harness.fleet.jobs import KINDS, BisectStepArgs, LabFile, decode_args, encode_args
from harness.fleet.queue import list_jobs
from harness.results.bisect import Build, StepLabel
from harness.results.records import RunRecord, RunStatus
from harness.results.rounds import ROUNDS_ARTIFACT, RoundsReport, RoundsSettings, Side, Stop
from harness.results.sequential import Round
from harness.results.store import Store
from harness.run.bisect import StepRequest, step_result, stored_step
from harness.run.rounds import Measured, run_rounds
from tests.run.test_rounds import TCP1, WOBBLE
from tests.support.paths import ROOT

LAB = str(ROOT / "benchmarks" / "overhead.toml")
STEP = StepRequest(LAB, ("a", "b"), Build("b0", "/opt/b0.sh"), Build("b2", "/opt/b2.sh"),
                   RoundsSettings(max_rounds=4), store="postgresql://u@h/db", duration=1, runner="here",
                   job="9")  # fmt: skip


def test_a_bisect_step_job_goes_through_json_and_back() -> None:
    args = BisectStepArgs(LabFile(LAB, "[lab]\n"), STEP)
    payload = json.loads(json.dumps(encode_args("bisect-step", args)))
    assert decode_args(payload) == ("bisect-step", args)


def test_a_bisect_step_job_is_a_hidden_bisect_command_line() -> None:
    argv = KINDS["bisect-step"].command(BisectStepArgs(LabFile(LAB, ""), STEP), "/tmp/copy.toml")
    assert argv[:3] == ["bisect", "/tmp/copy.toml", "--step-json"] and len(argv) == 4
    # the worker's lab file; its store, runner and job id come from the worker's options
    sent = from_json(argv[3], StepRequest)
    assert sent.lab == "/tmp/copy.toml" and (sent.store, sent.runner, sent.job) == (None, None, None)
    assert (sent.baseline, sent.candidate, sent.settings) == (STEP.baseline, STEP.candidate, STEP.settings)


def _report(ratio: float) -> RoundsReport:
    start = RoundsReport(Side("b0", "/opt/b0.sh"), Side("b2", "/opt/b2.sh"), RoundsSettings(max_rounds=10))

    def measure(k: int, order: str) -> Measured:
        return Measured({TCP1: Round((700e6, 700e6), (700e6 * (ratio + WOBBLE[k - 1] / 10),) * 2)})

    return run_rounds(measure, start)


def _stored(store: Store, run_id: str, job: str, status: RunStatus, report: RoundsReport | None) -> None:
    store.begin_run(RunRecord(run_id, datetime.now(UTC), "overhead", LAB, "0" * 64, "", "b2", "0",
                              "wgharness bisect", 1, "elsewhere", runner="beta", job=job))  # fmt: skip
    if report is not None:
        store.add_artifact(run_id, ROUNDS_ARTIFACT, to_json(report).encode(), "application/json")
    store.finish_run(run_id, status)


def test_a_step_read_back_from_its_stored_run_is_the_step_measured_here(tmp_path: Path) -> None:
    slower = _report(0.7)
    assert slower.stop is Stop.DECIDED
    with Store.open(f"sqlite:///{tmp_path / 'r.db'}") as store:
        _stored(store, "aaaaaaaaaaaa", "5", RunStatus.PASSED, slower)
        _stored(store, "bbbbbbbbbbbb", "6", RunStatus.FAILED, slower)  # a test failed after round 3
        _stored(store, "cccccccccccc", "7", RunStatus.ERROR, None)  # broke before its first round
        read = stored_step(store, "aaaaaaaaaaaa")
        assert read == step_result("aaaaaaaaaaaa", RunStatus.PASSED, slower)
        assert (read.label, read.rounds, read.metrics[0].label) == (
            StepLabel.REGRESSED,
            slower.rounds,
            "regressed",
        )
        failed = stored_step(store, "bbbbbbbbbbbb")
        assert (failed.status, failed.label) == (RunStatus.FAILED, StepLabel.FAILED)
        broken = stored_step(store, "cccccccccccc")
        assert (broken.status, broken.rounds, broken.note) == (RunStatus.ERROR, 0, "the step's run error")
        # A job's result: its run; a job that stored none is an error step.
        assert job_result(store, 5, "succeeded") == (read, "beta")
        none, runner = job_result(store, 8, "failed")
        assert (none.run_id, none.status, runner) == (None, RunStatus.ERROR, None)
        assert none.note == "fleet job 8 ended failed without storing a run"


def test_a_job_given_back_is_read_from_the_run_that_passed(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'r.db'}") as store:
        _stored(store, "aaaaaaaaaaaa", "5", RunStatus.PASSED, _report(1.0))
        _stored(store, "bbbbbbbbbbbb", "5", RunStatus.INTERRUPTED, None)  # a later attempt, stopped
        result, _ = job_result(store, 5, "succeeded")
        assert (result.run_id, result.label) == ("aaaaaaaaaaaa", StepLabel.SAME)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fleet"], "--store: a fleet needs PostgreSQL"),
        (["--fleet", "--store", "sqlite:///{tmp}/r.db"], "a fleet needs PostgreSQL"),
        (["--label", "kvm", "--store", "sqlite:///{tmp}/r.db"], "--label: only with --fleet"),
        (["--fleet", "--store", "postgresql://u@h/db", "--label", "KVM"], "label 'KVM': lower-case"),
        (["--step-json", "{", "--store", "sqlite:///{tmp}/r.db"], "--step-json: not a bisect step"),
        (["--step-json", '{"lab": "x"}', "--fleet"], "--fleet: only with --builds or --repo"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    source = ["--end", "a,b", "--builds", str(tmp_path)] if "--step-json" not in args else []
    assert main(["bisect", LAB, *source, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "r.db").exists()  # nothing stored


def test_an_interrupted_wait_cancels_the_job_no_worker_took(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.postgres import own_fleet

    async def interrupted(store_url: str, job_id: int) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(fleet_bisect, "_wait", interrupted)
    heard: list[str] = []
    with own_fleet() as url:
        with pytest.raises(KeyboardInterrupt):
            FleetSteps(url, ("kvm",), heard.append)(STEP)
        [job] = list_jobs(url, None)
    assert (job.status, job.labels) == ("cancelled", ("kvm",))
    assert job.what == f"bisect step {LAB}: b2 against b0"
    assert heard == [f"queued as fleet job {job.id}", f"fleet job {job.id} cancelled"]
