"""A background process on an SSH host: started by `SshTarget.start` with the
`scripts.START` wrapper, which outlives the SSH channel and records the exit
status in the target's working directory; polled, signalled and read back over
the same connection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from harness.errors import InfraError
from harness.targets.base import Process
from harness.targets.ledger import Forget
from harness.targets.ssh.scripts import POLL, SIGNAL

if TYPE_CHECKING:
    from harness.targets.ssh.target import SshTarget


def _status(shell_status: int) -> int:
    # As subprocess reports it: a shell's 128+N (killed by signal N) becomes -N.
    return -(shell_status - 128) if 128 < shell_status < 160 else shell_status


class SshProcess(Process):
    """A background process on an SSH host (see `scripts.START`)."""

    def __init__(
        self, target: SshTarget, argv: Sequence[str], directory: str, name: str, pid: int, waiter: int
    ):
        self.argv = tuple(argv)
        self.host = target.name
        self._target = target
        self._dir = directory
        self._name = name
        self._pid = pid
        self._waiter = waiter
        self._status: int | None = None
        self.on_end: Forget | None = None
        """Called once the process is seen to have ended (it forgets the process in the lab's record)."""

    @property
    def pid(self) -> int:
        return self._pid

    def poll(self) -> int | None:
        if self._status is not None:
            return self._status
        result = self._target.run(
            ["sh", "-c", POLL, "wgh-poll", self._dir, self._name, str(self._pid), str(self._waiter)]
        )
        answer = result.stdout.strip()
        if answer == "running":
            return None
        if answer == "lost":  # the waiter was killed: the status is gone
            self._status = -1
        elif answer.isdigit():
            self._status = _status(int(answer))
        else:
            raise InfraError(f"{self._target.name}: cannot poll process {self._pid}: {result.stderr.strip()}")
        if self.on_end is not None:
            on_end, self.on_end = self.on_end, None
            on_end()
        return self._status

    def wait(self, timeout: float | None = None) -> int:
        return self.poll_until_done(timeout)

    def signal(self, name: str) -> None:
        """Send signal ``name`` (TERM, KILL, INT...) to its process group."""
        self._target.run(["sh", "-c", SIGNAL, "wgh-signal", name, str(self._pid)])

    def kill(self, grace: float = 3.0) -> int | None:
        if self.poll() is not None:
            return self._status
        self.signal("TERM")
        try:
            return self.wait(grace)
        except TimeoutError:
            self.signal("KILL")
        try:
            return self.wait(grace)
        except TimeoutError:
            return None

    def output(self) -> tuple[bytes, bytes]:
        return self._target.read_optional(f"{self._dir}/{self._name}.out"), self._target.read_optional(
            f"{self._dir}/{self._name}.err"
        )
