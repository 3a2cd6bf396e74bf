"""A lab's state record: what it created, where, and which process owns it, on disk
from before the first thing is created, so a lab whose harness was killed
(SIGKILL, an OOM kill, a CI runner's hard cancel) can be found and removed later
(`harness.run.stale`, ``wgharness clean``).

Rules of this module:
* One file per lab, ``LABS_DIR/LAB_ID.json`` (a tmpfs: gone after a reboot, as
  is everything it could name on this machine), a `LabRecord`: the lab's id and
  run, the owner's PID and start time, each host and how to reach it again, and
  the resources, oldest first.
* A resource whose name is known beforehand (a namespace, a link, a firewall
  rule) is noted *before* it is created; one whose name the system picks (a
  PID, a temporary folder) right after. Removed, it is forgotten. The note is a
  promise only that the thing may exist: the cleaner looks before it removes.
* The file is only ever replaced whole (written aside, then renamed): a reader
  never sees half of it. Notes come from any thread; one lock orders them.
* When the lab has come down (`Ledger.close`) and nothing it names is left, the
  file is removed; what is still noted then (a teardown that failed, a folder
  its caller keeps a little longer) keeps it until that is forgotten too.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from harness.codec import from_json, to_json
from harness.errors import InfraError
from harness.procs import process_start
from harness.targets.base import HostKind

STATE_VARIABLE = "WGH_STATE_DIR"
STATE_DIR = Path(os.environ.get(STATE_VARIABLE) or "/run/wgharness")
"""This machine's state: the labs' records, the benchmark lock and the registry of measuring
runs (`harness.run.hostlock`). Runs see each other's labs and wait for each other only when
they share it: the default, unless ``WGH_STATE_DIR`` names another folder (a test that must
not meet another lab on the machine)."""
LABS_DIR = STATE_DIR / "labs"
"""Where the records of the labs on this machine live."""
FORMAT = 1


class ResourceKind(StrEnum):
    """What a lab creates, as a record names it (`Resource`)."""

    NAMESPACE = "namespace"
    """A network namespace on this machine (``name``)."""
    LINK = "link"
    """A veth pair, by its end ``name`` in ``namespace``."""
    TAP = "tap"
    """A guest's tap ``name`` in ``namespace`` (it goes with QEMU)."""
    QDISC = "qdisc"
    """A root qdisc (tbf, netem) on device ``name`` of the host (in ``namespace`` if local)."""
    INTERFACE = "interface"
    """A tunnel interface ``name`` made on the host (kernel WireGuard)."""
    PROCESS = "process"
    """A program the lab started: ``pid``, ``started`` its start time as the host tells it."""
    QEMU = "qemu"
    """A guest's QEMU: ``pid`` and ``started`` on this machine, ``path`` its pidfile."""
    SOCKET = "socket"
    """A UAPI socket ``path`` (/var/run/wireguard/IFNAME.sock) on the host."""
    FOLDER = "folder"
    """A temporary folder ``path`` on the host, removed with what is in it."""
    FIREWALL_RULE = "firewall-rule"
    """A Windows firewall rule, by its DisplayName ``name``."""
    TASK = "task"
    """A Windows scheduled task ``name`` running program ``pid``; ``path`` its folder."""


HERE = ""
"""The host of a resource that belongs to this machine itself, outside any lab host
(namespaces, links, QEMU and its folder)."""


@dataclass(frozen=True)
class Resource:
    kind: ResourceKind
    host: str
    """The lab host it is on (`HERE`: this machine)."""
    name: str
    """What it is called (a namespace, a device, a rule, a task; a program's name)."""
    namespace: str | None = None
    pid: int | None = None
    started: str | None = None
    """When process ``pid`` started, as its host tells it (local: clock ticks since boot,
    ``/proc/PID/stat``; over SSH: ``ps -o lstart=``): a reused PID is not it."""
    path: str | None = None
    serial: int = 0
    """Its place in the record (set by `Ledger.note`)."""

    def __str__(self) -> str:
        where = f" on {self.host}" if self.host else ""
        inside = f" in {self.namespace}" if self.namespace else ""
        pid = f" (pid {self.pid})" if self.pid is not None else ""
        what = self.path if self.kind in (ResourceKind.SOCKET, ResourceKind.FOLDER) else self.name
        return f"{self.kind} {what}{inside}{pid}{where}"


