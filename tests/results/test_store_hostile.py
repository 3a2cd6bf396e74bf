"""The store against hostile or damaged databases (issue 22): a database of another
program or without its version row is refused before anything is written, reading
commands create nothing, run ids match literally, damaged rows are one-line errors,
and what is stored keeps no password and no key of a lab file; a new SQLite store
is readable by its owner only. Both backends where the rule applies to both."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from harness.errors import StoreError
from harness.keys import generate_private_key
from harness.results.records import HostRecord, Measurement
from harness.results.store import Store, mask_passwords
from tests.results.test_store import make_run
from tests.support.postgres import own_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, sa.Engine]]:
    """(URL, engine for the test's own statements) of a database that holds nothing yet
    (SQLite: not even its file or folder)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'sub' / 'runs.db'}"
        engine = sa.create_engine(url)
        yield url, engine
        engine.dispose()
        return
    with own_schema() as pair:
        yield pair


def _one_line(exc: pytest.ExceptionInfo[StoreError]) -> str:
    text = str(exc.value)
    assert "\n" not in text and text.startswith("store ")
    return text


def _tables(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names())


def test_run_ids_match_literally_not_as_sql_wildcards(empty_db: tuple[str, sa.Engine]) -> None:
    url, _ = empty_db
    with Store.open(url) as store:
        store.begin_run(make_run("2615aaaaaaaa"))
        for ref in ("_", "%", "2615%", "26_5", "____", "2615_"):
            with pytest.raises(StoreError, match="no run"):
                store.resolve(ref)
        assert store.resolve("2615") == store.resolve("2615AAAA") == "2615aaaaaaaa"


def test_reading_a_store_that_does_not_exist_creates_nothing(empty_db: tuple[str, sa.Engine]) -> None:
    url, engine = empty_db
    with pytest.raises(StoreError) as info:
        Store.open(url, create=False)
    assert "no store at" in _one_line(info)
    if url.startswith("sqlite"):
        assert not Path(url.removeprefix("sqlite:///")).parent.exists()
        Path(url.removeprefix("sqlite:///")).parent.mkdir()
        Path(url.removeprefix("sqlite:///")).write_bytes(b"")  # an empty file: no store either
        with pytest.raises(StoreError, match="no store at"):
            Store.open(url, create=False)
        assert Path(url.removeprefix("sqlite:///")).stat().st_size == 0
    assert _tables(engine) == set()
    Store.open(url).close()  # a command that writes makes it
    assert {"meta", "runs"} <= _tables(engine)
    Store.open(url, create=False).close()


