"""The test run itself: SIGTERM or SIGHUP to pytest unwinds the running test as Ctrl-C
does (`tests/conftest.py`), so what a test set up by hand is taken down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.leftovers import stop
from tests.support.paths import ROOT

A_LONG_TEST = """
import os, time
from pathlib import Path

def test_sleeps():
    mark = Path(os.environ["WGH_TEST_MARK"])
    mark.write_text("started")
    try:
        time.sleep(120)
    finally:
        mark.write_text("torn down")
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_to_pytest_runs_the_tests_finally(tmp_path: Path, signum: int) -> None:
    (tmp_path / "test_long.py").write_text(A_LONG_TEST)
    mark = tmp_path / "mark"
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
            str(tmp_path / "test_long.py")]  # fmt: skip
    proc = subprocess.Popen(
        argv, cwd=ROOT, env={**os.environ, "WGH_TEST_MARK": str(mark)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (mark.exists() and mark.read_text() == "started"):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.05)
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=60)
    finally:
        stop(proc, grace=5)
    assert mark.read_text() == "torn down", out
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
