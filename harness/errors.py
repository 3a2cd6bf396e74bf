"""Errors the harness raises on purpose, each mapped to an exit status by the CLI.

* ``UsageError`` and its subclasses: the user gave something wrong (a lab file,
  a key, an argument). One line, exit status 2.
* ``InfraError``: the lab or a host could not do what the harness needs
  (a namespace could not be created, a program is missing). Exit status 3:
  an infrastructure failure is never reported as a regression.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INFRA = 3
EXIT_INTERRUPTED = 130
"""Ctrl-C: 128 + SIGINT, as a shell reports it. A run ended by SIGTERM or SIGHUP exits
with 143 or 129 instead (`harness.run.cleanup.exit_status`)."""


class HarnessError(Exception):
    """Base of every error the harness raises deliberately."""

    exit_status = EXIT_INFRA


class UsageError(HarnessError):
    """The caller gave the harness something it cannot use."""

    exit_status = EXIT_USAGE


class LabError(UsageError):
    """A lab (or scenario) file is wrong: names the file, the field and the reason."""

    def __init__(self, file: str, field: str, reason: str) -> None:
        self.file = file
        self.field = field
        self.reason = reason
        where = f"{file}: {field}" if field else file
        super().__init__(f"{where}: {reason}")


class StoreError(UsageError):
    """The result store cannot be opened or does not hold what was asked for."""


class InfraError(HarnessError):
    """A host, program or the lab itself failed: not the fault of the code under test."""

    exit_status = EXIT_INFRA


class CommandError(InfraError):
    """A command run on a host exited with a status the caller did not accept."""

    def __init__(self, host: str, argv: list[str], status: int, stderr: str) -> None:
        self.host = host
        self.argv = list(argv)
        self.status = status
        self.stderr = stderr
        last = stderr.strip().splitlines()[-1] if stderr.strip() else "no output on stderr"
        super().__init__(f"{host}: `{' '.join(argv)}` exited with {status}: {last}")


class NotReady(InfraError):
    """A process started on a host did not get ready: it ended first, or ``timeout``
    seconds passed (`harness.targets.base.Process.wait_ready`). One line: the host,
    what was awaited, the timeout, how the process stands, the end of its stderr."""

    def __init__(
        self,
        host: str,
        what: str,
        timeout: float,
        command: str,
        status: int | None,
        elapsed: float,
        stderr: str,
        stdout: str = "",
    ) -> None:
        self.host = host
        self.what = what
        self.timeout = timeout
        self.command = command
        self.status = status
        """The exit status if the process ended before it was ready; None: still running."""
        self.stderr = stderr
        if status is None:
            how = f"not ready within {timeout:g}s, {command} still running"
        else:
            how = f"{command} exited with {status} after {elapsed:.1f}s (of {timeout:g}s)"
        where = f"{host}: " if host else ""
        super().__init__(f"{where}waiting for {what}: {how}; {output_tail(stderr, stdout)}")


def output_tail(stderr: str, stdout: str = "", lines: int = 3) -> str:
    """The last ``lines`` lines of a process's stderr on one line (its stdout's when
    stderr is empty), each cut to 200 characters: ``stderr: a | b``."""
    for name, text in (("stderr", stderr), ("stdout", stdout)):
        last = [line.strip()[:200] for line in text.splitlines() if line.strip()][-lines:]
        if last:
            return f"{name}: " + " | ".join(last)
    return "no output"
