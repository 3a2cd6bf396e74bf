"""Labs whose harness is gone, found by their records and removed: ``wgharness clean``,
and the look a run takes before it starts (`before_run`).

Rules of this module:
* A lab's record (`harness.targets.ledger`) is stale when its owner has ended, or
  its PID now belongs to a newer process (the start times differ). The lab of a
  live owner is never touched, nor is anything no record names.
* What a record names is removed only if it is still there as named: a process
  only with the PID *and* start time noted; a namespace, link or interface by
  its name (which carries the lab's id). The processes inside a namespace the
  record names run in the lab's namespace: they are the lab's, stopped before it
  is deleted.
* Newest first, as the lab's own teardown goes. A remote host (ssh, windows) is
  reached again as the record says; what is in a guest (vm) goes with its QEMU.
* The record goes once all it names is gone; what could not be removed stays in
  it, each with the reason said.
* One cleaner at a time on a machine (an flock on ``LABS_DIR/.clean.lock``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from harness.codec import decode
from harness.errors import HarnessError, InfraError
from harness.procs import alive, process_start
from harness.progress import Progress
from harness.targets.base import HostKind, Target, wait_until
from harness.targets.ledger import (
    HERE,
    LABS_DIR,
    HostEntry,
    LabRecord,
    Resource,
    ResourceKind,
    read_record,
    record_paths,
    write_record,
)
from harness.targets.local import LocalTarget

STOP_GRACE = 3.0
"""Seconds a process gets after SIGTERM before SIGKILL."""
CLEAN_STALE_VARIABLE = "WGH_CLEAN_STALE"
"""Set to 1, every run removes stale labs before it starts, as ``--clean-stale`` does."""


class RemovalOutcome(StrEnum):
    REMOVED = "removed"
    GONE = "gone"
    """Not there any more (it ended, or went with what held it)."""
    WITH_GUEST = "with guest"
    """In a guest: it goes with the guest's QEMU."""
    WOULD_REMOVE = "would remove"
    FAILED = "failed"


@dataclass(frozen=True)
class Removal:
    resource: Resource
    outcome: RemovalOutcome
    detail: str = ""

    def line(self) -> str:
        return f"  {self.outcome:<12} {self.resource}" + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class StaleLab:
    path: Path
    record: LabRecord


@dataclass(frozen=True)
class Labs:
    """The records on this machine, sorted by whether their owner still runs."""

    stale: tuple[StaleLab, ...]
    live: tuple[LabRecord, ...]
    unreadable: tuple[Path, ...]


def owner_alive(record: LabRecord, start_of: Callable[[int], int | None] = process_start) -> bool:
    return alive(record.pid, record.pid_start, start_of)


def find_labs(directory: Path = LABS_DIR, start_of: Callable[[int], int | None] = process_start) -> Labs:
    stale, live, unreadable = [], [], []
    for path in record_paths(directory):
        record = read_record(path)
        if record is None:
            if path.exists():
                unreadable.append(path)
        elif owner_alive(record, start_of):
            live.append(record)
        else:
            stale.append(StaleLab(path, record))
    return Labs(tuple(stale), tuple(live), tuple(unreadable))


def select(labs: Sequence[StaleLab], ids: Sequence[str]) -> list[StaleLab]:
    """The labs whose id begins with one of ``ids`` (all of them when none is given)."""
    return [lab for lab in labs if not ids or lab.record.lab_id.startswith(tuple(ids))]


# -- removing --------------------------------------------------------------------
def _stop_pid(pid: int, start: int | None) -> bool:
    """Stop local process ``pid`` if it is the one that started at ``start``: SIGTERM, then
    SIGKILL; True if it was there."""
    if not alive(pid, start):
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if wait_until(lambda: not alive(pid, start), STOP_GRACE):
            return True
    raise InfraError(f"pid {pid} still runs after SIGKILL")


def _started(resource: Resource) -> int | None:
    try:
        return int(resource.started) if resource.started is not None else None
    except ValueError:
        return None


