"""Shared fixtures. Integration tests need root and the lab's programs: where
WGH_REQUIRE_INTEGRATION=1 (the test command and CI set it) a missing
prerequisite fails the test instead of skipping it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
PROGRAMS = (
    "ip", "tc", "wg", "wireguard-go", "iperf3", "ping", "ss", "sshd", "ssh-keygen",
    "qemu-system-x86_64", "qemu-img", "debootstrap", "mkfs.ext4", "tcpdump", "tshark", "ethtool",
)  # fmt: skip


def _missing_prerequisites() -> list[str]:
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    if os.geteuid() != 0:
        missing.insert(0, "root")
    if not os.path.exists("/dev/net/tun"):
        missing.append("/dev/net/tun")
    return missing


@pytest.fixture
def integration() -> None:
    missing = _missing_prerequisites()
    if missing:
        reason = f"integration test needs: {', '.join(missing)}"
        if os.environ.get("WGH_REQUIRE_INTEGRATION") == "1":
            pytest.fail(reason + " (WGH_REQUIRE_INTEGRATION=1)", pytrace=False)
        pytest.skip(reason)


@dataclass(frozen=True)
class Leftovers:
    namespaces: frozenset[str]
    sockets: frozenset[str]
    processes: frozenset[tuple[int, str]]


def snapshot() -> Leftovers:
    """Namespaces, WireGuard sockets and lab processes that exist now."""
    ns = frozenset(line.split()[0] for line in os.popen("ip netns list").read().splitlines() if line.strip())
    sock_dir = Path("/var/run/wireguard")
    socks = frozenset(p.name for p in sock_dir.glob("*.sock")) if sock_dir.is_dir() else frozenset()
    procs = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if (
            cmd.startswith(("wireguard-go ", "iperf3 ", "tcpdump ", "ping "))
            or " -m harness pyref " in cmd
            or " -m harness.probe" in cmd
            or " -m harness.impair.relay " in cmd
        ):
            procs.add((int(proc.name), cmd.strip()))
    return Leftovers(ns, socks, frozenset(procs))


@pytest.fixture
def no_leftovers(integration: None):  # type: ignore[no-untyped-def]
    """Fails the test if it leaves a namespace, socket or lab process behind."""
    before = snapshot()
    yield
    after = snapshot()
    assert after.namespaces <= before.namespaces, f"namespaces left: {after.namespaces - before.namespaces}"
    assert after.sockets <= before.sockets, f"sockets left: {after.sockets - before.sockets}"
    assert after.processes <= before.processes, f"processes left: {after.processes - before.processes}"


@pytest.fixture
def nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any program started or SSH connection opened fails the test (dry runs, dry targets)."""
    import subprocess

    import paramiko

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"executed or connected: {args[:1] or kwargs}")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(paramiko.SSHClient, "connect", refuse)
    monkeypatch.setattr(paramiko.Transport, "start_client", refuse)


@pytest.fixture
def modules_loaded_by() -> Callable[[str], set[str]]:
    """Runs Python ``code`` in a fresh interpreter with this tree on the path (so
    nothing another test imported hides an import) and gives every module it loaded."""

    def run(code: str) -> set[str]:
        script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
        out = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT)},
        )
        return set(json.loads(out.stdout.splitlines()[-1]))

    return run
