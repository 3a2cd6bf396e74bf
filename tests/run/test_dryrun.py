"""`wgharness run LAB --dry-run`: the whole run written down, nothing executed."""

from __future__ import annotations

import re

import pytest

from harness.cli import main
from harness.lab.spec import load_lab
from harness.run.dryrun import plan
from tests.support.paths import ROOT


def test_local_lab_plan_lists_every_step_host_by_host(nothing_runs: None) -> None:
    text = plan(load_lab(ROOT / "labs" / "local.toml"))
    hosts = re.findall(r"^(\S+):$", text, re.M)
    assert hosts == ["orchestrator", "root", "a", "b"]
    assert text.count("a (checked on this machine):") == 1 and 'echo "@tool wireguard-go"' in text
    numbers = [int(n) for n in re.findall(r"^\s+(\d+)\s", text, re.M)]
    assert sorted(numbers) == list(range(1, len(numbers) + 1))  # one order for the whole run
    for expected in (
        r"ip netns add wgh-\w+-a",
        r"ip link add wgh\w+l0a netns wgh-\w+-a type veth peer name wgh\w+l0b",
        r"env WG_PROCESS_FOREGROUND=1 LOG_LEVEL=error ip netns exec wgh-\w+-a wireguard-go wgh\w+t0  &",
        r"wg setconf wgh\w+t0 /dev/stdin  < \(\d+ bytes on stdin\)",
        r"iperf3 --server --one-off --port 5201 --bind 198.19.0.2",
        r"iperf3 --client 198.19.0.2 --port 5201 --json --time 5 --omit 1 --udp --bitrate 300M",
        r"# stop `wireguard-go` by its PID",
        r"ip netns del wgh-\w+-b",
    ):
        assert re.search(expected, text), expected
    # The configuration (private keys) goes in on stdin: never on a command line.
    assert "PrivateKey" not in text and "private-key" not in text


def test_variants_and_probe_suites_are_planned(nothing_runs: None) -> None:
    text = plan(load_lab(ROOT / "labs" / "handshake.toml"))
    assert text.count("-m harness pyref") == 2  # the pyref variant brings both ends up once
    assert "handshake suite: prober identities" in text and "conformance suite" in text


def test_cli_dry_run_prints_and_exits_0(nothing_runs: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            ["run", str(ROOT / "labs" / "local.toml"), "--dry-run", "--suite", "throughput", "--repeat", "2"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.count("iperf3 --client") == 10  # five flows, twice


def test_ssh_lab_plan_connects_nowhere(nothing_runs: None) -> None:
    text = plan(load_lab(ROOT / "labs" / "ssh-linux.toml"))
    assert "peer (ssh://root@192.0.2.10:22):" in text
    assert re.search(
        r"env WG_PROCESS_FOREGROUND=1 LOG_LEVEL=error wireguard-go wgh\w+t1  & \(in the background", text
    )
    assert re.search(r"iperf3 --server --one-off --port 5201 --bind 198.19.0.2", text)
    assert "# connect over SSH" in text


@pytest.mark.parametrize(("lab", "driver_lines"), [
    ("windows-nt.toml", [r"'/installtunnelservice C:\\ProgramData\\wgharness\\wgh\w+t1.conf'",
                         r"'/uninstalltunnelservice' 'wgh\w+t1'|/uninstalltunnelservice wgh\w+t1",
                         r"& 'C:\\Program Files\\WireGuard\\wg.exe' 'show' 'wgh\w+t1' 'dump'"]),
    ("windows-go.toml", [r"Register-ScheduledTask", r"wg.exe' 'setconf' 'wgh\w+t1'"]),
])  # fmt: skip
def test_windows_lab_plans(nothing_runs: None, lab: str, driver_lines: list[str]) -> None:
    text = plan(load_lab(ROOT / "labs" / lab))
    win = text[text.index("win (ssh://Administrator@192.0.2.20:22, Windows):") :]
    for pattern in driver_lines:
        assert re.search(pattern, win), pattern
    assert "[preamble] of every script" in win
    # Windows pings the way Windows does, and the client's iperf3 is the lab's path.
    assert "& 'ping.exe' '-n' '3' '-w' '1000' '198.19.0.1'" in win
    assert r"C:\iperf3\iperf3.exe" in win and "'--client' '198.19.0.1'" in win
    # The configuration with its private key goes over SFTP, never into a command.
    assert "PrivateKey" not in text and "TEARDOWN ERROR" not in text


def test_vm_lab_plan_shows_the_qemu_command(nothing_runs: None) -> None:
    from harness.targets.vm.image import Recipe

    text = plan(load_lab(ROOT / "labs" / "vm-kernel.toml"))
    boot = next(line for line in text.splitlines() if "qemu-system-x86_64 -name" in line)
    assert Recipe().digest() in boot and "-m 1024" in boot and "-smp 2" in boot
    assert "restrict=on,hostfwd=tcp:127.0.0.1:PORT-:22" in boot and "wgh.addr=198.18.0.2/24" in boot
    assert re.search(
        r"ip address add 198.18.0.1/24 dev wgh\w+l0b", text
    )  # the tap takes the namespace's address
