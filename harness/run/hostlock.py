"""One benchmark per machine at a time, and an honest record when there were two.

Rules of this module:
* Every host a lab has either runs on this machine (netns and local hosts, the
  guests the harness boots) or is driven from it (SSH and Windows hosts): all of
  them share this machine's CPU for their measurements, so a run's measured
  phase (from when its lab is up until before it comes down) holds ONE lock per
  machine, ``/run/wgharness/locks/machine.lock``, taken with flock(2). The kernel
  drops it when the holder's process ends, even on SIGKILL: there is no stale
  lock to clear. The holder writes who it is into the file (a `Measuring`: run
  id, lab, PID), so a waiter can say whom it waits for. A remote machine is not
  locked: two controllers measuring the same SSH host at once are not seen.
* Whether it locks or not (``--no-lock``), a run in its measured phase is
  registered in ``/run/wgharness/active/RUN_ID.json`` (the same `Measuring`, with
  its process's start time), removed when the phase ends. An entry whose process
  is gone, or whose PID now belongs to a newer process, is ignored and removed.
* A run looks for the others when it starts measuring, every second while it
  does, and when it stops; what it saw is its `Overlap`, stored with the run.
  Runs waiting for the lock, coming up or tearing down are not measuring and are
  not counted.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from harness.codec import from_json, to_json
from harness.errors import InfraError
from harness.procs import alive, process_start
from harness.progress import Progress
from harness.results.records import OtherRun, Overlap
from harness.targets.ledger import STATE_DIR

RUN_DIR = STATE_DIR
"""Where the lock and the registry of measuring runs live (a tmpfs: empty after a reboot), as
the labs' records do (`harness.targets.ledger`)."""
LOCK_NAME = "machine"
"""This machine's lock: ``RUN_DIR/locks/machine.lock``."""
REPORT_EVERY = 30.0
"""Seconds between the lines of a run waiting for the lock."""
POLL_SECONDS = 1.0
"""How often a measuring run looks for others."""


@dataclass(frozen=True)
class LockPolicy:
    """Whether and how a run takes this machine's lock for its measured phase."""

    enabled: bool = True
    """False: ``--no-lock``, measure without waiting (still registered and watched)."""
    timeout: float | None = None
    """Seconds to wait for the lock before giving up with an infrastructure error; None: no limit."""
    root: Path = RUN_DIR
    """The folder of the lock and the registry (tests: a temporary one)."""


@dataclass(frozen=True)
class Measuring:
    """A run in its measured phase: the lock file's content, and its registry entry."""

    run_id: str
    lab: str
    pid: int
    pid_start: int | None
    """The process's start time in clock ticks since boot (``/proc/PID/stat``), so a PID
    reused by another process is not taken for the run; None: unknown."""
    since: str
    """When it began measuring (ISO 8601, UTC)."""

    def __str__(self) -> str:
        return f"run {self.run_id} (lab {self.lab}, pid {self.pid})"

    @property
    def other_run(self) -> OtherRun:
        return OtherRun(self.run_id, self.lab, self.pid)


def parse_measuring(text: str) -> Measuring | None:
    """A lock file's or registry entry's content; None if empty or not one (being written)."""
    try:
        return from_json(text, Measuring)
    except ValueError:
        return None


def is_live(entry: Measuring, start_of: Callable[[int], int | None] = process_start) -> bool:
    """Whether the process that wrote ``entry`` still runs: its PID exists and, where the
    entry knows it, started when the entry says (not a reused PID)."""
    return alive(entry.pid, entry.pid_start, start_of)


def this_process(run_id: str, lab: str) -> Measuring:
    pid = os.getpid()
    return Measuring(run_id, lab, pid, process_start(pid), datetime.now(UTC).isoformat(timespec="seconds"))


class LockTimeout(InfraError):
    """This machine's lock was still held when the wait's timeout ran out."""


def _infra(what: Path, exc: OSError) -> InfraError:
    return InfraError(f"{what}: {exc.strerror or exc}")


