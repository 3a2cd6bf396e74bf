"""The machine the harness runs on, and the one place commands become processes.

`LocalTarget` runs commands with `subprocess`; subclasses only change how a
command is wrapped (`wrap`), e.g. `ip netns exec NAME ...`, so there is a
single code path that turns an argv into a process on this machine. A
background process (`start`) gets SIGTERM if the harness ends without
stopping it (`harness.procs.dies_with_us`), and is noted, with its PID and
start time, in the lab's record of a host that has one. A command `run` waits
for gets it only when given more than a minute (`LONG_COMMAND`: an iperf3
client, the prober): setting it costs a fork of the whole harness (about 12 ms
here instead of 1.4), too much for every `ip` and `wg`, which end by their
timeout, or with the namespace they run in. Made with
``dry=`` a `DryRunLog`, it is that host in a dry run: each command line, as it
would run here, goes to the log instead.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.errors import InfraError
from harness.parsers.facts import HostFacts, facts_script, parse_facts
from harness.procs import dies_with_us, process_start
from harness.targets.base import CommandResult, HostKind, Process, Target
from harness.targets.dry import DryProcess, DryRunLog
from harness.targets.ledger import Forget, ResourceKind


class CommandTimeout(InfraError):
    """A command did not finish within its timeout (it has been killed)."""


def _environ(env: Mapping[str, str] | None) -> dict[str, str] | None:
    if env is None:
        return None
    merged = dict(os.environ)
    merged.update(env)
    return merged


class LocalProcess(Process):
    """A process on this machine, its output spooled to temporary files."""

    def __init__(
        self, argv: Sequence[str], wrapped: Sequence[str], env: Mapping[str, str] | None, host: str = ""
    ):
        self.argv = tuple(argv)
        self.host = host
        # Spooled to files, not pipes: a chatty process can never block on a full pipe.
        self._out = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the process)
        self._err = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            # A process group of its own, so Ctrl-C in the terminal reaches only the
            # harness, which then stops its processes in order. Not a new session:
            # with the kernel's autogroup scheduling every session is a scheduling
            # group of its own, which cost wireguard-go ~10% throughput in the
            # local lab (docs/benchmarks.md).
            # It gets SIGTERM should the harness end without stopping it (`dies_with_us`).
            self._popen = subprocess.Popen(
                list(wrapped),
                stdin=subprocess.DEVNULL,
                stdout=self._out,
                stderr=self._err,
                env=_environ(env),
                process_group=0,
                preexec_fn=dies_with_us(),
            )
        except OSError as exc:
            self._out.close()
            self._err.close()
            raise InfraError(f"cannot start `{' '.join(argv)}`: {exc.strerror}") from exc
        self.on_end: Forget | None = None
        """Called once the process is seen to have ended (it forgets the process in the lab's record)."""

    @property
    def pid(self) -> int:
        return self._popen.pid

    def _ended(self, status: int | None) -> int | None:
        if status is not None and self.on_end is not None:
            on_end, self.on_end = self.on_end, None
            on_end()
        return status

    def poll(self) -> int | None:
        return self._ended(self._popen.poll())

    def wait(self, timeout: float | None = None) -> int:
        try:
            status = self._popen.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(f"`{' '.join(self.argv)}` still running after {timeout}s") from exc
        self._ended(status)
        return status

    def kill(self, grace: float = 3.0) -> int | None:
        if self._popen.poll() is not None:
            return self._ended(self._popen.returncode)
        try:
            self._popen.send_signal(signal.SIGTERM)
            return self._ended(self._popen.wait(grace))
        except subprocess.TimeoutExpired:
            self._popen.kill()
            return self._ended(self._popen.wait(grace))
        except ProcessLookupError:
            return self.poll()

    def output(self) -> tuple[bytes, bytes]:
        return _contents(self._out.fileno()), _contents(self._err.fileno())


LONG_COMMAND = 60.0
"""A command `run` may give more seconds than this (the default) may run long, an iperf3
client or the prober: it gets the death signal too."""


def _long(timeout: float | None) -> bool:
    return timeout is None or timeout > LONG_COMMAND


def _started(pid: int) -> str | None:
    start = process_start(pid)
    return None if start is None else str(start)


def _contents(fd: int) -> bytes:
    """The whole file, read with pread: the file's offset is shared with the process, so a
    seek here would make its next write land over its own earlier output."""
    size, chunks, offset = os.fstat(fd).st_size, [], 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


class LocalTarget(Target):
    """This machine, in its own network namespace."""

    kind = HostKind.LOCAL

    def __init__(self, name: str, *, dry: DryRunLog | None = None) -> None:
        super().__init__(name)
        self.dry = dry

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """The argv actually executed for ``argv``."""
        return list(argv)

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        log = self.dry
        if log is not None:
            stdin = f"  < ({len(input)} bytes on stdin)" if input is not None else ""
            log.record(self.name, self.describe(argv, env) + stdin)
            return log.answer(argv)
        try:
            done = subprocess.run(
                self.wrap(argv),
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                env=_environ(env),
                preexec_fn=dies_with_us(outlives_call=False) if _long(timeout) else None,
            )
        except subprocess.TimeoutExpired as exc:
            raise CommandTimeout(f"{self.name}: `{' '.join(argv)}` did not finish within {timeout}s") from exc
        except FileNotFoundError as exc:
            return CommandResult(tuple(argv), 127, b"", f"{exc.filename}: not found\n".encode())
        return self.translate(CommandResult(tuple(argv), done.returncode, done.stdout, done.stderr))

    def translate(self, result: CommandResult) -> CommandResult:
        """Undo what the wrapper changed in a result (see `NetnsTarget`)."""
        return result

    def start(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Process:
        log = self.dry
        if log is not None:
            log.record(self.name, self.describe(argv, env) + "  &")
            return DryProcess(argv, self.name, log)
        process = LocalProcess(argv, self.wrap(argv), env, self.name)
        if self.ledger is not None:
            process.on_end = self.noted(
                ResourceKind.PROCESS, Path(argv[0]).name, pid=process.pid, started=_started(process.pid)
            )
        return process

    def describe(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
        """The command as it runs on this machine (wrapped, with its environment)."""
        prefix = [f"{k}={v}" for k, v in (env or {}).items()]
        return shlex.join([*(["env", *prefix] if prefix else []), *self.wrap(argv)])

    def put(self, data: bytes, path: str, mode: int = 0o600) -> None:
        log = self.dry
        if log is not None:
            log.note(self.name, f"write {path} ({len(data)} bytes, mode {mode:o})")
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, path: str) -> bytes:
        return Path(path).read_bytes()

    def facts(self) -> HostFacts:
        return collect_posix_facts(self)

    def which(self, program: str) -> str | None:
        """Where ``program`` is on this machine's PATH."""
        return shutil.which(program)


def collect_posix_facts(target: Target) -> HostFacts:
    """Run the facts script on ``target`` and parse it."""
    result = target.run(["sh", "-c", facts_script()], timeout=30)
    return parse_facts(result.stdout)
