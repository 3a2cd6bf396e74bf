"""Undo what was done, in reverse order, whatever happens.

Every resource a lab creates registers how to remove it the moment it exists.
`unwind` runs every undo even when some fail, and does not let a second Ctrl-C
interrupt the clean-up half-way.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class _Undo:
    what: str
    action: Callable[[], object]


@contextmanager
def sigint_deferred() -> Iterator[list[int]]:
    """Hold SIGINT/SIGTERM while the block runs; re-raise KeyboardInterrupt after it
    if one arrived. No-op outside the main thread (signals go to the main thread)."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def hold(signum: int, frame: object) -> None:
        caught.append(signum)

    for s in previous:
        signal.signal(s, hold)
    try:
        yield caught
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if caught:
        raise KeyboardInterrupt


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
        interrupted = False
        with sigint_deferred():
            while self._undos:
                undo = self._undos.pop()
                if on_step:
                    on_step(undo.what)
                try:
                    undo.action()
                except KeyboardInterrupt:  # from a nested unwind: finish this one first
                    interrupted = True
                except Exception as exc:  # keep going: the rest must still be removed
                    errors.append(f"{undo.what}: {exc}")
        if interrupted:
            raise KeyboardInterrupt
        return errors
