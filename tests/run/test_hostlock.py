"""One benchmark per machine: the lock file and its content, the registry of
measuring runs and its stale entries, what a run records about the others, and
how the store, `compare`, `report` and the run summary carry it. No root: every
lock and registry here lives in a temporary folder."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from harness.cli import build_parser, main
from harness.codec import to_json
from harness.procs import process_start, start_in_stat
from harness.progress import Progress
from harness.results.compare import Settings, compare, parse_selector
from harness.results.history import history
from harness.results.records import OtherRun, Overlap
from harness.results.render.comparison import render_json, render_markdown, render_text
from harness.results.render.history import render_markdown as history_markdown
from harness.results.render.summary import run_summary
from harness.results.store import Store
from harness.run.hostlock import (
    LockPolicy,
    LockTimeout,
    MachineLock,
    MeasuredPhase,
    Measuring,
    Registry,
    is_live,
    parse_measuring,
)
from tests.support.paths import ROOT
from tests.support.postgres import fresh_postgres
from tests.support.synthetic import BASE, store_run

# /proc/PID/stat of a process whose command holds a space and a parenthesis.
STAT = (
    "4242 (wg (x) go) S 1 4242 4242 0 -1 4194560 1093 0 0 0 12 7 0 0 20 0 9 0 "
    "987654 1262505984 2171 18446744073709551615 1 1 0 0 0 0 0 0 2143420159 0 0 0 17 1 0 0 0 0 0"
)


def entry(run_id: str = "aaaa00000001", pid: int = 4242, start: int | None = 987654) -> Measuring:
    return Measuring(run_id, "local", pid, start, "2026-12-01T03:00:00+00:00")


def quiet() -> tuple[Progress, io.StringIO]:
    out = io.StringIO()
    return Progress(stream=out), out


def test_start_time_is_read_past_the_command() -> None:
    assert start_in_stat(STAT) == 987654
    assert start_in_stat("1 (x) S") is None and start_in_stat("") is None
    assert process_start(os.getpid()) == start_in_stat(Path("/proc/self/stat").read_text())
    assert process_start(2**22 + 12345) is None  # above pid_max: no such process


def test_lock_content_round_trips_and_half_written_is_none() -> None:
    e = entry()
    text = to_json(e) + "\n"
    assert json.loads(text) == {
        "run_id": "aaaa00000001", "lab": "local", "pid": 4242, "pid_start": 987654,
        "since": "2026-12-01T03:00:00+00:00",
    }  # fmt: skip
    assert parse_measuring(text) == e
    assert str(e) == "run aaaa00000001 (lab local, pid 4242)"
    for bad in ("", '{"run_id": "aa', "[]", '{"run_id": 1}'):
        assert parse_measuring(bad) is None


def test_an_entry_of_a_dead_or_reused_pid_is_not_live() -> None:
    starts = {4242: 987654, 4343: 5}
    assert is_live(entry(), starts.get)
    assert not is_live(entry(pid=4444), starts.get)  # gone
    assert not is_live(entry(pid=4343), starts.get)  # the PID now belongs to a newer process
    assert is_live(entry(pid=4343, start=None), starts.get)  # start unknown: the PID decides
    assert is_live(Measuring("x", "l", os.getpid(), process_start(os.getpid()), ""))


def test_registry_ignores_itself_and_removes_stale_entries(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    starts = {4242: 987654, 4343: 5}
    registry.add(entry("aaaa00000001"))
    registry.add(entry("bbbb00000002", pid=4343, start=6))  # reused PID
    registry.add(entry("cccc00000003", pid=4444))  # dead
    registry.add(entry("dddd00000004"))
    (tmp_path / "active" / "eeee00000005.json").write_text("not json")
    assert [e.run_id for e in registry.others("dddd00000004", starts.get)] == ["aaaa00000001"]
    left = sorted(p.name for p in (tmp_path / "active").iterdir())
    assert left == ["aaaa00000001.json", "dddd00000004.json", "eeee00000005.json"]
    registry.remove("aaaa00000001")
    registry.remove("aaaa00000001")  # twice is fine
    assert registry.others("dddd00000004", starts.get) == []


def test_second_lock_waits_names_the_holder_and_times_out(tmp_path: Path) -> None:
    first, second = MachineLock(tmp_path), MachineLock(tmp_path)
    me = Measuring("aaaa00000001", "local", os.getpid(), process_start(os.getpid()), "now")
    assert first.try_acquire(me)
    assert first.path == tmp_path / "locks" / "machine.lock"
    assert parse_measuring(first.path.read_text()) == me
    assert second.holder() == me
    progress, out = quiet()
    with pytest.raises(LockTimeout, match=r"gave up after 0.3 s waiting for run aaaa00000001 \(lab local"):
        second.acquire(Measuring("bbbb00000002", "other", 1, None, "now"), progress, 0.3, poll=0.05)
    waiting = out.getvalue().splitlines()
    assert len(waiting) == 1, waiting
    holder = f"run aaaa00000001 (lab local, pid {os.getpid()})"
    assert f"waiting for {holder} to finish measuring on this machine" in waiting[0]
    first.release()
    assert first.path.read_text() == ""  # a released lock names no one
    assert second.holder() is None
    assert second.acquire(Measuring("bbbb00000002", "other", 1, None, "now"), progress, 1) < 0.5
    second.release()


def test_the_waiter_gets_the_lock_when_the_holder_lets_go(tmp_path: Path) -> None:
    first, second = MachineLock(tmp_path), MachineLock(tmp_path)
    assert first.try_acquire(entry("aaaa00000001", pid=os.getpid(), start=process_start(os.getpid())))
    threading.Timer(0.4, first.release).start()
    progress, out = quiet()
    waited = second.acquire(entry("bbbb00000002"), progress, 10, poll=0.05)
    second.release()
    assert 0.3 < waited < 5
    assert "waiting for run aaaa00000001" in out.getvalue() and "took this machine's lock" in out.getvalue()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    """SIGKILL: the kernel drops the flock; the file still names the dead run, and is not believed."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from harness.run.hostlock import MachineLock, this_process\n"
        "lock = MachineLock(Path(sys.argv[1]))\n"
        "assert lock.try_acquire(this_process('aaaa00000001', 'local'))\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=False,
    )  # fmt: skip
    try:
        assert child.stdout is not None and child.stdout.readline() == "held\n"
        lock = MachineLock(tmp_path)
        assert not lock.try_acquire(entry("bbbb00000002"))
        assert lock.holder() is not None and lock.holder().run_id == "aaaa00000001"  # type: ignore[union-attr]
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        assert "aaaa00000001" in lock.path.read_text() and lock.holder() is None
        assert lock.try_acquire(entry("bbbb00000002"))
        lock.release()
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)