def _safe_folder(path: str | None) -> str:
    """``path`` if it is a folder a lab makes (absolute, its name begins with wgh); else an error."""
    if path is None or not path.startswith("/") or not Path(path).name.startswith("wgh"):
        raise InfraError(f"{path!r} is not a folder a lab makes: left as it is")
    return path


class Cleaner:
    """Removes what one stale lab's record names (``dry_run``: only says what it would)."""

    def __init__(self, lab: StaleLab, *, dry_run: bool = False) -> None:
        self.lab = lab
        self.record = lab.record
        self.dry_run = dry_run
        self._root = LocalTarget("this machine")
        self._remote: dict[str, Target | InfraError] = {}

    def run(self) -> list[Removal]:
        """Every resource, newest first; the record rewritten with what is left (or removed)."""
        removals = [self._one(r) for r in reversed(self.record.resources)]
        for target in self._remote.values():
            if isinstance(target, Target):
                with contextlib.suppress(Exception):
                    target.conduit.close()  # type: ignore[attr-defined]
        if not self.dry_run:
            left = tuple(r.resource for r in reversed(removals) if r.outcome is RemovalOutcome.FAILED)
            if left:
                write_record(self.lab.path, replace(self.record, resources=left))
            else:
                self.lab.path.unlink(missing_ok=True)
        return removals

    def _one(self, resource: Resource) -> Removal:
        try:
            entry = self._entry(resource)
            if entry is not None and entry.kind is HostKind.VM:
                return Removal(resource, RemovalOutcome.WITH_GUEST)
            there = self._remove(resource, entry)
        except (HarnessError, OSError) as exc:
            return Removal(resource, RemovalOutcome.FAILED, str(exc))
        if not there:
            return Removal(resource, RemovalOutcome.GONE)
        return Removal(resource, RemovalOutcome.WOULD_REMOVE if self.dry_run else RemovalOutcome.REMOVED)

    def _entry(self, resource: Resource) -> HostEntry | None:
        if resource.host == HERE:
            return None
        entry = self.record.hosts.get(resource.host)
        if entry is None:
            raise InfraError(f"host {resource.host} is not in the record")
        return entry

    def _remove(self, r: Resource, entry: HostEntry | None) -> bool:
        """Remove ``r`` (unless a dry run); whether it was there."""
        remote = entry is not None and entry.kind.remote
        if remote:
            assert entry is not None
            return self._remove_remote(r, self._target(r.host, entry))
        namespace = r.namespace or (entry.namespace if entry is not None else None)
        kind = r.kind
        if kind in (ResourceKind.PROCESS, ResourceKind.QEMU):
            assert r.pid is not None
            if self.dry_run:
                return alive(r.pid, _started(r))
            return _stop_pid(r.pid, _started(r))
        if kind is ResourceKind.NAMESPACE:
            return self._namespace(r.name)
        if kind in (ResourceKind.LINK, ResourceKind.TAP, ResourceKind.INTERFACE):
            return self._device(r.name, namespace, delete=True)
        if kind is ResourceKind.QDISC:
            return self._qdisc(self._in(namespace), r.name)
        if kind is ResourceKind.SOCKET:
            return self._path(r.path, Path.unlink)
        if kind is ResourceKind.FOLDER:
            return self._path(_safe_folder(r.path), shutil.rmtree)
        raise InfraError(f"a {kind} on this machine is not something a lab makes")

    # -- this machine ------------------------------------------------------------
    def _in(self, namespace: str | None) -> Target:
        """Commands inside ``namespace`` (this machine's own without one)."""
        if namespace is None:
            return self._root
        from harness.targets.netns import NetnsTarget

        return NetnsTarget("namespace", namespace)

    def _namespace(self, name: str) -> bool:
        if not (Path("/run/netns") / name).exists():
            return False
        if self.dry_run:
            return True
        pids = self._root.run(["ip", "netns", "pids", name]).stdout.split()
        for pid in pids:
            if pid.isdigit():
                _stop_pid(int(pid), process_start(int(pid)))
        self._root.check(["ip", "netns", "del", name])
        return True

    def _device(self, name: str, namespace: str | None, *, delete: bool) -> bool:
        if namespace is not None and not (Path("/run/netns") / namespace).exists():
            return False  # it went with its namespace
        target = self._in(namespace)
        if not target.run(["ip", "link", "show", "dev", name]).ok:
            return False
        if delete and not self.dry_run:
            target.check(["ip", "link", "del", "dev", name])
        return True

    def _qdisc(self, target: Target, device: str) -> bool:
        namespace = getattr(target, "namespace", None)
        if namespace is not None and not (Path("/run/netns") / namespace).exists():
            return False
        shown = target.run(["tc", "qdisc", "show", "dev", device, "root"])
        if not shown.ok or not any(q in shown.stdout for q in ("tbf", "netem")):
            return False
        if not self.dry_run:
            target.check(["tc", "qdisc", "del", "dev", device, "root"])
        return True

    def _path(self, path: str | None, remove: Callable[[Path], object]) -> bool:
        if path is None or not os.path.lexists(path):
            return False
        if not self.dry_run:
            remove(Path(path))
        return True

    # -- remote hosts ------------------------------------------------------------
    def _target(self, name: str, entry: HostEntry) -> Target:
        known = self._remote.get(name)
        if isinstance(known, InfraError):
            raise known
        if known is not None:
            return known
        try:
            target = _connect(name, entry)
        except HarnessError as exc:
            error = InfraError(f"cannot reach {name}: {exc}")
            self._remote[name] = error
            raise error from None
        self._remote[name] = target
        return target

    def _remove_remote(self, r: Resource, target: Target) -> bool:
        kind = r.kind
        if kind is ResourceKind.PROCESS:
            return self._remote_process(r, target)
        if kind is ResourceKind.TASK:
            return self._task(r, target)
        if kind is ResourceKind.FIREWALL_RULE:
            if not self.dry_run:
                target.remove_rule(r.name)
            return True
        if kind is ResourceKind.INTERFACE:
            if not target.run(["ip", "link", "show", "dev", r.name]).ok:
                return False
            if not self.dry_run:
                target.check(["ip", "link", "del", "dev", r.name])
            return True
        if kind is ResourceKind.QDISC:
            return self._qdisc(target, r.name)
        if kind in (ResourceKind.SOCKET, ResourceKind.FOLDER):
            path = r.path if kind is ResourceKind.SOCKET else _safe_folder(r.path)
            if path is None or not target.run(["test", "-e", path]).ok:
                return False
            if not self.dry_run:
                target.check(["rm", "-rf", "--", path])
            return True
        raise InfraError(f"a {kind} on a remote host is not something a lab makes")

    def _remote_process(self, r: Resource, target: Target) -> bool:
        from harness.targets.ssh.scripts import SIGNAL, STARTED

        assert r.pid is not None
        if r.started is None:
            raise InfraError("its start time is unknown, so it cannot be told from a newer process")

        def there() -> bool:
            now = target.run(["sh", "-c", STARTED, "wgh-started", str(r.pid)]).stdout.strip()
            return now == r.started

        if not there():
            return False
        if self.dry_run:
            return True
        for name in ("TERM", "KILL"):
            target.run(["sh", "-c", SIGNAL, "wgh-signal", name, str(r.pid)])
            if wait_until(lambda: not there(), STOP_GRACE, interval=0.3):
                return True
        raise InfraError(f"pid {r.pid} still runs after SIGKILL")

    def _task(self, r: Resource, target: Target) -> bool:
        from harness.targets.windows.powershell import kill_task_script

        if r.pid is None or r.path is None:
            raise InfraError("the record names no program or folder for it")
        if not self.dry_run:
            target.run_ps(kill_task_script(r.name, r.path, r.pid), timeout=60)  # type: ignore[attr-defined]
        return True


