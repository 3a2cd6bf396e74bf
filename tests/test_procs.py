"""harness/procs.py: a process known by its PID and start time, and children that
get SIGTERM when the harness ends (no root: plain child processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from harness.procs import alive, alive_since, dies_with_us, process_start, start_in_stat, started_at


def test_alive_needs_the_pid_and_its_start() -> None:
    starts = {4242: 100, 4343: 200}
    assert alive(4242, 100, starts.get) and alive(4242, None, starts.get)
    assert not alive(4444, 100, starts.get)  # gone
    assert not alive(4343, 100, starts.get)  # the PID belongs to a newer process
    me = os.getpid()
    assert alive(me, process_start(me)) and process_start(me) == start_in_stat(
        Path("/proc/self/stat").read_text()
    )


def test_alive_since_refuses_a_process_younger_than_the_time_it_wrote() -> None:
    now = datetime.now(UTC)
    mine = started_at(os.getpid())
    assert mine is not None and abs(mine - time.time()) < 24 * 3600 * 365
    assert alive_since(os.getpid(), now)
    assert not alive_since(os.getpid(), now - timedelta(days=400))  # written before this process began
    assert not alive_since(2**22 + 12345, now)  # above pid_max: no such process


def _child_of_a_parent_that_is_killed(use_thread: bool) -> tuple[int, bool]:
    """A parent Python that starts ``sleep`` with `dies_with_us` (from its main thread, or
    from a thread that then ends) and prints its PID, then is SIGKILLed: (sleep's PID,
    whether sleep ended within 5 s)."""
    code = f"""
import subprocess, sys, threading, time
from harness.procs import dies_with_us
def start():
    p = subprocess.Popen(["sleep", "60"], preexec_fn=dies_with_us())
    print(p.pid, flush=True)
if {use_thread}:
    t = threading.Thread(target=start); t.start(); t.join()
else:
    start()
time.sleep(60)
"""
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})  # fmt: skip
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    start = process_start(pid)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while alive(pid, start) and time.monotonic() < deadline:
        time.sleep(0.05)
    ended = not alive(pid, start)
    if not ended:
        os.kill(pid, signal.SIGKILL)
    return pid, ended


def test_a_child_started_from_the_main_thread_dies_with_a_killed_parent() -> None:
    _, ended = _child_of_a_parent_that_is_killed(use_thread=False)
    assert ended


def test_a_background_child_started_from_another_thread_is_not_tied_to_that_thread() -> None:
    """The thread ends at once: were the death signal set, it would stop the child with it."""
    assert dies_with_us(outlives_call=False) is not None
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(dies_with_us()))
    t.start()
    t.join()
    assert got == [None]
    _, ended = _child_of_a_parent_that_is_killed(use_thread=True)
    assert not ended  # survives: `wgharness clean` is what removes such a one


def test_a_zombie_is_not_alive() -> None:
    child = subprocess.Popen(["true"])
    start = None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # ended, not yet reaped
        stat = Path(f"/proc/{child.pid}/stat").read_text()
        if stat.rpartition(")")[2].split()[0] == "Z":
            start = start_in_stat(stat)
            break
        time.sleep(0.01)
    assert start is not None and process_start(child.pid) is None and not alive(child.pid, start)
    child.wait()