def test_two_unlocked_runs_see_each_other(tmp_path: Path) -> None:
    policy = LockPolicy(enabled=False, root=tmp_path)
    a = MeasuredPhase(policy, "aaaa00000001", "local", quiet()[0])
    progress, out = quiet()
    b = MeasuredPhase(policy, "bbbb00000002", "overhead", progress)
    a.begin()
    b.begin()  # sees a when it starts
    assert "warning: run aaaa00000001 (lab local) is measuring on this machine too" in out.getvalue()
    assert a.end() == Overlap(
        False, 0.0, (OtherRun("bbbb00000002", "overhead", os.getpid()),)
    )  # when it stops
    assert b.end() == Overlap(False, 0.0, (OtherRun("aaaa00000001", "local", os.getpid()),))
    assert list((tmp_path / "active").iterdir()) == []
    assert a.end() is None  # once


def test_the_watcher_sees_a_run_that_began_later(tmp_path: Path) -> None:
    policy = LockPolicy(enabled=False, root=tmp_path)
    a = MeasuredPhase(policy, "aaaa00000001", "local", quiet()[0])
    a.begin()
    b = MeasuredPhase(policy, "bbbb00000002", "overhead", quiet()[0])
    b.begin()
    time.sleep(1.5)
    b.end()
    overlap = a.end()
    assert overlap is not None and [o.run_id for o in overlap.others] == ["bbbb00000002"]


def test_locked_runs_one_after_the_other_measure_alone(tmp_path: Path) -> None:
    policy = LockPolicy(root=tmp_path)
    a = MeasuredPhase(policy, "aaaa00000001", "local", quiet()[0])
    a.begin()
    progress, out = quiet()
    b = MeasuredPhase(policy, "bbbb00000002", "overhead", progress)
    got: list[Overlap | None] = []
    waiter = threading.Thread(target=lambda: (b.begin(), got.append(b.end())))
    waiter.start()
    time.sleep(1.5)  # b waits, a's watcher polls
    assert waiter.is_alive()
    assert a.end() == Overlap(True, 0.0, ())
    waiter.join(10)
    assert len(got) == 1 and got[0] is not None and got[0].alone and got[0].locked
    assert got[0].waited_seconds >= 1
    assert "waiting for run aaaa00000001 (lab local" in out.getvalue()


