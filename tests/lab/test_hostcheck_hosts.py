"""The host checks against real hosts (root): this machine, a network namespace,
and the real sshd the SSH tests start, with a tool taken off its PATH, logged in
to as root and as a user with sudo (without a password, and only with one). The
checks create nothing: the machine's namespaces, links, qdiscs, WireGuard
sockets and lab records are the same after as before."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from harness.errors import EXIT_FAILED, EXIT_INFRA, EXIT_OK
from harness.impl.base import ImplName
from harness.lab.hostcheck.core import CheckVerdict, HostCheck, render_table
from harness.lab.hostcheck.needs import HostNeeds
from harness.lab.hostcheck.probe import check_host
from harness.targets.base import HostKind
from harness.targets.ledger import LABS_DIR
from harness.targets.local import LocalTarget
from harness.targets.netns import NetnsTarget
from harness.targets.ssh import SshSpec, SshTarget
from tests.lab.test_hostcheck import ssh_lab
from tests.support.paths import ROOT
from tests.support.sshd import Sshd, sshd_in_namespace, sudo_user

V = CheckVerdict


def machine_state() -> dict[str, object]:
    """What a check must not change: namespaces, links, qdiscs, sockets, lab records."""

    def out(*argv: str) -> str:
        return subprocess.run(list(argv), capture_output=True, text=True, check=False).stdout

    return {
        "netns": out("ip", "netns", "list"),
        "links": out("ip", "-o", "link", "show"),
        "qdiscs": out("tc", "qdisc", "show"),
        "sockets": sorted(os.listdir("/var/run/wireguard")) if os.path.isdir("/var/run/wireguard") else [],
        "records": sorted(p.name for p in LABS_DIR.glob("*")) if LABS_DIR.is_dir() else [],
    }


def wgh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )


def by_check(rows: list[HostCheck]) -> dict[str, HostCheck]:
    return {r.check: r for r in rows}


def test_lab_check_hosts_on_this_machine_reads_only(no_leftovers: None) -> None:
    before = machine_state()
    done = wgh("lab", "check", str(ROOT / "labs" / "local.toml"), "--hosts")
    assert machine_state() == before
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["host", "check", "found", "verdict", "fix"]
    assert any(line.split()[:2] == ["a", "wireguard-go"] and " ok" in line for line in lines)
    assert lines[-1] == "2 hosts: everything the lab needs is there"
    plain = wgh("lab", "check", str(ROOT / "labs" / "local.toml"))  # without --hosts: as it always was
    assert plain.returncode == 0 and plain.stdout.count("\n") == 1 and "is valid" in plain.stdout


def test_this_machine_has_tbf_but_no_netem(no_leftovers: None) -> None:
    """netem is not in this machine's kernel: a real "missing", with the relay as the fix."""
    needs = HostNeeds("here", HostKind.LOCAL, tools=("ip", "tc", "wg"), tbf=True, netem=True)
    before = machine_state()
    rows = by_check(check_host(needs, LocalTarget("here")))
    assert machine_state() == before
    assert rows["tc tbf"].verdict is V.OK and rows["tc"].verdict is V.OK
    assert rows["tc netem"].verdict is V.MISSING and "relay" in rows["tc netem"].fix


def test_checks_through_a_netns_host_create_nothing(no_leftovers: None) -> None:
    host = NetnsTarget("ns", f"wgh-{os.environ['WGH_ID_PREFIX']}hc-ns")
    host.setup()
    try:
        needs = HostNeeds(
            "ns", HostKind.NETNS, impls=(ImplName.WIREGUARD_GO,), tools=("ip", "wireguard-go", "wg", "iperf3"),
            tun=True, netns=True,
        )  # fmt: skip
        before = machine_state()
        rows = check_host(needs, host)
        assert machine_state() == before
        inside = subprocess.run(["ip", "-n", host.namespace, "-o", "link"], capture_output=True, text=True)
        assert inside.stdout.count("\n") == 1  # still only its loopback
    finally:
        host.teardown()
    assert all(r.verdict is V.OK for r in rows), render_table(rows)
    assert {r.check for r in rows} >= {"root", "network namespaces", "wireguard-go", "/dev/net/tun"}


# -- over SSH --------------------------------------------------------------------


