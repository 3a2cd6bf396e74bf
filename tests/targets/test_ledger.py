"""A lab's state record (harness/targets/ledger.py): on disk from the start, each
resource noted and forgotten, always whole, gone once the lab is down and nothing
it names is left."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from harness.procs import process_start
from harness.targets.base import HostKind
from harness.targets.ledger import (
    HERE,
    HostEntry,
    Ledger,
    Resource,
    ResourceKind,
    read_record,
    record_paths,
)
from harness.targets.local import LocalTarget


def test_the_record_is_written_before_anything_and_names_its_owner(tmp_path: Path) -> None:
    ledger = Ledger.open("wsta0001", "local", "0123456789ab", tmp_path)
    record = read_record(tmp_path / "wsta0001.json")
    assert record is not None and record.resources == () and record.run_id == "0123456789ab"
    assert record.pid == os.getpid() and record.pid_start == process_start(os.getpid())
    assert record_paths(tmp_path) == [ledger.path]


def test_notes_and_forgets_and_the_file_goes_when_closed_and_empty(tmp_path: Path) -> None:
    ledger = Ledger.open("wsta0002", "local", None, tmp_path)
    ledger.add_host("a", HostEntry(HostKind.NETNS, namespace="wgh-wsta0002-a"))
    forget_ns = ledger.note(Resource(ResourceKind.NAMESPACE, "a", "wgh-wsta0002-a"))
    forget_dir = ledger.note(Resource(ResourceKind.FOLDER, HERE, "repro", path="/tmp/wgh-repro-x"))
    record = read_record(ledger.path)
    assert record is not None and [r.serial for r in record.resources] == [1, 2]
    assert record.hosts["a"].namespace == "wgh-wsta0002-a"
    forget_ns()
    forget_ns()  # idempotent
    ledger.close()
    record = read_record(ledger.path)  # still names the folder: the file stays
    assert record is not None and [r.kind for r in record.resources] == [ResourceKind.FOLDER]
    forget_dir()
    assert not ledger.path.exists() and list(tmp_path.iterdir()) == []  # nothing half-written left


def test_notes_from_many_threads_are_all_kept(tmp_path: Path) -> None:
    ledger = Ledger.open("wsta0003", "local", None, tmp_path)

    def work(n: int) -> None:
        for i in range(20):
            ledger.note(Resource(ResourceKind.PROCESS, "a", f"p{n}-{i}", pid=i))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    record = read_record(ledger.path)
    assert record is not None and len({r.serial for r in record.resources}) == 80


def test_a_host_without_a_ledger_notes_nothing(tmp_path: Path) -> None:
    host = LocalTarget("a")
    forget = host.noted(ResourceKind.PROCESS, "sleep", pid=1)
    forget()  # no ledger: nothing to forget, no error
    host.ledger = Ledger.open("wsta0004", "local", None, tmp_path)
    process = host.start(["sleep", "30"])
    record = read_record(host.ledger.path)
    assert record is not None
    [noted] = record.resources
    assert (noted.kind, noted.host, noted.name, noted.pid) == (
        ResourceKind.PROCESS,
        "a",
        "sleep",
        process.pid,
    )
    assert noted.started == str(process_start(process.pid))
    process.kill()
    record = read_record(host.ledger.path)
    assert record is not None and record.resources == ()


def test_a_record_this_version_cannot_read_is_none(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"format": 1}')
    assert read_record(tmp_path / "x.json") is None and read_record(tmp_path / "gone.json") is None
