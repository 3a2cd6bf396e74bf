"""The host checks on recorded outputs (no root, nothing run): what a lab needs of
each host, the rows computed from a POSIX host's and a Windows host's probe
output, the table and its exit status, and the Windows probe's commands in a dry
run (only reads)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.errors import EXIT_FAILED, EXIT_INFRA, EXIT_OK, LabError
from harness.impl.base import ImplName
from harness.lab.hostcheck.core import (
    REACH,
    CheckVerdict,
    HostCheck,
    blocking_line,
    exit_status,
    posix_checks,
    posix_script,
    reach_check,
    render_table,
    sudo_check,
)
from harness.lab.hostcheck.needs import HostNeeds, lab_needs
from harness.lab.hostcheck.probe import check_lab
from harness.lab.hostcheck.windows import client_check, windows_checks
from harness.lab.spec import load_lab, parse_lab
from harness.targets.base import HostKind
from harness.targets.dry import DryRunLog
from tests.support.paths import DATA, ROOT

V = CheckVerdict


def recorded(*parts: str) -> str:
    """A recorded output without its '## ' header."""
    text = DATA.joinpath(*parts).read_bytes().decode("utf-8")
    head, sep, body = text.partition("## ----\n")
    assert sep and all(line.startswith("## ") for line in head.splitlines())
    return body


def verdicts(rows: list[HostCheck]) -> dict[str, CheckVerdict]:
    return {r.check: r.verdict for r in rows}


# -- what a lab needs ------------------------------------------------------------


def test_a_local_lab_needs_namespaces_wireguard_go_and_iperf3_on_both_hosts() -> None:
    needs = lab_needs(load_lab(ROOT / "labs" / "local.toml"))
    for need in needs.values():
        assert need.kind is HostKind.NETNS and need.netns and need.tun and need.on_this_machine
        assert need.tools == ("ip", "wireguard-go", "wg", "iperf3")
        assert not (need.netem or need.sudo or need.pyref_python or need.kernel_wireguard)


def test_a_vm_host_needs_qemu_and_its_image_and_nothing_of_the_guest_kernel(tmp_path: Path) -> None:
    needs = lab_needs(load_lab(ROOT / "labs" / "vm-kernel.toml"), image_dir="/cache")
    vm = next(n for n in needs.values() if n.kind is HostKind.VM)
    assert vm.tools == ("qemu-system-x86_64",) and not vm.kernel_wireguard and not vm.tun
    assert re.fullmatch(r"/cache/[0-9a-f]{16}", vm.image)
    assert "@kvm" in posix_script(vm) and "/cache/" in posix_script(vm)


def test_windows_and_captures_and_netem_and_bidir_are_asked_for() -> None:
    lab = load_lab(ROOT / "labs" / "windows-nt.toml")
    needs = lab_needs(lab, capture=["here"], netem=["here"])
    win = next(n for n in needs.values() if n.windows)
    assert win.impls == (ImplName.WIREGUARD_NT,) and win.tools == () and win.url.endswith(":22")
    here = needs["here"]
    assert "tcpdump" in here.tools and "tc" in here.tools and here.netem


def ssh_lab(
    extra: str = "",
    url: str = "ssh://debian@192.0.2.10",
    *,
    here: str = "192.0.2.1",
    there: str = "192.0.2.10",
    impl: str = "pyref",
    flow: str = ", bidir = true",
) -> str:
    """A lab of this machine and an SSH host ``url`` (``extra``: more of its fields)."""
    return f"""
