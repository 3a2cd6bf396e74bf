"""`wgharness nightly --rounds adaptive` for real on the local lab: one TCP flow,
1 s per run, at most 4 rounds; the candidate build is wireguard-go behind a
wrapper that limits its tunnel interface to 50 Mbit/s (a fifth or less of what the
baseline carries on any host seen, busy or not: a busy one gave 255-504 Mbit/s
against a 200 Mbit/s limit, which 4 rounds could not decide), so it must be
decided "regressed" (exit 1). The rounds,
the decisions and the reports are checked for their structure; the stored run
must compare with `compare build:A build:B` like any run with variants."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

from harness.codec import from_json
from harness.results.rounds import ROUNDS_ARTIFACT, RoundsReport, Stop
from harness.results.store import Store
from tests.support.leftovers import stop
from tests.support.paths import ROOT

SLOW_WG = """#!/bin/sh
# wireguard-go whose tunnel interface sends at most 50 Mbit/s (tbf): a slower build.
case "$1" in -*|"") exec /usr/bin/wireguard-go "$@" ;; esac
(
  i=0
  while [ $i -lt 100 ]; do
    tc qdisc replace dev "$1" root tbf rate 50mbit burst 64kb latency 50ms 2>/dev/null && exit 0
    i=$((i + 1)); sleep 0.05
  done
) &
exec /usr/bin/wireguard-go "$@"
"""


def wgh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)  # fmt: skip


def test_adaptive_nightly_decides_a_much_slower_build(no_leftovers: None, tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'r.db'}"
    slow = tmp_path / "slow-wg"
    slow.write_text(SLOW_WG)
    slow.chmod(0o755)
    out = tmp_path / "night"
    done = wgh("nightly", str(ROOT / "benchmarks" / "overhead.toml"), "--build", "slow", "--baseline", "build:debian",
               "--rounds", "adaptive", "--max-rounds", "4", "--duration", "1", "--candidate-program", str(slow),
               "--out", str(out), "--store", store_url)  # fmt: skip
    log = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 1, log
    assert "verdict: REGRESSION - tcp-1 receiver_bps" in done.stdout, log
    # A progress line per round, the last one with the decision.
    lines = re.findall(r"round (\d)/4: (\d) of 1 metrics decided", done.stderr)
    assert lines and [int(k) for k, _ in lines] == list(range(1, len(lines) + 1)) and lines[-1][1] == "1", log

    with Store.open(store_url) as store:
        [run] = store.list_runs()
        details = store.get_run(run.id)
        report = from_json(store.get_artifact(run.id, ROUNDS_ARTIFACT), RoundsReport)
    assert run.status == "passed" and run.build == "slow"
    assert report.stop is Stop.DECIDED and 3 <= report.rounds <= 4 and len(lines) == report.rounds
    [m] = report.metrics
    assert (m.metric.key, m.label, m.decision.rounds) == (
        "throughput/tcp-1/receiver_bps",
        "regressed",
        report.rounds,
    )
    assert m.decision.change < -0.4 and all(len(r.a) == len(r.b) == 2 for r in m.rounds)
    # Every round stored: two repetitions of each build per round, and nothing more.
    recv = [x for x in details.measurements if x.metric == "receiver_bps"]
    assert sorted((x.repetition, x.build) for x in recv) == sorted(
        (rep, build) for rep in range(1, 2 * report.rounds + 1) for build in ("debian", "slow")
    )

    summary = (out / "summary.md").read_text()
    assert "| throughput/tcp-1/receiver_bps | regressed |" in summary and "**verdict: REGRESSION" in summary
    junit = ET.parse(out / "junit.xml").getroot()
    assert (junit.get("tests"), junit.get("failures"), junit.get("errors")) == ("1", "1", "0")
    assert (out / "report.html").read_text().count("<svg") == 2

    shown = wgh("results", "show", run.id, "--store", store_url)
    assert shown.returncode == 0 and "regressed" in shown.stdout and "candidate (B): slow" in shown.stdout
    compared = wgh("compare", "build:debian", "build:slow", "--store", store_url)
    assert compared.returncode == 1 and "regressed" in compared.stdout, compared.stdout + compared.stderr


def test_adaptive_rounds_interrupted_store_what_was_measured(no_leftovers: None, tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'r.db'}"
    out = tmp_path / "night"
    argv = [sys.executable, "-m", "harness", "nightly", str(ROOT / "benchmarks" / "overhead.toml"), "--build", "b",
            "--baseline", "build:a", "--rounds", "adaptive", "--max-rounds", "10", "--duration", "1",
            "--out", str(out), "--store", store_url]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # an A/A comparison: nothing is decided after one round
            if "round 1/10: 0 of 1 metrics decided" in line:
                proc.send_signal(signal.SIGTERM)
                break
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        stop(proc, grace=10)
    assert proc.returncode == 128 + signal.SIGTERM, stdout[-2000:] + stderr[-2000:]  # 143
    assert "verdict: INTERRUPTED after 1 round(s)" in stdout
    with Store.open(store_url) as store:
        [run] = store.list_runs()
        report = from_json(store.get_artifact(run.id, ROUNDS_ARTIFACT), RoundsReport)
    assert run.status == "interrupted" and report.stop is Stop.INTERRUPTED and report.rounds == 1
    assert len(report.metrics[0].rounds) == 1 and "interrupted in round 2" in report.note
    assert "INTERRUPTED" in (out / "summary.md").read_text()


def test_compare_rerun_prints_the_rounds_alone(no_leftovers: None, tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'r.db'}"
    done = wgh("compare", "build:a", "build:b", "--rerun", str(ROOT / "benchmarks" / "overhead.toml"),
               "--max-rounds", "3", "--duration", "1", "--format", "json", "--store", store_url)  # fmt: skip
    # Both builds run the lab's own wireguard-go: an A/A comparison. How often one ends
    # "different" anyway is a statistical figure (benchmarks/rounds_lab.py, docs/comparing.md:
    # 0 of 60 on a tbf-limited lab); this unlimited lab on a busy runner can drift by 9% in
    # three rounds. Here: the exit status follows the verdict and the rounds add up.
    assert done.returncode in (0, 1), done.stdout[-2000:] + done.stderr[-2000:]
    report = from_json(done.stdout, RoundsReport)
    assert report.rounds == 3 or report.stop is Stop.DECIDED
    [m] = report.metrics
    assert m.label in ("same", "unknown", "improved", "regressed") and len(m.rounds) == report.rounds
    assert done.returncode == (1 if m.label == "regressed" else 0), m.reason
    assert "round 1/3" in done.stderr and "passed" in done.stderr
