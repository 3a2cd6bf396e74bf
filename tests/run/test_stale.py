"""Stale labs (harness/run/stale.py), no root: records in a temporary folder that
name plain child processes, folders and sockets of this test; remote hosts are a
recording stand-in. A live owner's lab, and what no record names, stay."""

from __future__ import annotations

import io
import os
import socket
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from harness.codec import encode
from harness.procs import process_start
from harness.progress import Progress
from harness.run import stale
from harness.run.stale import Cleaner, RemovalOutcome, before_run, clean, find_labs, report, select
from harness.targets.base import CommandResult, HostKind, Target
from harness.targets.ledger import (
    FORMAT,
    HERE,
    HostEntry,
    LabRecord,
    Resource,
    ResourceKind,
    read_record,
    write_record,
)
from harness.targets.ssh.spec import SshSpec


def _dead_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def _record(lab_id: str, resources: Sequence[Resource] = (), *, pid: int | None = None,
            hosts: Mapping[str, HostEntry] | None = None) -> LabRecord:  # fmt: skip
    pid = _dead_pid() if pid is None else pid
    serial = [replace(r, serial=i + 1) for i, r in enumerate(resources)]
    return LabRecord(FORMAT, lab_id, "local", f"{lab_id}abcd", pid, process_start(pid), "here",
                     "2026-12-01T00:00:00+00:00", dict(hosts or {}), tuple(serial))  # fmt: skip


def _write(directory: Path, record: LabRecord) -> Path:
    path = directory / f"{record.lab_id}.json"
    write_record(path, record)
    return path


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def _process(proc: subprocess.Popen[bytes], start: int | None = None) -> Resource:
    start = process_start(proc.pid) if start is None else start
    return Resource(ResourceKind.PROCESS, HERE, "sleep", pid=proc.pid, started=str(start))


def test_a_lab_is_stale_once_its_owner_is_gone_or_its_pid_reused(tmp_path: Path) -> None:
    _write(tmp_path, _record("wst1"))  # the owner ended
    _write(tmp_path, _record("wst2", pid=os.getpid()))  # this process: live
    reused = replace(_record("wst3", pid=os.getpid()), pid_start=1)  # the PID is another process's now
    _write(tmp_path, reused)
    (tmp_path / "junk.json").write_text("{")
    labs = find_labs(tmp_path)
    assert sorted(s.record.lab_id for s in labs.stale) == ["wst1", "wst3"]
    assert [r.lab_id for r in labs.live] == ["wst2"] and labs.unreadable == (tmp_path / "junk.json",)
    assert [s.record.lab_id for s in select(labs.stale, ["wst3"])] == ["wst3"]
    assert len(select(labs.stale, [])) == 2 and select(labs.stale, ["zz"]) == []


def test_clean_stops_the_recorded_process_and_no_other(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    other = subprocess.Popen(["sleep", "60"])
    try:
        folder = tmp_path / "wgh-repro-x"
        (folder / "sub").mkdir(parents=True)
        sock = tmp_path / "wghx0t0.sock"
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(sock))
        resources = [
            Resource(ResourceKind.FOLDER, HERE, "repro", path=str(folder)),
            Resource(ResourceKind.SOCKET, HERE, "wghx0t0", path=str(sock)),
            _process(sleeper),
            _process(other, start=process_start(other.pid) + 1),  # not the one noted: a newer process
            Resource(ResourceKind.NAMESPACE, HERE, "wgh-wst9-never-made"),
        ]
        path = _write(tmp_path, _record("wst4", resources))
        dry, _ = clean(dry_run=True, directory=tmp_path)
        assert [r.outcome for r in dry[0].removals] == [RemovalOutcome.GONE, RemovalOutcome.GONE, RemovalOutcome.WOULD_REMOVE,
                                                        RemovalOutcome.WOULD_REMOVE, RemovalOutcome.WOULD_REMOVE]  # fmt: skip
        assert sleeper.poll() is None and folder.exists() and path.exists()  # a dry run removes nothing
        cleaned, labs = clean(["wst4"], directory=tmp_path)
        outcomes = [r.outcome for r in cleaned[0].removals]
        assert outcomes == [
            RemovalOutcome.GONE,
            RemovalOutcome.GONE,
            RemovalOutcome.REMOVED,
            RemovalOutcome.REMOVED,
            RemovalOutcome.REMOVED,
        ]
        assert sleeper.wait(5) is not None and other.poll() is None
        assert not folder.exists() and not sock.exists() and not path.exists()
        lines = report(cleaned, labs)
        assert "run wst4abcd reads as aborted" in lines[0] and lines[-1].startswith("cleaned 1 stale lab(s)")
        assert any("removed      process sleep" in line for line in lines)
        listener.close()
    finally:
        other.kill()
        other.wait()