[hosts.here]
target = "local"
[hosts.peer]
target = "ssh"
url = "{url}"
{extra}
[tunnel]
[[tunnel.ends]]
host = "here"
impl = "wireguard-go"
address = "198.19.0.1/24"
endpoint = "{here}"
[[tunnel.ends]]
host = "peer"
impl = "{impl}"
address = "198.19.0.2/24"
endpoint = "{there}"
[suites.throughput]
flows = [{{ name = "both"{flow} }}]
"""


@pytest.mark.parametrize(
    ("extra", "url"), [("sudo = true", "ssh://debian@192.0.2.10"), ("", "ssh://debian@192.0.2.10?sudo=true")]
)
def test_sudo_from_the_lab_host_or_its_url(extra: str, url: str) -> None:
    lab = parse_lab(ssh_lab(extra, url), "s.toml")
    peer = lab.hosts["peer"]
    assert peer.ssh is not None and peer.ssh.sudo
    spec = peer.ssh.ssh_spec()
    assert spec.sudo and spec.user == "debian" and spec.url == "ssh://debian@192.0.2.10:22?sudo=true"
    needs = lab_needs(lab)["peer"]
    assert (
        needs.sudo and needs.pyref_python and needs.iperf3_min == (3, 7) and needs.url == "debian@192.0.2.10"
    )


def test_sudo_on_a_windows_host_or_a_bad_query_is_a_lab_error() -> None:
    text = (
        (ROOT / "labs" / "windows-nt.toml")
        .read_text()
        .replace('target = "windows"', 'target = "windows"\nsudo = true')
    )
    with pytest.raises(LabError, match=r"hosts\.win\.sudo: a Windows host has no sudo"):
        parse_lab(text, "w.toml")
    with pytest.raises(LabError, match=r"hosts\.peer\.url: .*only query"):
        parse_lab(ssh_lab(url="ssh://debian@192.0.2.10?become=yes"), "s.toml")


# -- POSIX rows on recorded output ---------------------------------------------------

FULL = HostNeeds(
    "peer",
    HostKind.SSH,
    impls=(ImplName.PYREF,),
    programs=("/usr/bin/wireguard-go",),
    tools=("ip", "tc", "wireguard-go", "wg", "iperf3", "tcpdump", "tshark"),
    tun=True,
    tbf=True,
    netem=True,
    kernel_wireguard=True,
    pyref_python=True,
    iperf3_min=(3, 7),
)


def test_this_debian_machine_recorded_has_all_but_netem_and_kernel_wireguard() -> None:
    rows = posix_checks(FULL, recorded("hostcheck", "debian12-root.txt"))
    found = {r.check: r for r in rows}
    assert found["root"].found == "logged in as root" and found["root"].verdict is V.OK
    assert found["iperf3"].found == "3.12 at /usr/bin/iperf3" and found["iperf3"].verdict is V.OK
    assert found["wireguard-go"].found == "0.0.20220316 at /usr/bin/wireguard-go"
    assert found["tshark"].found == "4.0.17 at /usr/bin/tshark"
    assert found["tc"].found == "6.1.0 at /usr/sbin/tc"
    assert found["tc tbf"].found == "built into the kernel" and found["tc tbf"].verdict is V.OK
    assert (
        found["tc netem"].verdict is V.MISSING
        and found["tc netem"].found == "CONFIG_NET_SCH_NETEM is not set"
    )
    assert "relay" in found["tc netem"].fix
    assert found["kernel wireguard"].verdict is V.MISSING
    assert found["python3"].found == "3.11.7" and found["python3 cryptography"].verdict is V.OK
    assert found["program"].verdict is V.OK and found["/dev/net/tun"].verdict is V.OK
    assert {r.check for r in rows if r.verdict is not V.OK} == {"tc netem", "kernel wireguard"}


LACKING = """@uid
1000
@user
debian
@tun
@netns
@kconfig
@modules
sch_netem file /lib/modules/6.1.0-13-amd64/kernel/net/sched/sch_netem.ko.xz
@tool ip
/usr/sbin/ip
ip utility, iproute2-6.1.0, libbpf 1.1.0
@tool tc
@tool wireguard-go
@tool wg
@tool iperf3
/usr/bin/iperf3
iperf 3.6 (cJSON 1.5.2)
@tool tcpdump
@tool tshark
@program /usr/bin/wireguard-go
@python
3.9.2
Traceback (most recent call last):
ModuleNotFoundError: No module named 'cryptography'
"""


def test_a_lacking_host_gets_a_fix_for_each_thing_it_lacks() -> None:
    rows = posix_checks(FULL, LACKING)
    got = verdicts(rows)
    assert got["root"] is V.MISSING and "sudo = true" in next(r.fix for r in rows if r.check == "root")
    assert got["iperf3"] is V.TOO_OLD
    assert got["wireguard-go"] is V.MISSING and got["wg"] is V.MISSING and got["tc"] is V.MISSING
    assert got["/dev/net/tun"] is V.MISSING and got["program"] is V.MISSING
    assert got["python3"] is V.TOO_OLD and got["python3 cryptography"] is V.MISSING
    assert got["tc netem"] is V.OK  # a module to load
    assert got["tc tbf"] is V.UNKNOWN and got["kernel wireguard"] is V.UNKNOWN  # no config to read
    by = {r.check: r.fix for r in rows}
    assert (
        by["wg"] == "apt install wireguard-tools"
        and by["iperf3"] == "iperf3 3.7 or later (apt install iperf3)"
    )
    assert all(r.fix for r in rows if r.verdict.blocks)


def test_a_vm_host_without_kvm_or_image() -> None:
    vm = HostNeeds("k", HostKind.VM, tools=("qemu-system-x86_64",), accel="kvm", image="/c/abc")
    text = "@uid\n0\n@user\nroot\n@tool qemu-system-x86_64\n@kvm\npresent\n@image\n@tool debootstrap\n"
    rows = posix_checks(vm, text)
    got = verdicts(rows)
    assert got["accelerator"] is V.MISSING and got["qemu-system-x86_64"] is V.MISSING
    assert got["guest image"] is V.OK and got["debootstrap"] is V.MISSING
    auto = posix_checks(
        HostNeeds("k", HostKind.VM, accel="auto", image="/c/abc"),
        text.replace("@image\n", "@image\ncached\n"),
    )
    assert verdicts(auto) == {"root": V.OK, "accelerator": V.OK, "guest image": V.OK}


def test_kvm_that_failed_this_guest_before_is_tcg_or_a_miss() -> None:
    """/dev/kvm opens, but QEMU's verdict cache says an earlier boot of this guest fell
    back to TCG (as on this machine, docs/vm.md)."""
    text = "@uid\n0\n@user\nroot\n@kvm\npresent\nusable\n@image\ncached\n"
    rows = {
        accel: {r.check: r for r in posix_checks(HostNeeds("k", HostKind.VM, accel=accel, image="/c/abc",
                                                           accel_verdict="tcg"), text)}["accelerator"]
        for accel in ("auto", "kvm")
    }  # fmt: skip
    assert rows["auto"].verdict is V.OK and rows["auto"].found.startswith("TCG")
    assert rows["kvm"].verdict is V.MISSING and "tcg" in rows["kvm"].fix
    works = posix_checks(HostNeeds("k", HostKind.VM, accel="kvm", image="/c/abc", accel_verdict="kvm"), text)
    assert {r.check: r.found for r in works}["accelerator"] == "KVM (/dev/kvm)"


def test_sudo_rows() -> None:
    assert sudo_check("p", "debian", 0, "").found == "debian: without a password"
    refused = sudo_check("p", "debian", 1, "sudo: a password is required\n")
    assert refused.verdict is V.MISSING and refused.found == "debian: needs a password"
    assert "NOPASSWD" in refused.fix
    assert sudo_check("p", "debian", 127, "sh: 1: sudo: not found\n").found == "not installed"


# -- Windows rows on recorded output -----------------------------------------------

WIN = HostNeeds(
    "win", HostKind.WINDOWS, impls=(ImplName.WIREGUARD_NT, ImplName.WIREGUARD_GO_WINDOWS),
    iperf3_path=r"C:\iperf3\iperf3.exe",
)  # fmt: skip


def test_a_ready_windows_host() -> None:
    rows = windows_checks(WIN, recorded("windows", "hostcheck_ok.txt"))
    found = {r.check: r for r in rows}
    assert all(r.verdict is V.OK for r in rows), render_table(rows)
    assert found["PowerShell"].found == "5.1.20348.2400"
    assert found["Administrator"].found == "BENCH-01\\Administrator"
    assert found["WireGuard for Windows"].found == "0.5.3, WireGuardNT 1.0 (kernel driver)"
    assert found["wg.exe"].found == "1.0.20210914"
    assert found["iperf3.exe"].found == r"3.17.1 at C:\iperf3\iperf3.exe"
    assert (
        found["firewall profile"].found
        == "network Ethernet:Private, Ethernet 2:Public; firewall on for Domain, Private, Public"
    )
    assert found["free disk"].found == "50.2 GiB on C:"
    assert found["OpenSSH default shell"].found.endswith("powershell.exe")


def test_a_lacking_windows_host() -> None:
    rows = windows_checks(WIN, recorded("windows", "hostcheck_lacking.txt"))
    got = verdicts(rows)
    assert got["WireGuard for Windows"] is V.TOO_OLD and got["wg.exe"] is V.MISSING
    assert got["Administrator"] is V.MISSING and got["iperf3.exe"] is V.MISSING
    assert got["wireguard-go.exe"] is V.MISSING and got["wintun.dll"] is V.MISSING
    assert got["free disk"] is V.MISSING and got["firewall profile"] is V.UNKNOWN
    assert got["OpenSSH default shell"] is V.OK and got["PowerShell"] is V.OK
    assert next(r.fix for r in rows if r.check == "iperf3.exe") == r"put iperf3.exe at C:\iperf3\iperf3.exe"


@pytest.mark.parametrize(
    ("client", "verdict", "how"),
    [
        ("0.3.16", V.TOO_OLD, ""),
        ("0.4.5", V.OK, "registry ExperimentalKernelDriver=1"),
        ("0.4.9", V.OK, "registry UseUserspaceImplementation=0"),
        ("0.5.3", V.OK, "(kernel driver)"),
    ],
)
def test_the_client_against_wireguard_nt_thresholds(client: str, verdict: CheckVerdict, how: str) -> None:
    row = client_check("win", client, "")
    assert row.verdict is verdict and how in row.found


def test_the_windows_probe_only_reads_in_a_dry_run(nothing_runs: None) -> None:
    log = DryRunLog()
    rows = check_lab(load_lab(ROOT / "labs" / "windows-go.toml"), dry=log)
    scripts = "\n".join(line for host, line in log.entries if "Windows" in host)
    assert "$PSVersionTable" in scripts and "Get-NetFirewallProfile" in scripts and "Get-PSDrive" in scripts
    commands = set(re.findall(r"\b([A-Z][a-z]+-[A-Za-z]+)\b", scripts))
    assert commands and all(c.split("-")[0] in ("Get", "Test", "Join", "Split", "Select", "Where", "ForEach")
                            for c in commands), commands  # fmt: skip
    assert not re.search(r"msiexec|/install|Set-|New-|Remove-|Register-|Start-", scripts)
    assert any(r.host == "win" for r in rows)


# -- the table -----------------------------------------------------------------


def test_table_and_exit_status() -> None:
    ok = HostCheck("a", "wg", "1.0 at /usr/bin/wg", V.OK)
    missing = HostCheck("b", "iperf3", "", V.MISSING, "apt install iperf3")
    table = render_table([ok, missing])
    lines = table.splitlines()
    assert lines[0].split() == ["host", "check", "found", "verdict", "fix"]
    assert lines[3].split() == ["b", "iperf3", "missing", "apt", "install", "iperf3"]
    assert lines[-1] == "2 hosts: 1 missing"
    assert exit_status([ok]) == EXIT_OK and exit_status([ok, missing]) == EXIT_FAILED
    assert (
        exit_status([missing, reach_check("c", "u@h:22", "strict", "c (u@h:22): unreachable")]) == EXIT_INFRA
    )
    assert blocking_line([ok, missing]) == "host check: b: iperf3 missing: apt install iperf3"
    assert render_table([ok, HostCheck("a", "tc tbf", "", V.UNKNOWN)]).endswith(
        "1 host: everything the lab needs is there (1 unknown)"
    )
    assert reach_check("c", "u@h:22", "strict", None).check == REACH


def test_the_windows_probe_reads_the_paths_the_lab_gives() -> None:
    from harness.lab.hostcheck.windows import windows_script

    needs = HostNeeds(
        "win", HostKind.WINDOWS, impls=(ImplName.WIREGUARD_NT, ImplName.WIREGUARD_GO_WINDOWS),
        iperf3_path=r"D:\tools\iperf3.exe", nt_program=r"D:\WG\wireguard.exe",
        go_windows_program=r"D:\builds\wg go\wireguard-go.exe",
    )  # fmt: skip
    script = windows_script(needs)
    assert r"Join-Path 'D:\WG' 'wireguard.exe'" in script
    assert r"$g = 'D:\builds\wg go\wireguard-go.exe'" in script and r"'D:\tools\iperf3.exe'" in script


def test_a_bad_lab_file_is_exit_2_with_hosts_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text(ssh_lab().replace('target = "ssh"', 'target = "ftp"'))
    assert main(["lab", "check", str(bad), "--hosts"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hosts.peer.target" in err
