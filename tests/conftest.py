"""Shared fixtures. Integration tests need root and the lab's programs: where
WGH_REQUIRE_INTEGRATION=1 (the test command and CI set it) a missing
prerequisite fails the test instead of skipping it.

A test is an integration test when it uses the `integration` fixture, itself or
through another fixture (`no_leftovers` does); the collection hook below marks
it `integration`, and that mark is the only way a test gets it. The fast tier,
`tox -e fast` or `pytest tests -m "not integration and not slow"`, is the rest.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from types import FrameType

import pytest

from harness.run.orchestrator import ID_PREFIX_VARIABLE
from tests.support.leftovers import new_tag, owned, snapshot
from tests.support.paths import ROOT

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


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM and SIGHUP stop the tests as Ctrl-C does, so each test's `finally` and each
    fixture's teardown still run: a CI system cancels with SIGTERM, and a test that set up
    namespaces and processes by hand (no lab record for `wgharness clean` to find) would
    otherwise leave them. A signal a parent set to be ignored stays ignored."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, _interrupted)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        uses = "integration" in getattr(item, "fixturenames", ())
        if uses:
            item.add_marker(pytest.mark.integration)
        elif item.get_closest_marker("integration"):
            raise pytest.UsageError(
                f"{item.nodeid}: marked integration but does not use the integration fixture "
                "(take it as an argument: it marks the test and skips it where root or a program is missing)"
            )


@pytest.fixture
def integration() -> None:
    missing = _missing_prerequisites()
    if missing:
        reason = f"integration test needs: {', '.join(missing)}"
        if os.environ.get("WGH_REQUIRE_INTEGRATION") == "1":
            pytest.fail(reason + " (WGH_REQUIRE_INTEGRATION=1)", pytrace=False)
        pytest.skip(reason)


@pytest.fixture
def no_leftovers(integration: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fails the test if it leaves a namespace, WireGuard socket or process behind.
    Only what the test made counts (see tests/support/leftovers.py): another lab on the
    machine, or another test run beside this one, never fails it."""
    tag = new_tag()
    monkeypatch.setenv(ID_PREFIX_VARIABLE, tag)
    yield
    left = owned(snapshot(), tag)
    assert not left, (
        f"left behind: namespaces {sorted(left.namespaces)}, sockets {sorted(left.sockets)}, "
        f"processes {sorted(left.processes)}"
    )


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
