"""`wgharness bisect` for real on the local lab (one TCP flow, 1 s per run, at most
4 rounds a step), over a git repository the test makes: each commit holds a
wrapper around the system's wireguard-go that limits its tunnel interface with
tbf, at 100 Mbit/s up to a commit and at 75 Mbit/s (25% slower) from it on;
the build command copies the wrapper. The limit, well below the 220-285 Mbit/s
wireguard-go carries here unlimited, keeps the lab's throughput steady on a busy
2-core runner, so "same" and "regressed" are mostly decided at the first look
(round 3): a step takes about 30 s. An unknown (a busy moment) costs a step
more, never a wrong culprit (docs/bisect.md)."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.codec import from_json
from harness.results.bisect import BISECT_ARTIFACT, BisectReport, Finding, steps_bound
from harness.results.records import RunStatus
from harness.results.store import Store
from tests.support.gitrepo import commit_all, git
from tests.support.leftovers import stop
from tests.support.paths import ROOT

WRAPPER = """#!/bin/sh
# commit {i}: wireguard-go with its tunnel interface limited to {rate} Mbit/s
case "$1" in -*|"") exec /usr/bin/wireguard-go "$@" ;; esac
(
  i=0
  while [ $i -lt 100 ]; do
    tc qdisc replace dev "$1" root tbf rate {rate}mbit burst 64kb latency 50ms 2>/dev/null && exit 0
    i=$((i + 1)); sleep 0.05
  done
) &
exec /usr/bin/wireguard-go "$@"
"""
LAB = str(ROOT / "benchmarks" / "overhead.toml")


def make_repo(path: Path, rates: list[int]) -> list[str]:
    """A commit per rate, each holding wg.sh at that rate; their hashes."""
    path.mkdir()
    git(path, "init", "-q")
    shas = []
    for i, rate in enumerate(rates):
        script = path / "wg.sh"
        script.write_text(WRAPPER.replace("{i}", str(i)).replace("{rate}", str(rate)))
        script.chmod(0o755)
        shas.append(commit_all(path, f"commit {i}: {rate} Mbit/s"))
    return shas


def bisect_argv(repo: Path, tmp_path: Path, good: str, bad: str) -> list[str]:
    return [sys.executable, "-m", "harness", "bisect", LAB, "--end", "a,b", "--repo", str(repo), "--good", good,
            "--bad", bad, "--build-cmd", f"cp wg.sh {{out}} && echo {{commit}} >> {tmp_path / 'built'}",
            "--cache", str(tmp_path / "cache"), "--duration", "1", "--max-rounds", "4",
            "--store", f"sqlite:///{tmp_path / 'r.db'}"]  # fmt: skip


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=ROOT)


def stored(tmp_path: Path, run_id: str) -> BisectReport:
    with Store.open(f"sqlite:///{tmp_path / 'r.db'}") as store:
        return from_json(store.get_artifact(run_id, BISECT_ARTIFACT), BisectReport)


def test_bisect_finds_the_commit_that_made_the_tunnel_slower(no_leftovers: None, tmp_path: Path) -> None:
    k = 5
    shas = make_repo(tmp_path / "repo", [100 if i < k else 75 for i in range(7)])
    done = run([*bisect_argv(tmp_path / "repo", tmp_path, shas[0], "HEAD"), "--out", str(tmp_path / "out")])
    log = done.stdout[-4000:] + done.stderr[-3000:]
    assert done.returncode == 1, log
    assert f"bisect: FIRST BAD {shas[k][:12]}, last good {shas[k - 1][:12]}" in done.stdout, log
    with Store.open(f"sqlite:///{tmp_path / 'r.db'}") as store:
        runs = store.list_runs()
    [record] = [r for r in runs if r.lab_name == "bisect:overhead"]
    assert record.status is RunStatus.FAILED and record.build == f"{shas[0][:12]}..{shas[-1][:12]}"
    report = stored(tmp_path, record.id)
    assert report.conclusion is not None and report.conclusion.first_bad == k
    # About log2(N): the bound when every verdict is decided, a step more for each unknown
    # (a busy runner can leave a "same" undecided at the cap: the bad end is asked then).
    unknown = sum(s.label == "unknown" for s in report.steps)
    assert len(report.steps) <= steps_bound(7) + unknown, log
    # Each step a run of its own, labelled with its candidate; the culprit's evidence: 25% slower.
    steps = {r.id: r for r in runs if r.lab_name == "overhead"}
    assert [steps[s.run_id].build for s in report.steps if s.run_id] == [
        shas[s.candidate][:12] for s in report.steps
    ]
    [culprit] = [s for s in report.steps if s.candidate == k and s.reference == "good"]
    [m] = culprit.metrics
    assert m.label == "regressed" and -0.35 < m.change < -0.15 and m.median_b < 0.85 * m.median_a, log
    # Each commit built once, in a worktree removed after.
    built = (tmp_path / "built").read_text().split()
    assert sorted(built) == sorted(set(built)), built
    assert set(built) == {shas[0], shas[-1], *(shas[s.candidate] for s in report.steps)}
    assert git(tmp_path / "repo", "worktree", "list").count("\n") == 0
    assert "FIRST BAD" in (tmp_path / "out" / "summary.md").read_text()


def test_nothing_changed_ends_no_regression_and_resumes_after_sigterm(
    no_leftovers: None, tmp_path: Path
) -> None:
    shas = make_repo(tmp_path / "repo", [100, 100, 100, 100])
    argv = bisect_argv(tmp_path / "repo", tmp_path, shas[0], shas[-1])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # step 1 measured, step 2 begun: end it there
            if line.startswith("bisect: step 2:"):
                proc.send_signal(signal.SIGTERM)
                break
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        stop(proc, grace=10)
    assert proc.returncode == 128 + signal.SIGTERM, stdout[-2000:] + stderr[-2000:]
    assert "bisect: NOT CONCLUDED" in stdout
    assert git(tmp_path / "repo", "worktree", "list").count("\n") == 0

    done = run(argv)  # the same command: step 1 is taken over, not measured again
    log = done.stdout[-4000:] + done.stderr[-3000:]
    assert done.returncode == 0, log
    assert (
        "taking over 1 measured step(s)" in done.stderr and "bisect: NO REGRESSION IN RANGE" in done.stdout
    ), log
    with Store.open(f"sqlite:///{tmp_path / 'r.db'}") as store:
        records = [r for r in store.list_runs() if r.lab_name == "bisect:overhead"]
    assert [r.status for r in records] == [RunStatus.PASSED, RunStatus.INTERRUPTED]
    report = stored(tmp_path, records[0].id)
    assert report.conclusion is not None and report.conclusion.finding is Finding.NO_REGRESSION
    assert report.steps[0].reused_from == records[1].id and all(
        s.reused_from is None for s in report.steps[1:]
    )
    assert all(s.label in ("same", "unknown") for s in report.steps), log


def test_sigterm_while_a_commit_builds_leaves_no_worktree(integration: None, tmp_path: Path) -> None:
    shas = make_repo(tmp_path / "repo", [100, 75])
    argv = bisect_argv(tmp_path / "repo", tmp_path, shas[0], shas[1])
    build = argv.index("--build-cmd") + 1
    argv[build] = f"echo $$ > {tmp_path / 'pid'}; sleep 60; cp wg.sh {{out}}"
    before = set(Path(tempfile.gettempdir()).glob("wgh-bisect-*"))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith("bisect: building"):
                break
        for _ in range(100):
            if (tmp_path / "pid").is_file() and (tmp_path / "pid").read_text().strip():
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        stop(proc, grace=10)
    assert proc.returncode == 128 + signal.SIGTERM and "wgharness: interrupted" in stderr, stderr
    assert git(tmp_path / "repo", "worktree", "list").count("\n") == 0
    assert set(Path(tempfile.gettempdir()).glob("wgh-bisect-*")) <= before  # its folder removed too
    assert not Path(f"/proc/{(tmp_path / 'pid').read_text().strip()}").exists()  # the build was stopped
    assert list((tmp_path / "cache").rglob("*")) == [
        next((tmp_path / "cache").iterdir())
    ]  # nothing half-made
