"""Nothing left behind after any exit, for real (root): `wgharness run` on a local lab
killed with SIGKILL at three moments (lab coming up, mid-flow, teardown), then
`wgharness clean`: nothing its lab's record named is left, nor anything of the test
(`no_leftovers`), and a normal run passes. SIGTERM and SIGHUP at the same moments:
a clean teardown, the run stored as interrupted, exit status 128 + the signal. A
second signal during the teardown does not cut it short. `repro` and a VM lab are
killed too (tests/repro/test_repro_killed.py, tests/targets/test_vm_killed.py)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from harness.results.store import Store
from harness.run.orchestrator import ID_PREFIX_VARIABLE
from harness.targets.ledger import LABS_DIR
from tests.support.killed import Launched, record_of, still_there
from tests.support.leftovers import owned, snapshot, stop
from tests.support.paths import ROOT

# Every run here is --no-lock: what it measures does not matter, and a run waiting for
# this machine's lock (another's benchmark) would be signalled at the wrong moment.
MARKERS = {
    "lab-up": "tunnel: waiting for a handshake",  # namespaces, link, qdiscs, wireguard-go made
    "mid-flow": "tunnel: handshake done",  # then 1.5 s: inside the first iperf3 flow
    "teardown": "removing tunnel",  # the first step of the teardown
}
DURATION = {"lab-up": "30", "mid-flow": "30", "teardown": "1"}


def _lab(tmp_path: Path) -> Path:
    """benchmarks/overhead.toml (two namespaces, wireguard-go, one TCP flow), its link
    rate-limited so the lab has qdiscs too."""
    text = (ROOT / "benchmarks" / "overhead.toml").read_text()
    text = text.replace('b_address = "198.18.0.2/24"', 'b_address = "198.18.0.2/24"\nrate = "2gbit"')
    path = tmp_path / "killed.toml"
    path.write_text(text)
    return path


def _store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


def _at(wgh: Launched, moment: str) -> None:
    wgh.until(MARKERS[moment])
    if moment == "mid-flow":
        time.sleep(1.5)


def _run_id(text: str) -> str:
    found = re.search(r"run ([0-9a-f]{12}):", text)
    assert found, text[-3000:]
    return found.group(1)


@pytest.mark.parametrize("moment", list(MARKERS))
def test_sigkill_leaves_a_lab_that_clean_removes_then_a_run_passes(
    no_leftovers: None, tmp_path: Path, moment: str
) -> None:
    lab, store = _lab(tmp_path), _store(tmp_path)
    with Launched(
        tmp_path, "run", str(lab), "--duration", DURATION[moment], "--store", store, "--no-lock"
    ) as wgh:
        _at(wgh, moment)
        wgh.signal(signal.SIGKILL)
        assert wgh.wait() == -signal.SIGKILL
    record = record_of()
    run_id = _run_id(wgh.output)
    assert record.run_id == run_id and record.resources, record
    # Before any clean: every process of the lab died with the harness (its death signal),
    # the iperf3 client it was waiting for included; namespaces and links are left.
    tag = os.environ[ID_PREFIX_VARIABLE]
    deadline = time.monotonic() + 5
    while owned(snapshot(), tag).processes and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not owned(snapshot(), tag).processes, owned(snapshot(), tag).processes
    kinds = {r.kind for r in record.resources}
    assert {"namespace", "link"} <= kinds and ("process" in kinds or moment == "lab-up"), kinds
    with Store.open(store) as s:
        assert s.get_run(run_id).summary.status == "aborted"

    with Launched(tmp_path, "clean", record.lab_id, name="clean") as cleaning:
        assert cleaning.wait() == 0, cleaning.output
    said = cleaning.output
    assert f"[{record.lab_id}]" in said and f"its run {run_id} reads as aborted" in said, said
    assert still_there(record) == [] and not (LABS_DIR / f"{record.lab_id}.json").exists()

    with Launched(
        tmp_path, "run", str(lab), "--duration", "1", "--store", store, "--no-lock", name="again"
    ) as again:
        assert again.wait() == 0, again.output[-3000:]
    assert f"[{record.lab_id}]" not in again.output  # nothing of the killed one was left to mention


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["sigterm", "sighup"])
@pytest.mark.parametrize("moment", list(MARKERS))
def test_sigterm_and_sighup_tear_down_and_store_interrupted(
    no_leftovers: None, tmp_path: Path, moment: str, sig: signal.Signals
) -> None:
    store = _store(tmp_path)
    with Launched(
        tmp_path, "run", str(_lab(tmp_path)), "--duration", DURATION[moment], "--store", store, "--no-lock"
    ) as wgh:
        _at(wgh, moment)
        record = record_of()
        wgh.signal(sig)
        if moment == "teardown":  # more signals while it tears down: it goes on to the end
            wgh.until("removing link")
            wgh.signal(signal.SIGTERM)
            wgh.signal(signal.SIGINT)
        assert wgh.wait() == 128 + sig, wgh.output[-3000:]
    with Store.open(store) as s:
        [run] = s.list_runs()
    assert run.status == "interrupted", (run.status, run.error)
    if moment == "teardown":
        assert run.error == f"{sig.name} during teardown"
    assert still_there(record) == [] and not (LABS_DIR / f"{record.lab_id}.json").exists()


def test_a_background_job_ignores_sigint_and_still_ends_on_sigterm(
    no_leftovers: None, tmp_path: Path
) -> None:
    """Started as ``wgharness run ... &`` from a script: SIGINT is ignored, as the shell
    asked; SIGTERM ends the run as ever."""
    store = _store(tmp_path)
    lab = str(_lab(tmp_path))
    with Launched(
        tmp_path, "run", lab, "--duration", "30", "--store", store, "--no-lock", background_job=True
    ) as wgh:
        _at(wgh, "mid-flow")
        wgh.signal(signal.SIGINT)
        time.sleep(1)
        assert wgh.proc.poll() is None and "interrupted" not in wgh.output
        wgh.signal(signal.SIGTERM)
        assert wgh.wait() == 128 + signal.SIGTERM, wgh.output[-3000:]
    with Store.open(store) as s:
        assert s.list_runs()[0].status == "interrupted"


def test_nightly_ends_on_sigterm_as_run_does(no_leftovers: None, tmp_path: Path) -> None:
    store, out = _store(tmp_path), tmp_path / "reports"
    with Launched(tmp_path, "nightly", str(_lab(tmp_path)), "--build", "b1", "--baseline", "latest",
                  "--out", str(out), "--duration", "30", "--store", store, "--no-lock") as wgh:  # fmt: skip
        _at(wgh, "mid-flow")
        record = record_of()
        wgh.signal(signal.SIGTERM)
        assert wgh.wait() == 128 + signal.SIGTERM, wgh.output[-3000:]
    with Store.open(store) as s:
        assert s.list_runs()[0].status == "interrupted"
    assert still_there(record) == [] and (out / "summary.md").is_file()


def _own_terminal() -> None:
    """In the child: a session of its own, with the pty on stdin as its controlling terminal."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def test_a_lost_terminal_tears_down_and_exits_129(no_leftovers: None, tmp_path: Path) -> None:
    """As when the SSH session of `wgharness run` is lost: its terminal hangs up (the pty's
    other side closes), the kernel sends SIGHUP, and every write to the terminal fails
    from then on. The lab comes down all the same, the run is interrupted, exit 129."""
    store = _store(tmp_path)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(_lab(tmp_path)), "--duration", "30", "--store", store,
         "--no-lock"],
        cwd=ROOT, stdin=slave, stdout=slave, stderr=slave, preexec_fn=_own_terminal,
    )  # fmt: skip
    os.close(slave)
    try:
        seen, deadline = b"", time.monotonic() + 120
        while b"handshake done" not in seen and time.monotonic() < deadline:
            seen += os.read(master, 4096)
        time.sleep(1.5)
        record = record_of()
        os.close(master)  # the terminal goes
        master = -1
        assert proc.wait(120) == 128 + signal.SIGHUP
    finally:
        if master >= 0:
            os.close(master)
        stop(proc, 60)
    with Store.open(store) as s:
        assert s.list_runs()[0].status == "interrupted"
    assert still_there(record) == [] and not (LABS_DIR / f"{record.lab_id}.json").exists()
