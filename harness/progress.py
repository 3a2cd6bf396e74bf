"""Step-by-step progress lines on stderr, with the time since the start."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from typing import TextIO


class Progress:
    def __init__(
        self,
        stream: TextIO | None = None,
        quiet: bool = False,
        uncaptured: Callable[[], ContextManager[object]] | None = None,
    ) -> None:
        self.stream = stream
        self.quiet = quiet
        # Under pytest, output capture is lifted around each line (see the plugin).
        self.uncaptured = uncaptured or contextlib.nullcontext
        self.t0 = time.monotonic()

    def _emit(self, text: str) -> None:
        # A terminal that is gone (SIGHUP: the SSH session was lost) fails every write;
        # the run, and above all its teardown, goes on without its lines.
        with contextlib.suppress(OSError), self.uncaptured():
            print(
                f"[{time.monotonic() - self.t0:7.2f}s] {text}",
                file=self.stream or sys.stderr,
                flush=True,
            )

    def step(self, message: str) -> None:
        if not self.quiet:
            self._emit(message)

    def warn(self, message: str) -> None:
        self._emit(f"warning: {message}")
