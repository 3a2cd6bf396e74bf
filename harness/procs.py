"""Processes on this machine: which one a PID is, and children that die with the harness.

Rules of this module:
* A process is known by its PID *and* its start time (field 22 of
  ``/proc/PID/stat``, clock ticks since boot): a PID the kernel gave to a newer
  process after the first one ended is not taken for it (`alive`). Where only a
  wall-clock time is known (a stored run's start), a process that started after
  it is not the one (`alive_since`).
* `dies_with_us` gives the ``preexec_fn`` that makes a child get SIGTERM when the
  harness ends, however it ends (PR_SET_PDEATHSIG). Linux sends it when the
  *thread* that started the child ends, not the process: so a child that outlives
  the call that starts it gets it only when started from the main thread, which
  lives as long as the harness. The setting survives ``execve`` (``ip netns exec``
  execs the program in place: the program itself gets it), but not a fork, nor
  the exec of a set-user-ID program: what the child starts in turn is not covered.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

PR_SET_PDEATHSIG = 1
DEATH_SIGNAL = signal.SIGTERM
"""What a child gets when the harness ends: SIGTERM, so wireguard-go and pyref remove their
sockets and tcpdump writes its last packets (`wgharness clean` removes what one ignoring it keeps)."""


def start_in_stat(stat: str) -> int | None:
    """The start time (field 22) in the text of ``/proc/PID/stat``; None if it is not there.
    The fields are counted after the command's closing parenthesis: a command may hold spaces."""
    fields = stat.rpartition(")")[2].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot); None if there is no such
    process, or it has ended and waits to be reaped (a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    if stat.rpartition(")")[2].split()[:1] == ["Z"]:
        return None
    return start_in_stat(stat)


def alive(pid: int, start: int | None, start_of: Callable[[int], int | None] = process_start) -> bool:
    """Whether process ``pid`` that started at ``start`` (None: unknown, the PID alone
    decides) still runs: not ended, and its PID not reused by a newer process."""
    started = start_of(pid)
    return started is not None and (start is None or started == start)


def _boot_time() -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    return None


def started_at(pid: int) -> float | None:
    """When process ``pid`` started, in seconds since the epoch (to the second); None if
    there is no such process or it cannot be told."""
    ticks, boot = process_start(pid), _boot_time()
    if ticks is None or boot is None:
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


SINCE_SLACK = 2.0
"""Seconds a process may seem to have started after the time it wrote (boot time is whole seconds)."""


def alive_since(pid: int, since: datetime, started: Callable[[int], float | None] = started_at) -> bool:
    """Whether process ``pid`` runs and started no later than ``since`` (a time it wrote
    down itself): a process that started after it holds a reused PID."""
    begun = started(pid)
    return begun is not None and begun <= since.timestamp() + SINCE_SLACK


_libc: ctypes.CDLL | None = None
with contextlib.suppress(OSError):
    _libc = ctypes.CDLL(None, use_errno=True)


def dies_with_us(outlives_call: bool = True) -> Callable[[], None] | None:
    """The ``preexec_fn`` for a child that must get `DEATH_SIGNAL` when the harness ends;
    None where it would not hold: off Linux, or (``outlives_call``: a background process)
    when the calling thread is not the main thread, whose end would stop the child early.
    A child whose parent ended before the setting took effect stops itself at once."""
    if _libc is None or not hasattr(_libc, "prctl"):
        return None
    if outlives_call and threading.current_thread() is not threading.main_thread():
        return None
    parent = os.getpid()
    prctl = _libc.prctl

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(DEATH_SIGNAL), 0, 0, 0)
        if os.getppid() != parent:  # the harness ended between fork and prctl
            os.kill(os.getpid(), DEATH_SIGNAL)

    return preexec
