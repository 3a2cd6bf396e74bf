"""One benchmark run: the lab, the store, and everything recorded in between.

The run is stored as 'running' the moment it starts, each measurement is
written in its own transaction as it is taken, and the run is finished with
its status (passed, failed, error, interrupted), so a run that breaks half-way
is kept as such with what it collected, and nothing is half-written.

The measured phase, from the lab being up until before it comes down, holds
this machine's benchmark lock (`harness.run.hostlock`), and the run stores
whether another run measured on the machine meanwhile.

A key the lab file gives a tunnel end is in nothing the run stores: every
artifact goes through `RunSession.redact` (the keys made for the run may stay).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import sys
from datetime import UTC, datetime

from harness import __version__
from harness.codec import encode
from harness.errors import HarnessError, InfraError
from harness.keys import without_secrets
from harness.lab.spec import Lab
from harness.progress import Progress
from harness.results.records import Direction, HostRecord, Measurement, RunRecord, RunStatus, new_run_id
from harness.results.store import Store
from harness.run.cleanup import signals_deferred
from harness.run.hostlock import LockPolicy, MeasuredPhase
from harness.run.orchestrator import LabInstance


class RunSession:
    def __init__(
        self,
        lab: Lab,
        store: Store,
        *,
        build: str | None = None,
        progress: Progress | None = None,
        command: str | None = None,
        lock: LockPolicy | None = None,
        runner: str | None = None,
        job: str | None = None,
    ) -> None:
        """``runner``: the name stored with the run (None: this machine's host name);
        ``job``: the fleet job that runs it (`harness.fleet`)."""
        self.lab = lab
        self.store = store
        self.build = build
        self.progress = progress or Progress()
        self.run_id = new_run_id()
        self.instance: LabInstance | None = None
        self.infra_error: str | None = None
        self.outcomes: list[dict[str, object]] = []
        self._finished = False
        self.status: RunStatus | None = None
        self.signalled: int | None = None
        """A signal (SIGINT, SIGTERM, SIGHUP) that came while the lab came down: the run
        is finished as interrupted, whatever its tests made of it."""
        self.measured = MeasuredPhase(lock or LockPolicy(), self.run_id, lab.name, self.progress)
        self.check_needs: dict[str, tuple[str, ...]] = {}
        """What the host checks ask beyond the lab's own needs: ``capture`` and ``netem``,
        each the hosts it applies to (`harness.lab.hostcheck.probe.check_lab`'s options)."""
        self.host_table: str | None = None
        """The host checks' table, once they ran (`lab_up`)."""
        self.secrets = tuple(e.private_key for e in lab.tunnel.ends if e.private_key)
        """The keys the lab file gave (`redact` takes them out of what is stored)."""
        self.store.begin_run(
            RunRecord(
                id=self.run_id,
                started_at=datetime.now(UTC),
                lab_name=lab.name,
                lab_path=lab.path,
                lab_sha256=lab.sha256,
                lab_text=lab.text,
                build=build,
                harness_version=__version__,
                command=command or shlex.join(sys.argv),
                pid=os.getpid(),
                hostname=socket.gethostname(),
                runner=runner or socket.gethostname(),
                job=job,
            )
        )
        self.progress.step(f"run {self.run_id}: lab {lab.name} ({lab.path}), store {store.url}")

    # -- the lab -----------------------------------------------------------
    def lab_up(self, instance: LabInstance | None = None) -> LabInstance:
        """Bring the lab up once (``instance``: one made by the caller, e.g. with a
        preparation hook), then begin the measured phase (this machine's lock); later
        calls return it, or re-raise the first failure."""
        if self.infra_error is not None:
            raise InfraError(self.infra_error)
        if self.instance is not None:
            return self.instance
        instance = instance or LabInstance(self.lab, progress=self.progress, run_id=self.run_id)
        if instance.run_id is None:
            instance.run_id = self.run_id
        try:
            if instance.dry is None:
                self.check_hosts(instance.lab)
            instance.up()
        except HarnessError as exc:
            self.infra_error = str(exc)
            raise
        self.instance = instance
        self._store_hosts(instance)
        try:
            self.measured.begin()
        except HarnessError as exc:  # lab_down still takes the lab down
            self.infra_error = str(exc)
            raise
        return instance

    def check_hosts(self, lab: Lab) -> None:
        """The read-only host checks, before anything is created: their table is stored
        with the run; a host lacking what the lab needs is an `InfraError`, one line naming
        each host, check and fix."""
        from harness.lab.hostcheck.core import blocking, blocking_line, render_table
        from harness.lab.hostcheck.probe import check_lab

        self.progress.step("checking the hosts (read-only)")
        needs = self.check_needs
        rows = check_lab(lab, capture=needs.get("capture", ()), netem=needs.get("netem", ()))
        self.host_table = render_table(rows)
        self.artifact("host-checks.txt", self.host_table.encode())
        if blocking(rows):
            raise InfraError(blocking_line(rows))

    def _store_hosts(self, instance: LabInstance) -> None:
        records = []
        for name in self.lab.hosts:
            facts = instance.state.facts.get(name)
            impl = version = build = None
            for end in instance.ends:
                if end.spec.host == name:
                    impl = end.spec.impl
                    version = end.info.version if end.info else None
                    build = end.spec.build or self.build
            records.append(
                HostRecord(
                    host=name,
                    impl=impl,
                    impl_version=version,
                    build=build,
                    facts=encode(facts) if facts else {},
                )
            )
        self.store.add_hosts(self.run_id, records)
        self.store.add_measurements(
            self.run_id,
            [Measurement("lab", "up", 1, "lab_up_seconds", instance.state.up_seconds, "s", Direction.LOWER)],
        )

    def lab_down(self) -> None:
        """End the measured phase, collect the counters, dumps and logs, then tear the lab
        down. A signal meanwhile does not stop it: it is held, and the run is then
        finished as interrupted (`signalled`)."""
        with signals_deferred(reraise=False) as caught:
            self._lab_down()
        if caught and self.signalled is None:
            self.signalled = caught[0]

    def _lab_down(self) -> None:
        instance, self.instance = self.instance, None
        if instance is None:
            return
        overlap = self.measured.end()
        try:
            if overlap is not None:
                self.store.set_overlap(self.run_id, overlap)
        except Exception as exc:  # recording it must not keep the lab up either
            self.progress.warn(f"storing whether the run measured alone failed: {exc}")
        if overlap is not None and overlap.warning():
            self.progress.warn(str(overlap.warning()))
        try:
            self._collect(instance)
        except Exception as exc:  # collection must never keep the lab up
            self.progress.warn(f"collecting counters failed: {exc}")
        errors = instance.down()
        if errors:
            self.artifact("teardown-errors.txt", "\n".join(errors).encode())

    def _collect(self, instance: LabInstance) -> None:
        self.progress.step("collecting wg counters and logs")
        measurements = []
        for end in instance.ends:
            peer = end.driver.stats().peers[0]
            for metric, value in (("wg_rx_bytes", peer.rx_bytes), ("wg_tx_bytes", peer.tx_bytes)):
                measurements.append(
                    Measurement("counters", end.spec.host, 1, metric, float(value), "B", Direction.NONE)
                )
        self.store.add_measurements(self.run_id, measurements)
        for name, text in instance.redacted_dumps().items():
            self.artifact(name, text.encode())
        for name, data in instance.logs().items():
            self.artifact(name, data)

    # -- recording ---------------------------------------------------------
    def record(self, measurements: list[Measurement]) -> None:
        self.store.add_measurements(self.run_id, measurements)

    def artifact(self, name: str, data: bytes, content_type: str = "text/plain") -> None:
        self.store.add_artifact(self.run_id, name, self.redact(data), content_type)

    def redact(self, data: bytes) -> bytes:
        """``data`` without the keys the lab file gave (a config, a key log may hold them)."""
        return without_secrets(data, self.secrets)

    def outcome(self, test_id: str, outcome: str, duration: float, message: str) -> None:
        self.outcomes.append(
            {
                "test_id": test_id,
                "outcome": outcome,
                "duration": round(duration, 3),
                "message": message,
            }
        )

    def finish(self, status: RunStatus, error: str | None = None) -> RunStatus:
        """Store the final status once. An infrastructure failure always wins."""
        if self._finished:
            return status
        self._finished = True
        if self.signalled is not None and status != RunStatus.INTERRUPTED:
            status, error = RunStatus.INTERRUPTED, f"{signal.Signals(self.signalled).name} during teardown"
        if self.infra_error is not None and status != RunStatus.INTERRUPTED:
            status, error = RunStatus.ERROR, self.infra_error
        with signals_deferred(reraise=False):  # never half-finished: a signal now changes nothing stored
            if self.outcomes:
                self.artifact(
                    "outcomes.json", json.dumps(self.outcomes, indent=1).encode(), "application/json"
                )
            self.store.finish_run(self.run_id, status, error)
        self.status = status
        self.progress.step(f"run {self.run_id}: {status}" + (f" ({error})" if error else ""))
        return status
