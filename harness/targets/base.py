"""What every host looks like to the rest of the harness.

A target runs a command (`run`), starts a background process (`start`), moves
files (`put`/`get`) and reports facts about itself (`facts`). Drivers and
suites only ever talk to hosts through this interface, so the same driver
works in a network namespace, over SSH or in a VM.

Waiting is done one way: for a started process to get ready,
`Process.wait_ready` (a `NotReady` error in one format when it ends first or
the time runs out); for anything else, `wait_until`.
"""

from __future__ import annotations

import abc
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

from harness.errors import CommandError, NotReady
from harness.parsers.facts import HostFacts, link_script, parse_link

if TYPE_CHECKING:
    from harness.targets.dry import DryRunLog
    from harness.targets.ledger import Forget, Ledger, ResourceKind

T = TypeVar("T")


def wait_until(check: Callable[[], T | None], timeout: float, interval: float = 0.05) -> T | None:
    """Ask ``check()`` every ``interval`` seconds until it returns something true, and
    return that; None once ``timeout`` seconds have passed (it is asked at least once,
    and once more at the end)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(interval, left))


class HostKind(StrEnum):
    """The kinds of host `make` knows, as lab files name them (a host's ``target``)."""

    NETNS = "netns"
    """A network namespace on this machine."""
    LOCAL = "local"
    """This machine itself."""
    SSH = "ssh"
    """A POSIX host reached over SSH."""
    WINDOWS = "windows"
    """A Windows host reached over SSH (OpenSSH for Windows)."""
    VM = "vm"
    """A QEMU guest the harness boots."""

    @property
    def remote(self) -> bool:
        """Reached over SSH at an address the lab file gives (``ssh``, ``windows``)."""
        return self in (HostKind.SSH, HostKind.WINDOWS)


@dataclass(frozen=True)
class CommandResult:
    """The outcome of one command run on a host."""

    argv: tuple[str, ...]
    """The command as the caller gave it (before any wrapping by the target)."""
    status: int
    """Exit status; negative when killed by a signal (as subprocess reports it)."""
    stdout_bytes: bytes
    stderr_bytes: bytes

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return self.stderr_bytes.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        return self.status == 0


class Process(abc.ABC):
    """A background process started on a host."""

    argv: tuple[str, ...]
    host: str = ""
    """The name of the host it runs on, as errors name it (set by the target that started it)."""

    @property
    @abc.abstractmethod
    def pid(self) -> int:
        """The PID of the started program on its host."""

    @abc.abstractmethod
    def poll(self) -> int | None:
        """Exit status if it has ended, else None."""

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> int:
        """Wait for the end; raise ``TimeoutError`` after ``timeout`` seconds."""

    @abc.abstractmethod
    def kill(self, grace: float = 3.0) -> int | None:
        """Stop it: SIGTERM, then SIGKILL after ``grace`` seconds. Safe to call twice."""

    @abc.abstractmethod
    def output(self) -> tuple[bytes, bytes]:
        """Stdout and stderr captured so far."""

    def poll_until_done(self, timeout: float | None, *, interval: float = 0.02, most: float = 0.5) -> int:
        """`wait` for a process that can only be polled: ask `poll` with a pause that
        doubles from ``interval`` up to ``most`` seconds; ``TimeoutError`` after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (status := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"`{shlex.join(self.argv)}` still running after {timeout}s")
            time.sleep(interval if deadline is None else min(interval, max(0.0, deadline - time.monotonic())))
            interval = min(interval * 2, most)
        return status

    def wait_ready(
        self, check: Callable[[], T | None], timeout: float, what: str, *, interval: float = 0.02
    ) -> T:
        """Ask ``check()`` every ``interval`` seconds until it returns something true, and
        return that. `NotReady` if the process ends first or ``timeout`` seconds pass
        (``what`` names what was awaited: "tcpdump on eth0 to listen"). The process is
        left as it is: stopping it is the caller's part."""
        started = time.monotonic()

        def ready() -> T | None:
            got = check()
            if got:
                return got
            status = self.poll()
            if status is not None:
                raise self._not_ready(what, timeout, status, started)
            return None

        got = wait_until(ready, timeout, interval)
        if got is None:
            raise self._not_ready(what, timeout, None, started)
        return got

    def _not_ready(self, what: str, timeout: float, status: int | None, started: float) -> NotReady:
        out, err = self.output()
        command = shlex.join(self.argv)
        command = command if len(command) <= 100 else command[:99] + "…"
        return NotReady(
            self.host,
            what,
            timeout,
            f"`{command}` (pid {self.pid})",
            status,
            time.monotonic() - started,
            err.decode("utf-8", "replace"),
            out.decode("utf-8", "replace"),
        )


class Target(abc.ABC):
    """A host of the lab."""

    dry: DryRunLog | None = None
    """Set on a host of a dry run (`harness.targets.make`): its commands are written to
    this log instead of being run, and answered with canned results."""

    ledger: Ledger | None = None
    """Set on a lab's host (`harness.run.orchestrator.LabInstance`): what the host creates
    is noted in the lab's record (`harness.targets.ledger`), so a killed run's lab can be
    found and removed later."""

    def __init__(self, name: str) -> None:
        self.name = name

    def noted(self, kind: ResourceKind, name: str, **fields: object) -> Forget:
        """Note ``kind`` ``name`` on this host in the lab's record (before creating it, where its
        name is known beforehand); the function that forgets it once removed. No-op without a ledger."""
        from harness.targets.ledger import Resource, note

        return note(self.ledger, Resource(kind, self.name, name, **fields))  # type: ignore[arg-type]

    # -- commands --------------------------------------------------------
    @abc.abstractmethod
    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Run ``argv`` to completion. Never raises for a non-zero exit status."""

    def check(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Like `run`, but a non-zero exit status raises `CommandError`."""
        result = self.run(argv, input=input, timeout=timeout, env=env)
        if not result.ok:
            raise CommandError(self.name, list(argv), result.status, result.stderr)
        return result

    @abc.abstractmethod
    def start(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Process:
        """Start ``argv`` in the background and return at once."""

    # -- files -----------------------------------------------------------
    @abc.abstractmethod
    def put(self, data: bytes, path: str, mode: int = 0o600) -> None:
        """Write ``data`` to ``path`` on the host."""

    @abc.abstractmethod
    def get(self, path: str) -> bytes:
        """Read ``path`` from the host."""

    # -- life cycle ------------------------------------------------------
    def setup(self) -> None:  # noqa: B027 (an optional hook)
        """Create whatever the host needs before use (namespace, VM...)."""

    def teardown(self) -> None:  # noqa: B027 (an optional hook)
        """Remove everything `setup` created. Must be safe to call after a failed setup."""

    # -- facts -----------------------------------------------------------
    @abc.abstractmethod
    def facts(self) -> HostFacts:
        """Kernel, OS, CPU, cores, memory and tool versions."""

    def link_facts(self, address: str) -> tuple[str, dict[str, str]]:
        """The interface a packet to ``address`` leaves this host by, and its offloads
        (`HostFacts.link_interface`, `HostFacts.link_offloads`); ('', {}) when the host
        cannot tell. Sends nothing: a route lookup and ``ethtool -k``."""
        result = self.run(["sh", "-c", link_script(address)], timeout=30)
        return parse_link(result.stdout) if result.ok else ("", {})

    def describe(self, argv: Sequence[str]) -> str:
        """The command as it would be typed on this host (for logs and dry runs)."""
        return shlex.join(argv)

    # -- what differs between operating systems ------------------------------
    tools: dict[str, str] = {}  # noqa: RUF012 (replaced per instance, never mutated)
    """Programs by tool name, where a lab gave a path (e.g. ``iperf3``)."""

    def tool(self, name: str) -> str:
        """The program to run for a tool such as ``iperf3`` on this host."""
        return self.tools.get(name, name)

    def ping_argv(self, address: str, count: int = 1, interval: float = 0.2, wait: float = 1.0) -> list[str]:
        """Ping ``address`` ``count`` times; exit status 0 if answered."""
        return ["ping", "-c", str(count), "-i", f"{interval:g}", "-W", f"{wait:g}", address]

    def is_listening(self, port: int, protocol: str = "tcp") -> bool:
        """Does something listen on ``port`` (asks the host; sends nothing)?"""
        flag = "-Hltn" if protocol == "tcp" else "-Hlun"
        result = self.run(["ss", flag, f"sport = :{port}"], timeout=10)
        return result.ok and bool(result.stdout.strip())

    def allow_inbound(self, port: int, protocol: str = "TCP", program: str = "iperf3") -> str:
        """Open the host's firewall for ``port``; a handle for `remove_rule` ('' if nothing to undo)."""
        return ""

    def remove_rule(self, name: str) -> None:  # noqa: B027 (nothing to undo by default)
        """Undo `allow_inbound`."""