def test_overlap_words() -> None:
    assert str(Overlap(True)) == "measured alone, holding its machine's lock"
    assert str(Overlap(True, 42.4)) == "measured alone, holding its machine's lock (waited 42 s for it)"
    assert "without its machine's lock (--no-lock)" in str(Overlap(False))
    two = Overlap(False, 0, (OtherRun("aaaa00000001", "local", 1), OtherRun("bbbb00000002", "vm", 2)))
    assert two.warning() == (
        "measured while run aaaa00000001 (lab local), run bbbb00000002 (lab vm) were active "
        "on the same machine: figures may be low"
    )
    assert Overlap(True).warning() is None


BESIDE = Overlap(False, 0.0, (OtherRun("cccc00000003", "overhead", 77),))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.db'}"
    return fresh_postgres()


def test_overlap_is_stored_with_the_run_and_a_version_2_store_is_upgraded(store_url: str) -> None:
    store = Store.open(store_url)
    old = store_run(store, "v1", BASE, minutes=0)
    with store.engine.begin() as conn:  # back to a version 2 store: no runs.overlap
        conn.execute(sa.text("ALTER TABLE runs DROP COLUMN overlap"))
        conn.execute(sa.text("update meta set value='2' where key='schema_version'"))
    store.close()
    store = Store.open(store_url)
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("select value from meta where key='schema_version'")).scalar() == "5"
    assert store.get_run(old).summary.overlap is None  # not recorded
    new = store_run(store, "v2", BASE, minutes=1)
    store.set_overlap(new, BESIDE)
    [summary] = [r for r in store.list_runs() if r.id == new]
    assert summary.overlap == BESIDE
    with store.engine.begin() as conn:  # a newer harness's form: read as not recorded
        conn.execute(sa.text("update runs set overlap = '{\"x\": 1}' where id = :id"), {"id": new})
    assert store.get_run(new).summary.overlap is None
    store.close()


def test_compare_report_and_summary_flag_a_run_measured_beside_another(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = Store.open(url)
    store_run(store, "v1", BASE, minutes=0)
    cand = store_run(store, "v2", [v * 0.85 for v in BASE], minutes=1)
    store.set_overlap(cand, BESIDE)
    c = compare(store, parse_selector("build:v1"), parse_selector("build:v2"), Settings())
    flag = (
        f"candidate run {cand}: measured while run cccc00000003 (lab overhead) was active on the same "
        "machine: figures may be low"
    )
    assert c.contended == [flag] and c.exit_status() == 1
    assert flag in render_text(c) and flag in render_markdown(c)
    assert "caution: 1 run(s) measured while another lab was active" in render_text(c).splitlines()[-1]
    doc = json.loads(render_json(c))
    assert doc["contended"] == [flag] and doc["verdict"].startswith("verdict: REGRESSION")
    details = store.get_run(cand)
    assert "note: measured while run cccc00000003 (lab overhead)" in run_summary(details)
    steps, _, _ = history(store, "local", ("receiver_bps",))
    assert [s.contended for s in steps] == [(), (cand,)]
    assert f"figures may be low): {cand}" in history_markdown("local", steps)
    store.close()
    assert main(["compare", "build:v1", "build:v2", "--store", url, "--format", "markdown"]) == 1
    assert flag in capsys.readouterr().out


def test_lock_options_on_run_nightly_and_repro(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(["run", "labs/local.toml", "--no-lock"])
    assert args.no_lock and args.lock_timeout is None
    args = parser.parse_args(["nightly", "l.toml", "--build", "b", "--baseline", "latest", "--out", "o",
                              "--lock-timeout", "600"])  # fmt: skip
    assert not args.no_lock and args.lock_timeout == 600
    assert parser.parse_args(["repro", "s.toml", "--no-lock"]).no_lock
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["run", "labs/local.toml", "--lock-timeout", "0"])
    assert info.value.code == 2 and "must be more than 0" in capsys.readouterr().err