@pytest.fixture
def sshd_without_iperf3(no_leftovers: None, tmp_path: Path) -> Iterator[Sshd]:
    """The test sshd whose sessions' PATH holds every program of /usr/bin and /usr/sbin but iperf3."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for folder in ("/usr/sbin", "/usr/bin"):
        for name in os.listdir(folder):
            if name != "iperf3" and not (bin_dir / name).exists():
                (bin_dir / name).symlink_to(Path(folder) / name)
    with sshd_in_namespace(path=str(bin_dir)) as server:
        yield server


def _ssh_needs(server: Sshd, *, sudo: bool = False) -> HostNeeds:
    return HostNeeds(
        "peer", HostKind.SSH, impls=(ImplName.PYREF,), tools=("ip", "wg", "iperf3"), tun=True,
        pyref_python=True, sudo=sudo, url=f"{server.user}@{server.address}:22", host_key_policy="strict",
    )  # fmt: skip


def _target(server: Sshd, *, sudo: bool = False) -> SshTarget:
    spec = SshSpec.parse(
        server.url, key_file=str(server.client_key), known_hosts=str(server.known_hosts), sudo=sudo
    )
    return SshTarget("peer", spec)


def test_ssh_host_without_iperf3_on_its_path(sshd_without_iperf3: Sshd) -> None:
    server = sshd_without_iperf3
    rows = by_check(check_host(_ssh_needs(server), _target(server)))
    assert rows["reachable"].verdict is V.OK and rows["reachable"].found.endswith("host key strict")
    assert rows["root"].found == "logged in as root"
    assert rows["iperf3"].verdict is V.MISSING and rows["iperf3"].fix == "apt install iperf3"
    assert rows["wg"].verdict is V.OK and rows["python3 cryptography"].verdict is V.OK
    assert rows["/dev/net/tun"].verdict is V.OK


def test_an_ssh_host_that_cannot_be_reached_is_one_row(no_leftovers: None) -> None:
    with sshd_in_namespace() as server:
        gone = replace(server, address=server.unused_address)
        spec = SshSpec.parse(gone.url, key_file=str(server.client_key), known_hosts=str(server.known_hosts),
                             connect_timeout=1.0)  # fmt: skip
        rows = check_host(_ssh_needs(gone), SshTarget("peer", spec))
    assert [r.check for r in rows] == ["reachable"] and rows[0].verdict is V.MISSING
    assert "unreachable" in rows[0].found


@pytest.fixture
def sshd(no_leftovers: None) -> Iterator[Sshd]:
    with sshd_in_namespace() as server:
        yield server


def test_sudo_ok_and_sudo_needs_a_password(sshd: Sshd) -> None:
    tag = os.environ["WGH_ID_PREFIX"]
    with (
        sudo_user(sshd, f"wgh{tag}ok") as ok_user,
        sudo_user(sshd, f"wgh{tag}pw", passwordless=False) as pw_user,
    ):
        as_ok = replace(sshd, user=ok_user)
        rows = check_host(_ssh_needs(as_ok, sudo=True), _target(as_ok, sudo=True))
        found = by_check(rows)
        assert "sudo" in found, render_table(rows)
        assert found["sudo"].verdict is V.OK and found["sudo"].found == f"{ok_user}: without a password"
        assert found["root"].found == "through sudo as root" and found["root"].verdict is V.OK
        as_pw = replace(sshd, user=pw_user)
        rows = check_host(_ssh_needs(as_pw, sudo=True), _target(as_pw, sudo=True))
        assert [(r.check, r.verdict, r.found) for r in rows[1:]] == [
            ("sudo", V.MISSING, f"{pw_user}: needs a password")
        ]
        print(render_table(rows))


def test_lab_check_hosts_exit_status_by_kind(sshd: Sshd, tmp_path: Path) -> None:
    tag = os.environ["WGH_ID_PREFIX"]
    with sudo_user(sshd, f"wgh{tag}pw", passwordless=False) as pw_user:
        lab = tmp_path / "lab.toml"
        for user, sudo, status in (("root", "", EXIT_OK), (pw_user, "?sudo=true", EXIT_FAILED)):
            lab.write_text(_ssh_lab(sshd, f"ssh://{user}@{sshd.address}:22{sudo}"))
            done = wgh("lab", "check", str(lab), "--hosts")
            assert done.returncode == status, done.stdout + done.stderr
        assert "needs a password" in done.stdout
        lab.write_text(_ssh_lab(sshd, f"ssh://root@{sshd.unused_address}:22"))
        done = wgh("lab", "check", str(lab), "--hosts")
        assert done.returncode == EXIT_INFRA and "unreachable" in done.stdout


def _ssh_lab(server: Sshd, url: str) -> str:
    extra = f'key = "{server.client_key}"\nknown_hosts = "{server.known_hosts}"\nconnect_timeout = 2'
    return ssh_lab(extra, url, here=server.local_address, there=server.address, impl="wireguard-go", flow="")
