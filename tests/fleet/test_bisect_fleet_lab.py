"""`wgharness bisect --fleet` for real, as root, on the test PostgreSQL: two workers on
this machine measure the steps of a bisect over five builds (tbf-limited
wireguard-go wrappers as in tests/run/test_bisect_lab.py, 100 Mbit/s then 75 from
the third build on). Worker alpha takes one job only (``--max-jobs 1``), and beta
starts once alpha has taken its job: so the steps are spread over both."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.codec import from_json
from harness.results.bisect import BISECT_ARTIFACT, BisectReport
from harness.results.records import RunStatus
from harness.results.store import Store
from harness.targets.ledger import STATE_VARIABLE
from tests.run.test_bisect_lab import LAB, WRAPPER
from tests.support.killed import Launched
from tests.support.postgres import own_fleet

pytestmark = pytest.mark.integration

RATES = [100, 100, 75, 75, 75]
FIRST_BAD = 2


@pytest.fixture
def fleet(no_leftovers: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv(STATE_VARIABLE, str(tmp_path / "state"))
    with own_fleet() as url:
        yield url


def _builds(folder: Path) -> Path:
    folder.mkdir()
    lines = []
    for i, rate in enumerate(RATES):
        script = folder / f"b{i}.sh"
        script.write_text(WRAPPER.replace("{i}", str(i)).replace("{rate}", str(rate)))
        script.chmod(0o755)
        lines.append(f"b{i} {script}")
    listing = folder / "builds.txt"
    listing.write_text("\n".join(lines) + "\n")
    return listing


def test_a_bisect_whose_steps_two_workers_measure(fleet: str, tmp_path: Path) -> None:
    builds = _builds(tmp_path / "builds")
    worker = ("worker", "--store", fleet, "--lease", "10")
    alpha = Launched(tmp_path, *worker, "--runner", "alpha", "--max-jobs", "1", name="alpha")
    with alpha, Launched(tmp_path, "bisect", LAB, "--end", "a,b", "--builds", str(builds), "--duration", "1",
                         "--max-rounds", "4", "--store", fleet, "--fleet", name="bisect") as bisect:  # fmt: skip
        alpha.until("wgharness bisect", timeout=60)  # alpha has taken the first step
        with Launched(tmp_path, *worker, "--runner", "beta", name="beta") as beta:
            code = bisect.wait(240)
            log = bisect.output[-4000:] + beta.output[-2000:]
            assert code == 1, log
            assert alpha.wait(30) == 0, alpha.output[-2000:]  # its one job done
            beta.signal(signal.SIGTERM)  # idle: it just stops
            assert beta.wait(30) == 128 + signal.SIGTERM, beta.output[-2000:]
    assert "bisect: FIRST BAD b2, last good b1" in bisect.output, log
    with Store.open(fleet, create=False) as store:
        [record] = [r for r in store.list_runs() if r.lab_name == "bisect:overhead"]
        assert record.status is RunStatus.FAILED
        report = from_json(store.get_artifact(record.id, BISECT_ARTIFACT), BisectReport)
        assert report.conclusion is not None and report.conclusion.first_bad == FIRST_BAD
        runs = [store.get_run(s.run_id).run for s in report.steps if s.run_id]
        assert len(runs) == len(report.steps) >= 2
        # Each step a run of its fleet job, stored with the worker that measured it.
        for run in runs:
            assert run.job is not None and [r.id for r, _ in store.runs_of_job(run.job)] == [run.id]
        runners = [run.runner for run in runs]
        assert runners[0] == "alpha" and set(runners[1:]) == {"beta"}, runners
