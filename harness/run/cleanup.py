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
* SIGTERM is always taken, and unblocked, whatever the harness inherited: it is
  what CI systems send. SIGINT or SIGHUP inherited as *ignored* stays ignored: a
  shell without job control starts a background job (``cmd &``) with SIGINT
  ignored so that Ctrl-C in the terminal does not reach it, and ``nohup`` ignores
  SIGHUP so that the run outlives the terminal; both ask for just that.
"""

from __future__ import annotations

import contextlib
import signal
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


def _interrupt(signum: int, frame: object) -> None:
    _received.append(signum)
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
        _received.append(signum)

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
