"""A `wgharness` started as CI starts it, signalled at a chosen moment, and the check
that what its lab's record named is gone.

`Launched` runs ``python -m harness ...`` with SIGINT, SIGTERM and SIGHUP at their
default disposition and unblocked (whatever the test process inherited: started as a
background job it ignores SIGINT, and so would the harness), its output in files;
`until` reads its progress lines up to a marker. `record_of` reads the lab's record
(the one whose id begins with the test's WGH_ID_PREFIX tag); `still_there` lists what
of it is still there, on this machine and on its SSH hosts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from harness.codec import decode
from harness.procs import alive
from harness.run.orchestrator import ID_PREFIX_VARIABLE
from harness.targets.ledger import LABS_DIR, LabRecord, Resource, ResourceKind, read_record
from harness.targets.ssh.spec import SshSpec
from harness.targets.ssh.target import SshTarget
from tests.support.leftovers import stop
from tests.support.paths import ROOT

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _default_signals() -> None:
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, set(SIGNALS))


def _background_job() -> None:
    """As a shell without job control starts ``cmd &``: SIGINT ignored."""
    _default_signals()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Launched:
    """``python -m harness ARGS`` in the background, its stdout and stderr in ``folder``."""

    def __init__(self, folder: Path, *args: str, name: str = "wgh", background_job: bool = False) -> None:
        """``background_job``: started with SIGINT ignored, as ``cmd &`` in a script is."""
        self.err_path = folder / f"{name}.err"
        self.out_path = folder / f"{name}.out"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "harness", *args],
                cwd=ROOT, stdout=out, stderr=err,
                preexec_fn=_background_job if background_job else _default_signals,
            )  # fmt: skip
        self._read = 0

    def __enter__(self) -> Launched:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stop(self.proc, 120)  # a test that failed half-way: SIGTERM, which the harness takes as Ctrl-C

    @property
    def output(self) -> str:
        return self.out_path.read_text(errors="replace") + self.err_path.read_text(errors="replace")

    def until(self, marker: str, timeout: float = 300) -> None:
        """Wait for a progress line holding ``marker``; AssertionError if the harness ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.err_path.read_text(errors="replace")
            if marker in text[self._read :]:
                self._read += text[self._read :].index(marker) + len(marker)
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {marker!r} (exit {self.proc.poll()}):\n{self.output[-4000:]}")

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 180) -> int:
        return self.proc.wait(timeout)


def record_path() -> Path:
    """The record of the test's lab (its id begins with the test's tag)."""
    tag = os.environ[ID_PREFIX_VARIABLE]
    found = sorted(LABS_DIR.glob(f"{tag}*.json"))
    assert len(found) == 1, found
    return found[0]


def record_of() -> LabRecord:
    record = read_record(record_path())
    assert record is not None
    return record


def _remote_there(target: SshTarget, r: Resource) -> bool:
    if r.kind is ResourceKind.PROCESS:
        now = target.run(["ps", "-o", "lstart=", "-p", str(r.pid)]).stdout.strip()
        return bool(now) and now == r.started
    if r.kind is ResourceKind.INTERFACE:
        return target.run(["ip", "link", "show", "dev", r.name]).ok
    assert r.path is not None, r
    return target.run(["test", "-e", r.path]).ok


def still_there(record: LabRecord) -> list[str]:
    """What of ``record``'s resources still exists: on this machine, and over SSH on the
    ssh hosts it names (a guest's went with its QEMU)."""
    guests = {name for name, entry in record.hosts.items() if entry.kind == "vm"}
    remotes = {name: SshTarget(name, decode(entry.ssh, SshSpec))
               for name, entry in record.hosts.items() if entry.kind == "ssh" and entry.ssh}  # fmt: skip
    netns = Path("/run/netns")
    left = []
    for r in record.resources:
        if r.host in guests:
            continue
        if r.host in remotes:
            if _remote_there(remotes[r.host], r):
                left.append(str(r))
            continue
        if r.kind in (ResourceKind.PROCESS, ResourceKind.QEMU):
            started = int(r.started) if r.started is not None else None
            there = r.pid is not None and alive(r.pid, started)
        elif r.kind is ResourceKind.NAMESPACE:
            there = (netns / r.name).exists()
        elif r.kind in (ResourceKind.LINK, ResourceKind.TAP, ResourceKind.QDISC, ResourceKind.INTERFACE):
            namespace = r.namespace or (record.hosts[r.host].namespace if r.host else None)
            where = ["ip", "-n", namespace] if namespace else ["ip"]
            there = (namespace is None or (netns / namespace).exists()) and subprocess.run(
                [*where, "link", "show", "dev", r.name], capture_output=True
            ).returncode == 0
        else:  # socket, folder
            there = r.path is not None and os.path.lexists(r.path)
        if there:
            left.append(str(r))
    for target in remotes.values():
        target.conduit.close()
    return left