class MachineLock:
    """This machine's benchmark lock: an exclusive flock(2) on a file that names its holder."""

    def __init__(self, root: Path = RUN_DIR, name: str = LOCK_NAME) -> None:
        self.path = root / "locks" / f"{name}.lock"
        self._fd: int | None = None
        self.held = False

    def _open(self) -> int:
        if self._fd is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited (PEP 446)
            except OSError as exc:
                raise _infra(self.path, exc) from None
        return self._fd

    def try_acquire(self, me: Measuring) -> bool:
        """Take the lock if it is free, and write ``me`` into it; False if another holds it."""
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as exc:
            raise _infra(self.path, exc) from None
        self.held = True
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (to_json(me) + "\n").encode(), 0)
        except OSError as exc:
            raise _infra(self.path, exc) from None
        return True

    def holder(self) -> Measuring | None:
        """Who holds the lock, as its file says; None if that cannot be told (the holder
        has not written itself yet, or the file names a process that has ended)."""
        try:
            entry = parse_measuring(self.path.read_text())
        except OSError:
            return None
        return entry if entry is not None and is_live(entry) else None

    def acquire(
        self, me: Measuring, progress: Progress, timeout: float | None = None, *, poll: float = 0.5
    ) -> float:
        """Wait until the lock is ours; the seconds waited. Says whom it waits for, then
        again every `REPORT_EVERY` seconds. Ctrl-C (and SIGTERM, where the caller makes it
        one) ends the wait; after ``timeout`` seconds it is a `LockTimeout`."""
        start = time.monotonic()
        told: tuple[str, float] | None = None  # (whom, when) the last line said
        try:
            while not self.try_acquire(me):
                waited = time.monotonic() - start
                holder = self.holder()
                who = str(holder) if holder else "another run"
                if timeout is not None and waited >= timeout:
                    raise LockTimeout(
                        f"gave up after {timeout:g} s waiting for {who} to finish measuring on this "
                        f"machine (--lock-timeout; lock {self.path})"
                    )
                if told is None:
                    progress.step(
                        f"waiting for {who} to finish measuring on this machine "
                        f"(lock {self.path}; --no-lock measures without waiting)"
                    )
                    told = (who, waited)
                elif told[0] != who or waited - told[1] >= REPORT_EVERY:
                    progress.step(
                        f"still waiting for {who} to finish measuring on this machine ({waited:.0f} s)"
                    )
                    told = (who, waited)
                time.sleep(poll)
        except BaseException:
            self.release()
            raise
        waited = time.monotonic() - start
        if told is not None:
            progress.step(f"took this machine's lock after waiting {waited:.0f} s")
        return waited

    def release(self) -> None:
        """Let the lock go (emptying the file first, so it names no one); idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            if self.held:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        self.held = False
        os.close(fd)


class Registry:
    """The runs measuring on this machine now, one file each."""

    def __init__(self, root: Path = RUN_DIR) -> None:
        self.dir = root / "active"

    def _entry(self, run_id: str) -> Path:
        return self.dir / f"{run_id}.json"

    def add(self, me: Measuring) -> None:
        path = self._entry(me.run_id)
        tmp = path.with_name(path.name + ".tmp")  # written whole, then renamed: never read half-written
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp.write_text(to_json(me) + "\n")
            tmp.replace(path)
        except OSError as exc:
            raise _infra(path, exc) from None

    def remove(self, run_id: str) -> None:
        with contextlib.suppress(OSError):
            self._entry(run_id).unlink(missing_ok=True)

    def others(self, run_id: str, start_of: Callable[[int], int | None] = process_start) -> list[Measuring]:
        """The live entries of runs other than ``run_id``; entries of ended processes are removed."""
        found = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                entry = parse_measuring(path.read_text())
            except OSError:
                continue  # removed meanwhile
            if entry is None or entry.run_id == run_id:
                continue
            if not is_live(entry, start_of):
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            found.append(entry)
        return found


class MeasuredPhase:
    """A run's measured phase: `begin` takes the lock (unless the policy opts out),
    registers the run and watches for others; `end` undoes all of it and says what it saw."""

    def __init__(self, policy: LockPolicy, run_id: str, lab: str, progress: Progress) -> None:
        self.policy = policy
        self.run_id = run_id
        self.lab = lab
        self.progress = progress
        self.lock = MachineLock(policy.root)
        self.registry = Registry(policy.root)
        self.waited = 0.0
        self._seen: dict[str, OtherRun] = {}
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._begun = False

    def begin(self) -> None:
        me = this_process(self.run_id, self.lab)
        if self.policy.enabled:
            self.waited = self.lock.acquire(me, self.progress, self.policy.timeout)
        else:
            self.progress.step("measuring without this machine's lock (--no-lock)")
        try:
            self.registry.add(me)
            self._begun = True
            self._look()
            for other in self._seen.values():
                self.progress.warn(f"{other} is measuring on this machine too: figures may be low")
            self._watcher = threading.Thread(
                target=self._watch, name=f"wgh-overlap-{self.run_id}", daemon=True
            )
            self._watcher.start()
        except BaseException:
            self.end()
            raise

    def _look(self) -> None:
        """Note every other run measuring now (no output: the watcher calls it from its thread)."""
        for entry in self.registry.others(self.run_id):
            with self._guard:
                self._seen.setdefault(entry.run_id, entry.other_run)

    def _watch(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            with contextlib.suppress(OSError):
                self._look()

    def end(self) -> Overlap | None:
        """Stop watching, leave the registry, release the lock; what was seen (None if the
        phase never began). Idempotent."""
        begun, self._begun = self._begun, False
        if begun:
            with contextlib.suppress(OSError):
                self._look()
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None
        self.registry.remove(self.run_id)
        self.lock.release()
        if not begun:
            return None
        with self._guard:
            others = tuple(self._seen.values())
        return Overlap(locked=self.policy.enabled, waited_seconds=round(self.waited, 1), others=others)