def test_a_database_of_another_program_is_refused_untouched(empty_db: tuple[str, sa.Engine]) -> None:
    url, engine = empty_db
    if url.startswith("sqlite"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir()
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE runs (id INTEGER PRIMARY KEY, note TEXT)"))
        conn.execute(sa.text("INSERT INTO runs VALUES (1, 'theirs')"))
    for create in (True, False):
        with pytest.raises(StoreError) as info:
            Store.open(url, create=create)
        assert "not a wgharness store" in _one_line(info) and "runs" in str(info.value)
    assert _tables(engine) == {"runs"}


def test_a_store_whose_version_row_was_deleted_is_refused_not_restamped(
    empty_db: tuple[str, sa.Engine],
) -> None:
    url, engine = empty_db
    Store.open(url).close()
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM meta"))
    for create in (True, False):
        with pytest.raises(StoreError) as info:
            Store.open(url, create=create)
        assert "no schema version" in _one_line(info)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM meta")).scalar() == 0


@pytest.mark.parametrize("version", ["four", "", "4.5", "-1"])
def test_a_schema_version_that_is_no_whole_number_is_refused(
    empty_db: tuple[str, sa.Engine], version: str
) -> None:
    url, engine = empty_db
    Store.open(url).close()
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE meta SET value = :v WHERE key = 'schema_version'"), {"v": version})
    with pytest.raises(StoreError) as info:
        Store.open(url, create=False)
    assert f"schema version {version!r}" in _one_line(info)


DAMAGE = {
    "status": ("UPDATE runs SET status = 'bogus'", "runs.status"),
    "facts": ("UPDATE run_hosts SET facts = '{not json'", "run_hosts.facts"),
    "params": ("UPDATE measurements SET params = '[1,'", "measurements.params"),
    "series": ("UPDATE measurements SET series = '[[1]]'", "measurements.series"),
    "direction": ("UPDATE measurements SET direction = 'sideways'", "measurements.direction"),
    "artifact": ("UPDATE artifacts SET data = :junk", "artifacts.data"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_row_is_a_one_line_error_naming_its_field(
    empty_db: tuple[str, sa.Engine], damage: str
) -> None:
    url, engine = empty_db
    run = make_run("d00000000000")
    with Store.open(url) as store:
        store.begin_run(run)
        store.add_hosts(run.id, [HostRecord("a", "wireguard-go", "1", None, {"kernel": "6.1"})])
        store.add_measurements(
            run.id, [Measurement("t", "c", 1, "receiver_bps", 1.0, "bit/s", "higher", series=[(1.0, 2.0)])]
        )
        store.add_artifact(run.id, "note.txt", b"hello")
        store.finish_run(run.id, "passed")
    statement, field = DAMAGE[damage]
    with engine.begin() as conn:
        conn.execute(sa.text(statement), {"junk": b"\x00\x01not zlib"} if ":junk" in statement else {})
    with Store.open(url, create=False) as store, pytest.raises(StoreError) as info:
        store.get_run(run.id)
        store.list_runs()
        store.measurements_frame()
        store.get_artifact(run.id, "note.txt")
    assert field in _one_line(info) and run.id in str(info.value)


def test_a_new_sqlite_store_and_its_folders_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        (tmp_path / "there").mkdir(mode=0o755)
        db = tmp_path / "there" / "new" / "deeper" / "runs.db"
        with Store.open(f"sqlite:///{db}") as store:
            store.begin_run(make_run())  # the write-ahead log exists now
            names = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in names}
        assert modes == {"runs.db": 0o600, "runs.db-wal": 0o600, "runs.db-shm": 0o600}
        assert stat.S_IMODE((tmp_path / "there" / "new").stat().st_mode) == 0o700
        assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE((tmp_path / "there").stat().st_mode) == 0o755  # one it did not make: as it was
    finally:
        os.umask(old)


def test_passwords_are_masked_in_everything_stored(empty_db: tuple[str, sa.Engine]) -> None:
    url, engine = empty_db
    command = (
        "wgharness run l.toml --store postgresql://u:s3cret@db.example/wgh --store=mysql://me:pw%40x@h/d"
    )
    lab = '[hosts.a]\ntarget = "ssh"\nurl = "ssh://root:hunter2@10.0.0.1"\n'
    with Store.open(url) as store:
        store.begin_run(replace(make_run("p00000000000"), command=command, lab_text=lab))
        run = store.get_run("p00000000000").run
    assert "s3cret" not in run.command and "pw%40x" not in run.command and "hunter2" not in run.lab_text
    assert "postgresql://u:***@db.example/wgh" in run.command and "mysql://me:***@h/d" in run.command
    with engine.connect() as conn:
        raw = " ".join(str(v) for v in conn.execute(sa.text("SELECT command, lab_text FROM runs")).one())
    assert "s3cret" not in raw and "hunter2" not in raw
    assert mask_passwords("sqlite:///results/x.db ssh://a@b") == "sqlite:///results/x.db ssh://a@b"


def test_keys_a_lab_file_holds_are_not_stored(empty_db: tuple[str, sa.Engine]) -> None:
    url, engine = empty_db
    key, other = generate_private_key(), generate_private_key()
    lab = f'[[tunnel.ends]]\nprivate_key = "{key}"\n[[tunnel.ends]]\nprivate_key = """ {other}"""\n'
    with Store.open(url) as store:
        store.begin_run(replace(make_run("k00000000000"), lab_text=lab))
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT lab_text FROM runs")).scalar_one()
    assert key not in stored and other not in stored and stored.count('"(redacted)') == 1
