"""`wgharness repro` killed mid-scenario, for real (root): the impairment relay,
tcpdump, pyref, wireguard-go and the scenario's ping run, and the run's folder holds
the capture. SIGKILL, then `wgharness clean`: nothing its lab's record named is left
and the scenario then passes; SIGTERM: a clean teardown, the run stored as
interrupted, exit status 143, no bundle."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from harness.results.store import Store
from harness.targets.ledger import LABS_DIR
from tests.repro.test_run import DELAYED
from tests.support.killed import Launched, record_of, still_there
from tests.support.paths import ROOT


def _scenario(tmp_path: Path, seconds: int) -> str:
    """test_run.py's scenario through the relay (50 ms each way), its ping ``seconds`` long."""
    assert "seconds = 3" in DELAYED
    path = tmp_path / f"killed-{seconds}.toml"
    path.write_text(DELAYED.replace("{lab}", str(ROOT / "scenarios" / "lab.toml"))
                    .replace("seconds = 3", f"seconds = {seconds}"))  # fmt: skip
    return str(path)


def _mid_scenario(wgh: Launched) -> None:
    wgh.until("tunnel: handshake done")
    wgh.until(": wait ")  # the timeline's wait step: the ping runs
    time.sleep(1)


def test_sigkill_mid_scenario_then_clean_then_it_passes(no_leftovers: None, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    with Launched(tmp_path, "repro", _scenario(tmp_path, 30), "--store", store, "--no-lock") as wgh:
        _mid_scenario(wgh)
        wgh.signal(signal.SIGKILL)
        assert wgh.wait() == -signal.SIGKILL
    record = record_of()  # as the killed harness left it
    names = {(r.kind, r.name) for r in record.resources}
    assert {("folder", "repro"), ("process", "tcpdump"), ("process", "ping")} <= names, names
    assert any(kind == "process" and "python" in name for kind, name in names), names  # pyref, the relay
    with Launched(tmp_path, "clean", record.lab_id, name="clean") as cleaning:
        assert cleaning.wait() == 0, cleaning.output
    assert still_there(record) == [] and not (LABS_DIR / f"{record.lab_id}.json").exists()
    bundle = tmp_path / "again.tar.gz"
    with Launched(tmp_path, "repro", _scenario(tmp_path, 2), "--store", store, "--no-lock", "--out", str(bundle),
                  name="again") as again:  # fmt: skip
        assert again.wait() == 0, again.output[-3000:]
    assert bundle.is_file()


def test_sigterm_mid_scenario_tears_down_and_stores_interrupted(no_leftovers: None, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    bundle = tmp_path / "never.tar.gz"
    with Launched(
        tmp_path, "repro", _scenario(tmp_path, 30), "--store", store, "--no-lock", "--out", str(bundle)
    ) as wgh:
        _mid_scenario(wgh)
        record = record_of()
        wgh.signal(signal.SIGTERM)
        assert wgh.wait() == 128 + signal.SIGTERM, wgh.output[-3000:]
    with Store.open(store) as s:
        [run] = s.list_runs()
    assert run.status == "interrupted" and run.error == "interrupted by SIGTERM", (run.status, run.error)
    assert not bundle.exists()
    assert still_there(record) == [] and not (LABS_DIR / f"{record.lab_id}.json").exists()
