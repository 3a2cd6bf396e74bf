"""The SQLite store: round trips, run references, status of dead runs, schema
versions, atomic artifacts, DataFrames and two writers at once."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from harness.errors import StoreError
from harness.impl import ImplName
from harness.parsers.iperf import FlowDirection
from harness.results.records import (
    Direction,
    HostRecord,
    ImplRecord,
    Measurement,
    RunRecord,
    RunStatus,
    impls_text,
    metric_key,
    new_run_id,
)
from harness.results.store import Store

BASE_TIME = datetime.now(UTC).replace(microsecond=0)
"""After this process started: a run it stores as running with its own PID reads as live."""


def make_run(
    run_id: str | None = None, minutes: int = 0, pid: int | None = None, started_at: datetime | None = None
) -> RunRecord:
    import socket

    return RunRecord(
        id=run_id or new_run_id(),
        started_at=started_at or BASE_TIME + timedelta(minutes=minutes),
        lab_name="local",
        lab_path="labs/local.toml",
        lab_sha256="ab" * 32,
        lab_text="[lab]\n",
        build="b1",
        harness_version="0.1.0",
        command="wgharness run labs/local.toml",
        pid=pid if pid is not None else os.getpid(),
        hostname=socket.gethostname(),
    )


@pytest.fixture
def store(store_url: str):  # type: ignore[no-untyped-def]
    s = Store.open(store_url)
    yield s
    s.close()


MEASUREMENTS = [
    Measurement("throughput", "tcp-1", 1, "receiver_bps", 7.5e8, "bit/s", "higher", "t::a[tcp-1-r1]",
                {"protocol": "tcp", "streams": 1}, [(1.0, 7.4e8), (2.0, 7.6e8)]),
    Measurement("throughput", "tcp-bidir", 1, "receiver_bps", 3.9e8, "bit/s", "higher", "", {"bidir": True},
                None, "reverse"),
    Measurement("lab", "up", 1, "lab_up_seconds", 0.5, "s", "lower"),
]  # fmt: skip


def test_full_round_trip(store: Store) -> None:
    run = make_run()
    store.begin_run(run)
    hosts = [
        HostRecord("a", "wireguard-go", "0.0.20220316", "b1", {"kernel": "6.1", "tools": {"wg": "1.0"}}),
        HostRecord("b", None, None, None, {}),
    ]
    store.add_hosts(run.id, hosts)
    store.add_measurements(run.id, MEASUREMENTS)
    blob = bytes(range(256)) * 10
    store.add_artifact(run.id, "raw.bin", blob, "application/octet-stream")
    store.finish_run(run.id, "passed")
    details = store.get_run(run.id)
    assert details.run == run
    assert details.hosts == hosts
    assert details.measurements == MEASUREMENTS
    assert details.artifacts == ["raw.bin"] and store.get_artifact(run.id, "raw.bin") == blob
    s = details.summary
    assert (s.status, s.measurements, s.build, s.error) == ("passed", 3, "b1", None)
    assert s.impls == (ImplRecord("a", "wireguard-go", "0.0.20220316", "b1"),)
    assert impls_text(s.impls) == "a=wireguard-go 0.0.20220316"
    assert s.finished_at is not None and s.finished_at.tzinfo is not None


def test_enums_are_stored_as_their_text_and_read_back_as_members(store: Store) -> None:
    """A measurement's `Direction`, a bidirectional flow's `FlowDirection` and a host's
    `ImplName` go in as the words stored before they were enums; the direction comes
    back as its member (the implementation stays text: old runs may name one this
    harness no longer drives)."""
    run = make_run()
    store.begin_run(run)
    store.add_hosts(run.id, [HostRecord("a", ImplName.WIREGUARD_GO, "0.0.1", None, {})])
    ms = [
        Measurement(
            "t", "c", 1, "receiver_bps", 1e8, "bit/s", Direction.HIGHER, flow_direction=FlowDirection.REVERSE
        ),
        Measurement("t", "c", 1, "seconds", 0.5, "s", Direction.LOWER),
        Measurement("t", "c", 1, "count", 3.0, "count", Direction.NONE),
    ]
    store.add_measurements(run.id, ms)
    details = store.get_run(run.id)
    assert [m.direction for m in details.measurements] == [Direction.HIGHER, Direction.LOWER, Direction.NONE]
    assert all(type(m.direction) is Direction for m in details.measurements)
    assert details.measurements[0].flow_direction == "reverse" and details.hosts[0].impl == "wireguard-go"
    frame = store.measurements_frame([run.id])
    assert list(frame["direction"]) == ["higher", "lower", "none"]
    assert (
        list(frame["flow_direction"]) == ["reverse", "", ""] and list(frame["impl_a"]) == ["wireguard-go"] * 3
    )


def test_run_references(store: Store) -> None:
    with pytest.raises(StoreError, match="no runs stored"):
        store.resolve("latest")
    store.begin_run(make_run("aaaa11112222", minutes=0))
    store.begin_run(make_run("aaaa33334444", minutes=5))
    store.begin_run(make_run("bbbb55556666", minutes=1))
    assert store.resolve("latest") == "aaaa33334444"
    assert store.resolve("bbbb") == "bbbb55556666"
    assert store.resolve("AAAA1") == "aaaa11112222"
    with pytest.raises(StoreError, match="ambiguous"):
        store.resolve("aaaa")
    with pytest.raises(StoreError, match="no run 'cccc'"):
        store.resolve("cccc")
    with pytest.raises(StoreError, match="no run ''"):
        store.resolve("")
    assert [r.id for r in store.list_runs()] == ["aaaa33334444", "bbbb55556666", "aaaa11112222"]
    assert [r.id for r in store.list_runs(limit=1)] == ["aaaa33334444"]


def test_a_dead_running_run_reads_as_aborted(store: Store) -> None:
    """Its process is gone, or its PID belongs to a process that started after the run
    (this test's own process, for a run stored as begun before it)."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    store.begin_run(make_run("dead00000000", pid=dead.pid))
    store.begin_run(make_run("reused000000", started_at=datetime(2026, 11, 24, 12, 0, tzinfo=UTC)))
    store.begin_run(make_run("live00000000", minutes=1))
    status = {r.id: r.status for r in store.list_runs()}
    assert status == {"dead00000000": "aborted", "reused000000": "aborted", "live00000000": "running"}
    with pytest.raises(ValueError):
        store.finish_run("live00000000", "running")


@pytest.mark.parametrize(
    "status", [RunStatus.PASSED, RunStatus.FAILED, RunStatus.ERROR, RunStatus.INTERRUPTED]
)
def test_run_status_round_trip(store: Store, status: RunStatus) -> None:
    """A status goes in as its text and comes back as the same `RunStatus`."""
    store.begin_run(make_run("r00000000000"))
    assert store.get_run("r00000000000").summary.status is RunStatus.RUNNING
    store.finish_run("r00000000000", status)
    got = store.get_run("r00000000000").summary.status
    assert got is status and type(got) is RunStatus
    with store.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT status FROM runs")).scalar_one()
    assert stored == status.value and type(stored) is str


def test_run_status_text_is_accepted_and_aborted_is_only_read(store: Store) -> None:
    """finish_run takes the plain text too; 'running' and 'aborted' are no final statuses,
    and an aborted run is never written: it stays 'running' in the store."""
    store.begin_run(make_run("t00000000000"))
    store.finish_run("t00000000000", "failed")
    assert store.get_run("t00000000000").summary.status is RunStatus.FAILED
    dead = subprocess.Popen(["true"])
    dead.wait()
    store.begin_run(make_run("dead00000000", minutes=1, pid=dead.pid))
    assert store.get_run("dead00000000").summary.status is RunStatus.ABORTED
    for bad in (RunStatus.ABORTED, RunStatus.RUNNING, "aborted", "bogus"):
        with pytest.raises(ValueError, match="cannot finish"):
            store.finish_run("dead00000000", bad)
    with store.engine.connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT id, status FROM runs")).all())
    assert rows == {"t00000000000": "failed", "dead00000000": "running"}
    assert [r.id for r in store.runs_of_lab("local")] == ["t00000000000"]
    assert [r.id for r in store.runs_of_lab("local", statuses=[RunStatus.RUNNING])] == ["dead00000000"]


def test_impls_are_typed_and_displayed_as_before(store: Store) -> None:
    store.begin_run(make_run("i00000000000"))
    store.add_hosts(
        "i00000000000",
        [
            HostRecord("b", "kernel", None, None, {}),
            HostRecord("a", "wireguard-go", "0.0.1", "x", {}),
            HostRecord("c", None, None, None, {}),
        ],
    )
    s = store.get_run("i00000000000").summary
    assert s.impls == (ImplRecord("a", "wireguard-go", "0.0.1", "x"), ImplRecord("b", "kernel"))
    assert impls_text(s.impls) == "a=wireguard-go 0.0.1, b=kernel"
    assert [r.impls for r in store.list_runs()] == [s.impls]


def test_metric_key() -> None:
    one, bidir, up = MEASUREMENTS
    assert one.key == "throughput/tcp-1/receiver_bps"
    assert bidir.key == "throughput/tcp-bidir/reverse/receiver_bps"
    assert up.key == metric_key("lab", "up", "", "lab_up_seconds") == "lab/up/lab_up_seconds"


def test_duplicate_artifact_is_refused_and_first_kept(store: Store) -> None:
    run = make_run()
    store.begin_run(run)
    store.add_artifact(run.id, "x.txt", b"first")
    with pytest.raises(StoreError, match="already has an artifact 'x.txt'"):
        store.add_artifact(run.id, "x.txt", b"second")
    assert store.get_artifact(run.id, "x.txt") == b"first"
    with pytest.raises(StoreError, match="no artifact 'y'"):
        store.get_artifact(run.id, "y")


def test_measurements_are_all_or_nothing(store: Store) -> None:
    run = make_run()
    store.begin_run(run)
    bad = replace(MEASUREMENTS[0], value=None)  # type: ignore[arg-type]
    with pytest.raises((TypeError, StoreError, sa.exc.SQLAlchemyError)):
        store.add_measurements(run.id, [MEASUREMENTS[1], bad])
    assert store.get_run(run.id).measurements == []


def test_schema_version(store_url: str) -> None:
    url = store_url
    s = Store.open(url)
    with s.engine.connect() as conn:
        assert (
            conn.execute(sa.text("select value from meta where key='schema_version'")).scalar()
            == str(Store.SCHEMA_VERSION)
            == "5"
        )
    with s.engine.begin() as conn:
        conn.execute(sa.text("update meta set value='999' where key='schema_version'"))
    s.close()
    with pytest.raises(StoreError, match="schema version 999 is newer"):
        Store.open(url)


def test_version_1_store_is_upgraded_keeping_its_runs(store_url: str) -> None:
    s = Store.open(store_url)
    run = make_run()
    s.begin_run(run)
    s.add_measurements(run.id, MEASUREMENTS[:1])
    # Turn it back into a version 1 store: no measurements.build, no runs.runner.
    with s.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE measurements DROP COLUMN build"))
        conn.execute(sa.text("ALTER TABLE runs DROP COLUMN runner"))
        conn.execute(sa.text("update meta set value='1' where key='schema_version'"))
    s.close()
    s = Store.open(store_url)
    assert s.get_run(run.id).measurements == MEASUREMENTS[:1]
    assert s.get_run(run.id).run.runner is None  # stored before runners were
    s.add_measurements(run.id, [replace(MEASUREMENTS[0], build="variant-b")])
    assert s.get_run(run.id).measurements[1].build == "variant-b"
    assert list(s.measurements_frame()["build"]) == ["b1", "variant-b"]
    named = replace(make_run(minutes=1), runner="ci-1")
    s.begin_run(named)
    assert s.get_run(named.id).run.runner == "ci-1"
    s.close()


@pytest.mark.parametrize("url", ["nonsense", "nosuchdb://x/y", "sqlite:////proc/no/such/dir/x.db"])
def test_bad_urls_are_one_line_store_errors(url: str) -> None:
    with pytest.raises(StoreError) as info:
        Store.open(url)
    assert "\n" not in str(info.value) and str(info.value).startswith("store ")


def test_password_is_masked() -> None:
    with pytest.raises(StoreError) as info:
        Store.open("postgresql://user:secret@127.0.0.1:1/db")
    assert "secret" not in str(info.value)


def test_measurements_frame(store: Store) -> None:
    assert list(store.measurements_frame().columns)[:3] == ["run_id", "started_at", "status"]
    run = make_run()
    store.begin_run(run)
    store.add_hosts(run.id, [HostRecord("a", "wireguard-go", "0.0.1", None, {})])
    store.add_measurements(run.id, MEASUREMENTS)
    other = make_run(minutes=1)
    store.begin_run(other)
    store.add_measurements(other.id, MEASUREMENTS[:1])
    frame = store.measurements_frame([run.id])
    assert len(frame) == 3 and set(frame["run_id"]) == {run.id}
    assert list(frame["value"]) == [7.5e8, 3.9e8, 0.5]
    assert frame.loc[0, "param_streams"] == 1 and bool(frame.loc[1, "param_bidir"]) is True
    assert (frame["impl_a"] == "wireguard-go").all() and (frame["impl_version_a"] == "0.0.1").all()
    assert len(store.measurements_frame()) == 4


def _writer(url: str, run_id: str, n: int) -> None:
    s = Store.open(url)
    s.begin_run(make_run(run_id))
    for i in range(n):
        s.add_measurements(run_id, [replace(MEASUREMENTS[0], repetition=i + 1)])
        s.add_artifact(run_id, f"a{i}", b"x" * i)
    s.finish_run(run_id, "passed")
    s.close()


def test_two_writers_at_once_lose_nothing(store_url: str) -> None:
    url = store_url
    Store.open(url).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(url, f"{i:012d}", 60)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    s = Store.open(url)
    for i in range(2):
        details = s.get_run(f"{i:012d}")
        assert details.summary.status == "passed"
        assert sorted(m.repetition for m in details.measurements) == list(range(1, 61))
        assert len(details.artifacts) == 60
    s.close()
