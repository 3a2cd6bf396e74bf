"""A lab naming an SSH host, end to end, against a real OpenSSH server (root):
this machine (`local`) and a host reached over SSH, wireguard-go on both
ends, iperf3 through the tunnel, stored; and the clear errors of an SSH host
that cannot be used."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.results.store import Store
from harness.targets.ledger import LABS_DIR
from tests.support.killed import Launched, record_of, still_there
from tests.support.paths import ROOT
from tests.support.sshd import Sshd, sshd_in_namespace


@pytest.fixture
def sshd(no_leftovers: None) -> Iterator[Sshd]:
    with sshd_in_namespace() as server:
        yield server


def _lab(server: Sshd, tmp_path: Path, impl: str = "wireguard-go", **changes: str) -> Path:
    fields = {
        "url": server.url,
        "key": str(server.client_key),
        "known_hosts": str(server.known_hosts),
        "host_key_policy": "strict",
        "connect_timeout": "3",
        **changes,
    }
    ssh = "\n".join(f"{k} = {v}" if k == "connect_timeout" else f'{k} = "{v}"' for k, v in fields.items())
    text = f"""
[lab]
name = "ssh-test"
[hosts.here]
target = "local"
[hosts.peer]
target = "ssh"
{ssh}
[tunnel]
mtu = 1420
[[tunnel.ends]]
host = "here"
impl = "wireguard-go"
address = "198.19.77.1/24"
endpoint = "{server.local_address}"
listen_port = 51877
[[tunnel.ends]]
host = "peer"
impl = "{impl}"
address = "198.19.77.2/24"
endpoint = "{server.address}"
listen_port = 51878
[suites.throughput]
duration = 2
flows = [{{ name = "tcp-1" }}, {{ name = "tcp-reverse", reverse = true }}]
"""
    path = tmp_path / "ssh.toml"
    path.write_text(text)
    return path


def _wgh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )


def test_lab_with_an_ssh_host_runs_end_to_end(sshd: Sshd, no_leftovers: None, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    done = _wgh("run", str(_lab(sshd, tmp_path)), "--store", store)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with Store.open(store) as s:
        run = s.get_run("latest")
    recv = {m.case: m.value for m in run.measurements if m.metric == "receiver_bps"}
    assert set(recv) == {"tcp-1", "tcp-reverse"} and all(v > 1e6 for v in recv.values())
    hosts = {h.host: h for h in run.hosts}
    assert hosts["peer"].facts["extra"]["transport"] == "ssh" and hosts["peer"].impl == "wireguard-go"
    assert "peer: connect" not in done.stderr  # nothing went wrong on the way
    # The remote side's processes were stopped and its temporary directory removed.
    left = subprocess.run(
        ["ip", "netns", "pids", sshd.namespace], capture_output=True, text=True
    ).stdout.split()
    assert str(sshd.pid) in left and len(left) <= 2, left  # sshd itself (and its session, closing)


def test_unknown_host_key_and_unreachable_host_are_one_line_errors(sshd: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    done = _wgh(
        "run", str(_lab(sshd, tmp_path, known_hosts=str(empty))), "--store", f"sqlite:///{tmp_path / 'a.db'}"
    )
    assert done.returncode == 3, done.stderr[-2000:]
    assert "host key" in done.stderr and sshd.host_key_fingerprint in done.stderr
    away = _lab(sshd, tmp_path, url=f"ssh://root@{sshd.unused_address}:22")
    done = _wgh("run", str(away), "--store", f"sqlite:///{tmp_path / 'b.db'}")
    assert done.returncode == 3 and sshd.unused_address in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_pyref_installs_itself_on_the_ssh_host(sshd: Sshd, no_leftovers: None, tmp_path: Path) -> None:
    """No wgharness on the remote: the driver puts the harness's sources there and runs
    pyref with the host's own python3 (here Debian's, with its python3-cryptography)."""
    import shutil

    from harness.targets.ship import INSTALL_ROOT, bundle

    home = Path(INSTALL_ROOT) / bundle()[1]
    shutil.rmtree(home, ignore_errors=True)  # the remote is this machine: start from nothing
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    done = _wgh("run", str(_lab(sshd, tmp_path, impl="pyref")), "--store", store)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (home / "harness" / "pyref" / "device.py").is_file()
    with Store.open(store) as s:
        run = s.get_run("latest")
    recv = [m.value for m in run.measurements if m.metric == "receiver_bps"]
    assert len(recv) == 2 and all(v > 1e6 for v in recv)
    hosts = {h.host: h for h in run.hosts}
    assert hosts["peer"].impl == "pyref"


def test_sigkill_mid_flow_leaves_the_remote_side_running_until_clean(
    sshd: Sshd, no_leftovers: None, tmp_path: Path
) -> None:
    """This machine's wireguard-go dies with the harness (its death signal); the SSH host's
    wireguard-go and iperf3 outlive the SSH channel by design, so `wgharness clean` logs in
    again as the record says and stops them (by PID, start time checked), and removes
    their folder; then the lab runs and passes."""
    lab, store = _lab(sshd, tmp_path), f"sqlite:///{tmp_path / 'runs.db'}"
    with Launched(tmp_path, "run", str(lab), "--duration", "30", "--store", store, "--no-lock") as wgh:
        wgh.until("tunnel: handshake done")
        time.sleep(1.5)
        wgh.signal(signal.SIGKILL)
        assert wgh.wait() == -signal.SIGKILL
    record = record_of()
    remote = [r for r in record.resources if r.host == "peer"]
    assert {(r.kind, r.name) for r in remote} >= {("process", "wireguard-go"), ("folder", "workdir")}, remote
    left = still_there(record)
    assert any("wireguard-go" in x and "on peer" in x for x in left), left  # outlived the channel
    with Launched(tmp_path, "clean", record.lab_id, name="clean") as cleaning:
        assert cleaning.wait(120) == 0, cleaning.output
    assert "removed      process wireguard-go" in cleaning.output and "on peer" in cleaning.output
    assert still_there(record) == [] and not (LABS_DIR / f"{record.lab_id}.json").exists()
    done = _wgh("run", str(lab), "--store", store, "--no-lock")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_lab_with_a_sudo_user_runs_end_to_end(sshd: Sshd, no_leftovers: None, tmp_path: Path) -> None:
    """The SSH host logged in to as a user with passwordless sudo (``?sudo=true``), not root:
    everything runs through ``sudo -n``, measured and stored as with a root login; the
    host checks stored with the run say so. A user whose sudo wants a password: one line."""
    import os

    from tests.support.sshd import sudo_user

    tag = os.environ["WGH_ID_PREFIX"]
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    with sudo_user(sshd, f"wgh{tag}s") as user, sudo_user(sshd, f"wgh{tag}p", passwordless=False) as asks:
        url = f"ssh://{user}@{sshd.address}:22?sudo=true"
        done = _wgh("run", str(_lab(sshd, tmp_path, url=url)), "--store", store)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        with Store.open(store) as s:
            run = s.get_run("latest")
            checks = s.get_artifact(run.run.id, "host-checks.txt").decode()
        recv = {m.case: m.value for m in run.measurements if m.metric == "receiver_bps"}
        assert set(recv) == {"tcp-1", "tcp-reverse"} and all(v > 1e6 for v in recv.values())
        assert f"{user}: without a password" in checks and "through sudo as root" in checks
        left = subprocess.run(["ip", "netns", "pids", sshd.namespace], capture_output=True, text=True)
        assert len(left.stdout.split()) <= 2, left.stdout  # sshd (and its closing session)

        url = f"ssh://{asks}@{sshd.address}:22?sudo=true"
        done = _wgh("run", str(_lab(sshd, tmp_path, url=url)), "--store", store)
        assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-3000:]
        with Store.open(store) as s:
            error = s.get_run("latest").summary.error
        assert error == (
            f"host check: peer: sudo missing ({asks}: needs a password): let {asks} sudo without a "
            f"password ({asks} ALL=(ALL) NOPASSWD: ALL), or log in as root"
        )
