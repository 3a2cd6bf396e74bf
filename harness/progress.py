"""Step-by-step progress lines on stderr, with the time since the start."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.t0 = time.monotonic()

    def step(self, message: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.t0:7.2f}s] {message}", file=self.stream, flush=True)

    def warn(self, message: str) -> None:
        print(f"[{time.monotonic() - self.t0:7.2f}s] warning: {message}", file=self.stream, flush=True)
