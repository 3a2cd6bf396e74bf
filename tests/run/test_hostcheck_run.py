"""The host checks at the start of a real `wgharness run` (root): a lab whose host
lacks what it needs (kernel WireGuard, which this machine's kernel is built
without) is stored as ``error`` with one line naming the host, the check and the
fix, before anything is created; a lab that has everything runs, with the checks'
table among its artifacts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.errors import EXIT_INFRA
from harness.results.records import RunStatus
from harness.results.store import Store
from tests.support.paths import ROOT

LOCAL = (ROOT / "labs" / "local.toml").read_text()


def wgh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )


def test_a_missing_kernel_feature_stops_the_run_before_anything_is_made(
    no_leftovers: None, tmp_path: Path
) -> None:
    lab = tmp_path / "kernel.toml"
    lab.write_text(LOCAL.replace('host = "b"\nimpl = "wireguard-go"', 'host = "b"\nimpl = "kernel"'))
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    done = wgh("run", str(lab), "--duration", "1", "--store", store)
    assert done.returncode == EXIT_INFRA, done.stdout[-2000:] + done.stderr[-2000:]
    assert "creating netns" not in done.stdout + done.stderr  # no host was made
    with Store.open(store) as s:
        run = s.list_runs()[0]
        assert run.status == RunStatus.ERROR
        assert run.error == (
            "host check: b: kernel wireguard missing (CONFIG_WIREGUARD is not set): a kernel with "
            "CONFIG_WIREGUARD (Linux 5.6 or later; modprobe wireguard)"
        )
        table = s.get_artifact(run.id, "host-checks.txt").decode()
    assert "b     kernel wireguard" in table and table.endswith("2 hosts: 1 missing")


def test_a_lab_with_everything_runs_and_keeps_the_table(no_leftovers: None, tmp_path: Path) -> None:
    lab = tmp_path / "short.toml"
    lab.write_text(LOCAL.split("flows = [")[0] + 'flows = [{ name = "tcp-1" }]\n')
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    done = wgh("run", str(lab), "--duration", "1", "--store", store)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with Store.open(store) as s:
        run = s.list_runs()[0]
        assert (
            s.get_artifact(run.id, "host-checks.txt").decode().endswith("everything the lab needs is there")
        )
