"""The network-namespace target for real: commands, background processes,
files, facts, and a teardown that leaves nothing."""

from __future__ import annotations

import pytest

from harness.errors import CommandError
from harness.run.orchestrator import new_instance_id
from harness.targets.netns import NetnsTarget


@pytest.fixture
def host(no_leftovers: None):  # type: ignore[no-untyped-def]
    target = NetnsTarget("t", f"wgh-{new_instance_id()}-t")
    target.setup()
    try:
        yield target
    finally:
        target.teardown()


def test_commands_run_inside_the_namespace(host: NetnsTarget) -> None:
    links = host.check(["ip", "-o", "link", "show"]).stdout
    # A fresh namespace has only its loopback, which setup brought up.
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
    assert "UP" in links or "UNKNOWN" in links


def test_exit_status_stdout_stderr_and_input(host: NetnsTarget) -> None:
    result = host.run(["sh", "-c", "cat; echo err >&2; exit 7"], input=b"hello")
    assert (result.status, result.stdout, result.stderr) == (7, "hello", "err\n")
    with pytest.raises(CommandError, match="exited with 7"):
        host.check(["sh", "-c", "exit 7"])
    assert host.run(["no-such-program-wgh"]).status == 127


def test_background_process_wait_kill_output(host: NetnsTarget) -> None:
    proc = host.start(["sh", "-c", "echo started; exec sleep 30"])
    with pytest.raises(TimeoutError):
        proc.wait(timeout=0.2)
    assert proc.pid in host.pids()
    status = proc.kill()
    assert status is not None and status != 0
    assert proc.output()[0] == b"started\n"
    assert proc.kill() == status  # a second kill is harmless


def test_teardown_stops_processes_left_in_the_namespace(no_leftovers: None) -> None:
    target = NetnsTarget("t", f"wgh-{new_instance_id()}-t")
    target.setup()
    try:
        target.start(["sleep", "60"])
        assert len(target.pids()) == 1
    finally:
        target.teardown()
    assert target.pids() == []


def test_put_get_and_facts(host: NetnsTarget, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "sub" / "f.bin"
    host.put(b"\x00\x01data", str(path))
    assert host.get(str(path)) == b"\x00\x01data"
    assert path.stat().st_mode & 0o777 == 0o600
    facts = host.facts()
    assert facts.cores >= 1 and facts.kernel and facts.memory_bytes > 0
    assert facts.tools["wireguard-go"] and facts.tools["iperf3"]
    assert facts.extra["namespace"] == host.namespace
