"""One benchmark per machine, for real, as root: two `wgharness run` of a short
local lab started at once. With the lock the second waits for the first to
finish measuring, both pass and neither measured beside the other; with
`--no-lock` on both they measure at once, and the store says so."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.results.records import Overlap
from harness.results.store import Store
from harness.targets.ledger import STATE_VARIABLE
from tests.support.paths import ROOT

SHORT = str(ROOT / "benchmarks" / "overhead.toml")  # two namespaces, one TCP flow
MEASURE = ["--duration", "2", "--repeat", "2"]  # about 8 s measured: long enough for the two to meet


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A lock and registry of the test's own (the runs it starts inherit it), so a lab
    measuring elsewhere on the machine is neither waited for nor seen."""
    folder = tmp_path / "state"
    monkeypatch.setenv(STATE_VARIABLE, str(folder))
    return folder


def _two_at_once(tmp_path: Path, state: Path, *extra: str) -> list[tuple[str, str, Overlap | None]]:
    """Start two runs at once, each with its own store; (output, run id, overlap) of each
    (the output: stdout, which ends with the run's summary, then stderr's progress lines)."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name in ("first", "second"):
            with (tmp_path / f"{name}.out").open("wb") as out, (tmp_path / f"{name}.err").open("wb") as err:
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "harness",
                            "run",
                            SHORT,
                            *MEASURE,
                            *extra,
                            "--store",
                            f"sqlite:///{tmp_path / name}.db",
                        ],
                        cwd=ROOT,
                        stdout=out,
                        stderr=err,
                        start_new_session=False,
                    )  # fmt: skip
                )
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(30)
    results = []
    for name, code in zip(("first", "second"), codes, strict=True):
        text = (tmp_path / f"{name}.out").read_text() + (tmp_path / f"{name}.err").read_text()
        assert code == 0, text[-5000:]
        store = Store.open(f"sqlite:///{tmp_path / name}.db")
        [run] = store.list_runs()
        store.close()
        assert run.status == "passed"
        assert re.search(rf"run {run.id}: lab overhead", text), text[-2000:]
        results.append((text, run.id, run.overlap))
    # Their measured phases are over: neither is registered any longer.
    for _, run_id, _ in results:
        assert not (state / "active" / f"{run_id}.json").exists()
    return results


def test_the_second_of_two_runs_waits_for_the_lock_and_both_measure_alone(
    no_leftovers: None, tmp_path: Path, state: Path
) -> None:
    (err_a, id_a, overlap_a), (err_b, id_b, overlap_b) = _two_at_once(tmp_path, state)
    waited_a = f"waiting for run {id_b} (lab overhead, pid " in err_a
    waited_b = f"waiting for run {id_a} (lab overhead, pid " in err_b
    assert waited_a != waited_b, (err_a[-2000:], err_b[-2000:])  # one waited, for the other
    assert "to finish measuring on this machine" in (err_a if waited_a else err_b)
    for overlap in (overlap_a, overlap_b):
        assert overlap is not None and overlap.locked and overlap.alone, overlap
    waiter = overlap_a if waited_a else overlap_b
    assert waiter is not None and waiter.waited_seconds >= 1


def test_two_runs_without_the_lock_record_each_other(no_leftovers: None, tmp_path: Path, state: Path) -> None:
    (err_a, id_a, overlap_a), (err_b, id_b, overlap_b) = _two_at_once(tmp_path, state, "--no-lock")
    assert "waiting for run" not in err_a + err_b
    seen = {id_a: overlap_a, id_b: overlap_b}
    assert all(o is not None and not o.locked for o in seen.values()), seen
    flagged = [
        run_id
        for run_id, overlap in seen.items()
        if overlap is not None and [o.run_id for o in overlap.others] == [id_b if run_id == id_a else id_a]
    ]
    assert flagged, seen  # at least one saw the other measuring
    out = err_a if flagged[0] == id_a else err_b
    assert "warning: measured while run" in out and "note: measured while run" in out, out[-3000:]


def _wait_for(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, path.read_text()[-2000:]
        time.sleep(0.2)


def test_a_waiting_run_gives_up_after_its_timeout_or_on_ctrl_c(
    no_leftovers: None, tmp_path: Path, state: Path
) -> None:
    """While one run measures, a second with --lock-timeout 1 ends as an infrastructure
    error (exit 3), and a third stopped by SIGINT while it waits ends interrupted (130):
    both stored as such, their labs taken down; the first passes alone."""
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str, *extra: str) -> None:
        with (tmp_path / f"{name}.log").open("wb") as log:
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "harness", "run", SHORT, "--duration", "5", "--repeat", "2", *extra,
                 "--store", f"sqlite:///{tmp_path / name}.db"],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=False,
            )  # fmt: skip

    try:
        start("measuring")
        _wait_for(tmp_path / "measuring.log", "handshake done", procs["measuring"])
        start("impatient", "--lock-timeout", "1")
        start("stopped")
        _wait_for(tmp_path / "stopped.log", "waiting for run", procs["stopped"])
        os.kill(procs["stopped"].pid, signal.SIGINT)
        codes = {name: p.wait(timeout=300) for name, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(30)
    logs = {name: (tmp_path / f"{name}.log").read_text() for name in procs}
    assert codes == {"measuring": 0, "impatient": 3, "stopped": 130}, {n: t[-1500:] for n, t in logs.items()}
    runs = {}
    for name in procs:
        store = Store.open(f"sqlite:///{tmp_path / name}.db")
        [runs[name]] = store.list_runs()
        store.close()
    assert runs["measuring"].overlap is not None and runs["measuring"].overlap.alone
    assert runs["impatient"].status == "error" and runs["impatient"].overlap is None
    assert f"gave up after 1 s waiting for run {runs['measuring'].id}" in (runs["impatient"].error or "")
    assert runs["stopped"].status == "interrupted" and runs["stopped"].overlap is None
