"""What a remote target needs from its connection, its `Conduit`: run a command
line as the remote side's shell or service receives it, and move files.

`SshTarget` (POSIX: argv quoted with shlex) and `WindowsTarget` (argv rendered
as PowerShell with -EncodedCommand) differ only in how an argv becomes a
command line; both hand that line to a `Conduit` (`SshConduit`, one SSH
connection). A dry run swaps in a conduit that records the lines instead of
sending them.

(Not to be confused with a WireGuard transport message, `harness.pyref.messages.Transport`.)
"""

from __future__ import annotations

from typing import Protocol

from harness.targets.base import CommandResult


class Conduit(Protocol):
    name: str
    """The host's name in the lab (for error messages)."""

    def exec(
        self, command: str, *, input: bytes | None = None, timeout: float | None = 60.0
    ) -> CommandResult:
        """Run ``command`` (one line, already quoted for the remote side) to completion.
        The result's ``argv`` is ``(command,)``; never raises for a non-zero status."""
        ...

    def put(self, data: bytes, path: str, mode: int = 0o600) -> None: ...

    def get(self, path: str) -> bytes: ...

    def close(self) -> None: ...