def test_a_live_owners_lab_is_never_touched(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    path = _write(tmp_path, _record("wst5", [_process(sleeper)], pid=os.getpid()))
    cleaned, labs = clean(directory=tmp_path)
    assert cleaned == [] and sleeper.poll() is None and path.exists()
    assert report(cleaned, labs)[-2:] == ["no stale labs on this machine",
                                          f"1 lab(s) in use, left alone: [wst5] pid {os.getpid()}"]  # fmt: skip


def test_what_cannot_be_removed_stays_in_the_record(tmp_path: Path) -> None:
    outside = tmp_path / "not-a-lab-folder"
    outside.mkdir()
    path = _write(tmp_path, _record("wst6", [Resource(ResourceKind.FOLDER, HERE, "x", path=str(outside))]))
    cleaned, _ = clean(directory=tmp_path)
    [removal] = cleaned[0].removals
    assert removal.outcome is RemovalOutcome.FAILED and "not a folder a lab makes" in removal.detail
    assert outside.exists()  # kept, and named in the record still
    record = read_record(path)
    assert record is not None and [r.path for r in record.resources] == [str(outside)]


class Remote(Target):
    """A remote host that answers from a table and writes every command down."""

    def __init__(self, answers: Mapping[str, str]) -> None:
        super().__init__("peer")
        self.answers = answers
        self.commands: list[str] = []

    def run(self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = 60.0,
            env: Mapping[str, str] | None = None) -> CommandResult:  # fmt: skip
        line = " ".join(argv if argv[:2] != ["sh", "-c"] else argv[3:])
        self.commands.append(line)
        out = next((v for k, v in self.answers.items() if line.startswith(k)), "")
        return CommandResult(tuple(argv), 0 if out != "FAIL" else 1, out.encode(), b"")

    def start(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> object:  # type: ignore[override]
        raise AssertionError("the cleaner starts nothing")

    def put(self, data: bytes, path: str, mode: int = 0o600) -> None:
        raise AssertionError

    def get(self, path: str) -> bytes:
        raise AssertionError

    def facts(self) -> object:  # type: ignore[override]
        raise AssertionError

    def remove_rule(self, name: str) -> None:
        self.commands.append(f"remove-rule {name}")


def test_remote_resources_are_removed_over_the_hosts_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process only if its start time is still the noted one; a guest's things go with QEMU."""
    started = "Mon Dec  7 10:00:00 2026"
    remote = Remote({"wgh-started 41": started, "wgh-started 42": "Tue Dec  8 10:00:00 2026",
                     "ip link show dev wgh1t0": "1: wgh1t0", "test -e": "", "ip link show": "FAIL"})  # fmt: skip
    monkeypatch.setattr(stale, "_connect", lambda name, entry: remote)
    monkeypatch.setattr(stale, "STOP_GRACE", 0.5)
    ssh = encode(SshSpec("root", "192.0.2.1"))
    hosts = {"peer": HostEntry(HostKind.SSH, ssh=ssh), "k": HostEntry(HostKind.VM)}
    resources = [
        Resource(ResourceKind.FOLDER, "peer", "workdir", path="/tmp/wgh.abc"),
        Resource(ResourceKind.INTERFACE, "peer", "wgh1t0"),
        Resource(ResourceKind.PROCESS, "peer", "wireguard-go", pid=41, started=started),
        Resource(ResourceKind.PROCESS, "peer", "iperf3", pid=42, started=started),  # reused: not it
        Resource(ResourceKind.PROCESS, "peer", "iperf3", pid=43),  # no start time: not told apart
        Resource(ResourceKind.FIREWALL_RULE, "peer", "wgharness peer iperf3 TCP/5201 1a2b3c4d"),
        Resource(ResourceKind.PROCESS, "k", "iperf3", pid=44, started=started),
    ]
    _write(tmp_path, _record("wst7", resources, hosts=hosts))
    cleaned, _ = clean(directory=tmp_path)
    outcome = {(r.resource.name, r.resource.pid): r.outcome for r in cleaned[0].removals}
    assert outcome == {
        ("workdir", None): RemovalOutcome.REMOVED, ("wgh1t0", None): RemovalOutcome.REMOVED,
        ("wireguard-go", 41): RemovalOutcome.FAILED,  # the stand-in's process never ends: "still runs"
        ("iperf3", 42): RemovalOutcome.GONE, ("iperf3", 43): RemovalOutcome.FAILED,
        ("wgharness peer iperf3 TCP/5201 1a2b3c4d", None): RemovalOutcome.REMOVED, ("iperf3", 44): RemovalOutcome.WITH_GUEST,
    }  # fmt: skip
    assert "rm -rf -- /tmp/wgh.abc" in remote.commands and "ip link del dev wgh1t0" in remote.commands
    assert "wgh-signal TERM 41" in remote.commands and "wgh-signal KILL 41" in remote.commands
    assert not any("42" in c and "wgh-signal" in c for c in remote.commands)
    assert "remove-rule wgharness peer iperf3 TCP/5201 1a2b3c4d" in remote.commands


def test_an_unreachable_host_fails_its_resources_once_and_keeps_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def unreachable(name: str, entry: HostEntry) -> Target:
        calls.append(name)
        from harness.errors import InfraError

        raise InfraError("connection refused")

    monkeypatch.setattr(stale, "_connect", unreachable)
    hosts = {"peer": HostEntry(HostKind.SSH, ssh=encode(SshSpec("root", "192.0.2.1")))}
    resources = [Resource(ResourceKind.INTERFACE, "peer", f"wgh{n}") for n in range(3)]
    path = _write(tmp_path, _record("wst8", resources, hosts=hosts))
    cleaned, _ = clean(directory=tmp_path)
    assert calls == ["peer"] and all("cannot reach peer" in r.detail for r in cleaned[0].failed)
    record = read_record(path)
    assert record is not None and len(record.resources) == 3


def test_a_run_says_one_line_about_stale_labs_and_cleans_them_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sleeper: subprocess.Popen[bytes]
) -> None:
    monkeypatch.delenv(stale.CLEAN_STALE_VARIABLE, raising=False)
    out = io.StringIO()
    before_run(Progress(stream=out), directory=tmp_path)
    assert out.getvalue() == ""  # nothing stale: nothing said
    _write(tmp_path, _record("wst9", [_process(sleeper)]))
    before_run(Progress(stream=out), directory=tmp_path)
    [line] = out.getvalue().splitlines()
    assert "1 stale lab(s)" in line and "[wst9] of run wst9abcd" in line and "wgharness clean" in line
    assert sleeper.poll() is None
    monkeypatch.setenv(stale.CLEAN_STALE_VARIABLE, "1")  # the setting does what --clean-stale does
    out = io.StringIO()
    before_run(Progress(stream=out), directory=tmp_path)
    assert "removed 1 stale lab(s)" in out.getvalue() and sleeper.wait(5) is not None
    assert find_labs(tmp_path).stale == ()


def test_cleaner_refuses_what_a_lab_does_not_make(tmp_path: Path) -> None:
    record = _record("wsta", [Resource(ResourceKind.FIREWALL_RULE, HERE, "x")])
    [removal] = Cleaner(stale.StaleLab(_write(tmp_path, record), record)).run()
    assert removal.outcome is RemovalOutcome.FAILED and "not something a lab makes" in removal.detail