@dataclass(frozen=True)
class HostEntry:
    """A lab host, as the cleaner reaches it again."""

    kind: HostKind
    namespace: str | None = None
    """netns: its namespace on this machine."""
    ssh: dict[str, Any] | None = None
    """ssh, windows: how to log in, an encoded `SshSpec` (no secret: a key file's path,
    known_hosts); encoded so this module loads no SSH code."""


@dataclass(frozen=True)
class LabRecord:
    format: int
    lab_id: str
    lab: str
    """The lab's name."""
    run_id: str | None
    """The stored run it belongs to (None: a lab brought up outside a run)."""
    pid: int
    pid_start: int | None
    machine: str
    """This machine's host name."""
    created: str
    """When it was written first (ISO 8601, UTC)."""
    hosts: dict[str, HostEntry] = field(default_factory=dict)
    resources: tuple[Resource, ...] = ()

    def describe(self) -> str:
        run = f"run {self.run_id}" if self.run_id else "no stored run"
        return f"lab {self.lab} [{self.lab_id}] ({run}, pid {self.pid}, since {self.created})"


def read_record(path: Path) -> LabRecord | None:
    """The record in ``path``; None if it is gone or not one this version reads."""
    try:
        return from_json(path.read_text(), LabRecord)
    except (OSError, ValueError):
        return None


def record_paths(directory: Path = LABS_DIR) -> list[Path]:
    return sorted(directory.glob("*.json")) if directory.is_dir() else []


def write_record(path: Path, record: LabRecord) -> None:
    """Replace ``path`` with ``record`` whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(to_json(record, indent=1) + "\n")
    tmp.replace(path)


Forget = Callable[[], None]
"""Called once a noted resource has been removed (idempotent)."""


def nothing() -> None:
    """A `Forget` with nothing to forget."""
    return None


class Ledger:
    """The record of one lab, kept on disk as it changes."""

    def __init__(self, path: Path, record: LabRecord) -> None:
        self.path = path
        self._record = record
        self._lock = threading.Lock()
        self._closed = False
        self._serial = max((r.serial for r in record.resources), default=0)
        self._write(record)

    @classmethod
    def open(cls, lab_id: str, lab: str, run_id: str | None, directory: Path = LABS_DIR) -> Ledger:
        pid = os.getpid()
        record = LabRecord(
            FORMAT, lab_id, lab, run_id, pid, process_start(pid), socket.gethostname(),
            datetime.now(UTC).isoformat(timespec="seconds"),
        )  # fmt: skip
        return cls(directory / f"{lab_id}.json", record)

    @property
    def record(self) -> LabRecord:
        with self._lock:
            return self._record

    def add_host(self, name: str, entry: HostEntry) -> None:
        with self._lock:
            self._record = replace(self._record, hosts={**self._record.hosts, name: entry})
            self._write(self._record)

    def note(self, resource: Resource) -> Forget:
        """Add ``resource``; the function that forgets it again."""
        with self._lock:
            self._serial += 1
            serial = self._serial
            self._record = replace(
                self._record, resources=(*self._record.resources, replace(resource, serial=serial))
            )
            self._write(self._record)
        return lambda: self._forget(serial)

    def _forget(self, serial: int) -> None:
        with self._lock:
            left = tuple(r for r in self._record.resources if r.serial != serial)
            if len(left) == len(self._record.resources):
                return
            self._record = replace(self._record, resources=left)
            self._save()

    def close(self) -> None:
        """The lab is down: the record goes once nothing it names is left."""
        with self._lock:
            self._closed = True
            self._save()

    def _write(self, record: LabRecord) -> None:
        try:
            write_record(self.path, record)
        except OSError as exc:
            raise InfraError(f"cannot write the lab's record {self.path}: {exc.strerror or exc}") from None

    def _save(self) -> None:
        """After a removal: the record as it now stands, or none. A failure to write is
        not one of the teardown's: the record then names something already gone."""
        with contextlib.suppress(OSError):
            if self._closed and not self._record.resources:
                self.path.unlink(missing_ok=True)
            else:
                write_record(self.path, self._record)


def note(ledger: Ledger | None, resource: Resource) -> Forget:
    """`Ledger.note` where there is a ledger; else nothing to forget."""
    return ledger.note(resource) if ledger is not None else nothing
