"""Undo what was done, in reverse order, whatever happens; and the signals that end a run.

Every resource a lab creates registers how to remove it the moment it exists.
`unwind` runs every undo even when some fail, and does not let a signal
interrupt the clean-up half-way.

The signals, as `interrupt_on_signals` sets them (the rules):
* SIGINT (Ctrl-C), SIGTERM (a CI system's cancel, ``kill``) and SIGHUP (a lost
  terminal or SSH session) end a run alike: `Interrupted`, a KeyboardInterrupt,
  is raised where the main thread is; the lab comes down, the run is stored as
  interrupted, and the exit status is 128 + the signal's number (`exit_status`).
* Only the first of them interrupts. A later one is noted and otherwise ignored:
  the teardown it would cut short goes on (SIGKILL is the way out of a teardown
  that hangs, and ``wgharness clean`` then removes what is left). One that comes
  while a teardown step runs (`signals_deferred`) is held until the step ends.
* After SIGHUP, what was written to a terminal that has hung up goes to
  /dev/null: the lines of the teardown, and pytest's, would fail otherwise.
* SIGTERM is always taken, and unblocked, whatever the harness inherited: it is
  what CI systems send. SIGINT or SIGHUP inherited as *ignored* stays ignored: a
  shell without job control starts a background job (``cmd &``) with SIGINT
  ignored so that Ctrl-C in the terminal does not reach it, and ``nohup`` ignores
  SIGHUP so that the run outlives the terminal; both ask for just that.
"""

from __future__ import annotations

import contextlib
import os
import signal
import termios
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class _Undo:
    what: str
    action: Callable[[], object]


INTERRUPTING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""The signals that end a run as Ctrl-C does."""

_received: list[int] = []
"""Every interrupting signal this process has had, in order."""


class Interrupted(KeyboardInterrupt):
    """A run ended by a signal (SIGINT, SIGTERM or SIGHUP): handled as Ctrl-C is."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def first_signal() -> int | None:
    """The interrupting signal this process had first; None if none came."""
    return _received[0] if _received else None


def exit_status(default: int) -> int:
    """128 + the first interrupting signal, as a shell reports a process it ended; else ``default``."""
    signum = first_signal()
    return default if signum is None else 128 + signum


def _lost_terminal_to_null() -> None:
    """After SIGHUP: every descriptor on a terminal that has hung up (its session lost)
    fails each write with EIO, and would fail the teardown's lines and pytest's own (and
    so the exit status); each becomes /dev/null. pytest keeps the terminal on a
    descriptor of its own while it captures output, hence all of them, not only 1 and 2.
    A terminal still there (``kill -HUP``) is left as it is."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith(("/dev/pts/", "/dev/tty", "/dev/console")):
                continue
            termios.tcgetattr(fd)  # a hung-up terminal answers EIO (and so isatty says no)
        except termios.error:
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, fd, inheritable=os.get_inheritable(fd))
            os.close(null)
        except OSError:
            continue


def _noted(signum: int) -> None:
    _received.append(signum)
    if signum == signal.SIGHUP:
        _lost_terminal_to_null()


def _interrupt(signum: int, frame: object) -> None:
    _noted(signum)
    if len(_received) == 1:
        raise Interrupted(signum)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """While the block runs: SIGTERM, and SIGINT and SIGHUP unless inherited ignored, raise
    `Interrupted` (the first of them; later ones are noted only). The handlers before are
    put back after it. No-op outside the main thread (signals go to the main thread)."""
    if not _main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in INTERRUPTING}
    for s, handler in previous.items():
        if s == signal.SIGTERM or handler != signal.SIG_IGN:
            signal.signal(s, _interrupt)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


_held: list[int] | None = None
"""The signals the outermost `signals_deferred` block now running has held (None: none runs)."""


@contextmanager
def signals_deferred(reraise: bool = True) -> Iterator[list[int]]:
    """Hold the interrupting signals while the block runs (those not ignored); the list
    fills with those that came. After it, with ``reraise``, `Interrupted` is raised if
    the first signal of this process came meanwhile (a later one interrupts nothing).
    Inside another such block it is that block: the outer one holds, and decides. No-op
    outside the main thread (signals go to the main thread)."""
    global _held
    if _held is not None or not _main_thread():
        yield _held if _held is not None else []
        return
    caught: list[int] = []
    before = len(_received)
    previous = {s: signal.getsignal(s) for s in INTERRUPTING}

    def hold(signum: int, frame: object) -> None:
        caught.append(signum)
        _noted(signum)

    for s, handler in previous.items():
        if handler != signal.SIG_IGN:
            signal.signal(s, hold)
    _held = caught
    try:
        yield caught
    finally:
        _held = None
        for s, handler in previous.items():
            signal.signal(s, handler)
    if caught and reraise and before == 0:
        raise Interrupted(caught[0])


class CleanupStack:
    def __init__(self) -> None:
        self._undos: list[_Undo] = []

    def push(self, what: str, action: Callable[[], object]) -> None:
        self._undos.append(_Undo(what, action))

    def __len__(self) -> int:
        return len(self._undos)

    def unwind(self, on_step: Callable[[str], None] | None = None) -> list[str]:
        """Run every undo, newest first. Returns the errors, one line each."""
        errors: list[str] = []
        interrupted: KeyboardInterrupt | None = None
        with signals_deferred():
            while self._undos:
                undo = self._undos.pop()
                if on_step:
                    with contextlib.suppress(Exception):  # a lost terminal must not stop a teardown
                        on_step(undo.what)
                try:
                    undo.action()
                except KeyboardInterrupt as exc:  # from a nested unwind: finish this one first
                    interrupted = exc
                except Exception as exc:  # keep going: the rest must still be removed
                    errors.append(f"{undo.what}: {exc}")
        if interrupted is not None:
            raise interrupted
        return errors
