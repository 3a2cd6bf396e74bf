"""A POSIX host reached over SSH: `SshTarget`. Its argv become one command line
quoted with `shlex.join` only, handed to a `Conduit` (an `SshConduit` unless
given another, as a dry run does); background processes are `SshProcess`es in
a working directory of its own, removed at `teardown`; both noted in the lab's
record where the host has one.

A host whose spec says ``sudo`` is logged in to as a user with passwordless
sudo: every command line goes through ``sudo -n --`` (so it runs as root, as
with a root login, and never waits for a password), files are written and read
through it too (their content on stdin and stdout, never on a command line), and
sudo asking for a password is one error naming the host (`sudo_refused`)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from harness.errors import InfraError, UsageError
from harness.parsers.facts import HostFacts
from harness.targets.base import CommandResult, HostKind, Process, Target
from harness.targets.conduit import Conduit
from harness.targets.ledger import Forget, ResourceKind, nothing
from harness.targets.ssh.client import RemoteFileNotFoundError, SshConduit
from harness.targets.ssh.process import SshProcess
from harness.targets.ssh.scripts import GET, MKTEMP, PUT, START
from harness.targets.ssh.spec import SshSpec

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def sudo_refused(result: CommandResult) -> bool:
    """Did ``sudo -n`` refuse the command because it wants a password (or a terminal
    to ask for one)? sudo then exits 1 and says so on stderr."""
    return result.status == 1 and any(
        line.startswith("sudo: ") and ("password" in line or "terminal is required" in line)
        for line in result.stderr.splitlines()
    )


class SshTarget(Target):
    """A POSIX host (Linux, BSD...) reached over SSH. Its account's login shell
    must be a POSIX shell: command lines are quoted for sh."""

    kind = HostKind.SSH

    def __init__(self, name: str, spec: SshSpec, conduit: Conduit | None = None) -> None:
        super().__init__(name)
        self.spec = spec
        self.conduit: Conduit = conduit if conduit is not None else SshConduit(spec, name=name)
        self._dir: str | None = None
        self._forget_dir: Forget = nothing
        self._processes: list[SshProcess] = []

    @classmethod
    def from_url(cls, name: str, url: str, **options: Any) -> SshTarget:
        """``SshTarget.from_url("peer", "ssh://root@10.0.0.2", key_file="~/.ssh/lab")``."""
        return cls(name, SshSpec.parse(url, **options))

    # -- commands ------------------------------------------------------------
    def with_env(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
        """``argv``, preceded by ``env K=V ...`` when there is an environment."""
        if not argv:
            raise UsageError(f"{self.name}: empty command")
        if not env:
            return list(argv)
        for key in env:
            if not _ENV_NAME.match(key):
                raise UsageError(f"{self.name}: invalid environment variable name {key!r}")
        return ["env", *(f"{k}={v}" for k, v in env.items()), *argv]

    def command_line(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
        """The line sent to the host for ``argv`` (through ``sudo -n --`` on a sudo host)."""
        line = self.with_env(argv, env)
        return shlex.join(["sudo", "-n", "--", *line] if self.spec.sudo else line)

    def describe(self, argv: Sequence[str]) -> str:
        return self.command_line(argv)

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        result = self.conduit.exec(self.command_line(argv, env), input=input, timeout=timeout)
        if self.spec.sudo and sudo_refused(result):
            raise InfraError(self.sudo_error())
        return replace(result, argv=tuple(argv))

    # -- sudo ------------------------------------------------------------------
    def sudo_error(self) -> str:
        user = self.spec.user
        return (
            f"{self.name} ({user}@{self.spec.address}): sudo needs a password: let {user} run sudo "
            "without one (NOPASSWD), or log in as root"
        )

    def sudo_probe(self) -> CommandResult:
        """``sudo -n true``, sent as it is (0: sudo works without a password)."""
        return self.conduit.exec("sudo -n true", timeout=30)

    def start(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Process:
        directory = self._workdir()
        name = f"p{len(self._processes)}"
        wrapped = ["sh", "-c", START, "wgh-start", directory, name]
        result = self.run([*wrapped, *self.with_env(argv, env)])
        fields = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
        if not result.ok or not fields.get("pid", "").isdigit() or not fields.get("waiter", "").isdigit():
            reason = (
                result.stderr.strip().splitlines()[-1] if result.stderr.strip() else result.stdout.strip()
            )
            raise InfraError(f"{self.name}: cannot start `{' '.join(argv)}`: {reason or 'no PID printed'}")
        process = SshProcess(self, argv, directory, name, int(fields["pid"]), int(fields["waiter"]))
        started = fields.get("started", "").strip()
        process.on_end = self.noted(
            ResourceKind.PROCESS, argv[0].rsplit("/", 1)[-1], pid=process.pid, started=started or None
        )
        self._processes.append(process)
        return process

    def _workdir(self) -> str:
        if self._dir is None:
            result = self.run(["sh", "-c", MKTEMP])
            directory = result.stdout.strip()
            if not result.ok or not directory.startswith("/"):
                raise InfraError(f"{self.name}: cannot create a temporary directory: {result.stderr.strip()}")
            self._dir = directory
            self._forget_dir = self.noted(ResourceKind.FOLDER, "workdir", path=directory)
        return self._dir

    # -- files ---------------------------------------------------------------
    def put(self, data: bytes, path: str, mode: int = 0o600) -> None:
        if not self.spec.sudo:
            self.conduit.put(data, path, mode)
            return
        # As SFTP would: the folder made, the file created with its mode before the data
        # arrives (on stdin, so no secret is ever on a command line).
        result = self.run(["sh", "-c", PUT, "wgh-put", path, f"{mode:o}"], input=data, timeout=120)
        if not result.ok:
            raise InfraError(f"{self.name}: cannot write {path} through sudo: {result.stderr.strip()}")

    def get(self, path: str) -> bytes:
        if not self.spec.sudo:
            return self.conduit.get(path)
        result = self.run(["sh", "-c", GET, "wgh-get", path], timeout=120)
        if result.status == 2:
            raise RemoteFileNotFoundError(f"{self.name}: {path}: no such file")
        if not result.ok:
            raise InfraError(f"{self.name}: cannot read {path} through sudo: {result.stderr.strip()}")
        return result.stdout_bytes

    def read_optional(self, path: str) -> bytes:
        """The file's content, or b'' when it does not exist."""
        try:
            return self.get(path)
        except RemoteFileNotFoundError:
            return b""

    # -- life cycle ----------------------------------------------------------
    def setup(self) -> None:
        connect = getattr(self.conduit, "connect", None)
        if connect is not None:
            connect()
        if self.spec.sudo and not self.sudo_probe().ok:
            raise InfraError(self.sudo_error())

    def teardown(self) -> None:
        errors: list[BaseException] = []
        try:
            for process in self._processes:
                try:
                    if process.poll() is None:
                        process.kill(grace=2.0)
                except InfraError as exc:
                    errors.append(exc)
            self._processes = []
            if self._dir is not None:
                try:
                    self.run(["rm", "-rf", "--", self._dir], timeout=30)
                    self._dir = None
                    self._forget_dir()
                except InfraError as exc:
                    errors.append(exc)
        finally:
            self.conduit.close()
        if errors:
            raise errors[0]

    # -- facts ---------------------------------------------------------------
    def facts(self) -> HostFacts:
        from harness.targets.local import collect_posix_facts

        facts = collect_posix_facts(self)
        return replace(facts, extra={**facts.extra, "transport": "ssh", "address": self.spec.host})