def _connect(name: str, entry: HostEntry) -> Target:
    """The host ``entry`` names, connected (no ledger: nothing it does is noted)."""
    from harness.targets.ssh.client import SshConduit
    from harness.targets.ssh.spec import SshSpec

    if entry.ssh is None:
        raise InfraError(f"the record does not say how to reach {name}")
    spec = decode(entry.ssh, SshSpec)
    if entry.kind is HostKind.WINDOWS:
        from harness.targets.windows.target import WindowsTarget

        return WindowsTarget(name, SshConduit(spec, name=name))
    from harness.targets.ssh.target import SshTarget

    target = SshTarget(name, spec)
    target.setup()
    return target


@contextlib.contextmanager
def _one_cleaner(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / ".clean.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Cleaned:
    lab: StaleLab
    removals: tuple[Removal, ...]

    @property
    def failed(self) -> list[Removal]:
        return [r for r in self.removals if r.outcome is RemovalOutcome.FAILED]


def clean(
    ids: Sequence[str] = (), *, dry_run: bool = False, directory: Path = LABS_DIR
) -> tuple[list[Cleaned], Labs]:
    """Remove (``dry_run``: only look at) the stale labs whose ids begin with one of
    ``ids`` (all without any); each with what happened to every resource, and the labs seen."""
    if dry_run:
        labs = find_labs(directory)
        return [Cleaned(s, tuple(Cleaner(s, dry_run=True).run())) for s in select(labs.stale, ids)], labs
    with _one_cleaner(directory):
        labs = find_labs(directory)  # again under the lock: another cleaner may have been first
        return [Cleaned(s, tuple(Cleaner(s).run())) for s in select(labs.stale, ids)], labs


def report(cleaned: Sequence[Cleaned], labs: Labs, *, dry_run: bool = False) -> list[str]:
    """What `clean` did, as lines for the terminal."""
    lines = []
    for done in cleaned:
        record = done.lab.record
        run = f"; its run {record.run_id} reads as aborted" if record.run_id else ""
        lines.append(f"{record.describe()}: its harness is gone{run}")
        lines += [r.line() for r in done.removals]
    for path in labs.unreadable:
        lines.append(f"{path}: not a lab record this version reads: left as it is")
    counts: dict[RemovalOutcome, int] = {}
    for done in cleaned:
        for r in done.removals:
            counts[r.outcome] = counts.get(r.outcome, 0) + 1
    if not cleaned:
        lines.append("no stale labs on this machine")
    else:
        verb = "would clean" if dry_run else "cleaned"
        parts = ", ".join(f"{n} {outcome}" for outcome, n in counts.items()) or "nothing recorded"
        lines.append(f"{verb} {len(cleaned)} stale lab(s): {parts}")
    if labs.live:
        lines.append(f"{len(labs.live)} lab(s) in use, left alone: "
                     + ", ".join(f"[{r.lab_id}] pid {r.pid}" for r in labs.live))  # fmt: skip
    return lines


def before_run(progress: Progress, clean_them: bool = False, directory: Path = LABS_DIR) -> None:
    """The look a run takes before it starts: one line if stale labs are on this machine;
    with ``clean_them`` (``--clean-stale``, or WGH_CLEAN_STALE=1) they are removed first."""
    clean_them = clean_them or os.environ.get(CLEAN_STALE_VARIABLE) == "1"
    try:
        stale = find_labs(directory).stale
    except OSError:
        return
    if not stale:
        return
    names = ", ".join(f"[{s.record.lab_id}]" + (f" of run {s.record.run_id}" if s.record.run_id else "")
                      for s in stale)  # fmt: skip
    if not clean_them:
        progress.warn(
            f"{len(stale)} stale lab(s) on this machine, left by a harness that was killed ({names}): "
            "`wgharness clean` removes them (or --clean-stale)"
        )
        return
    cleaned, _ = clean([s.record.lab_id for s in stale], directory=directory)
    failed = sum(len(c.failed) for c in cleaned)
    tail = f"; {failed} thing(s) could not be removed: see `wgharness clean --dry-run`" if failed else ""
    progress.step(f"removed {len(cleaned)} stale lab(s) left by a harness that was killed ({names}){tail}")
