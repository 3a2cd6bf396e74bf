"""The result store: every run with its metadata, measurements and raw outputs.

SQLAlchemy Core over portable types, so the embedded SQLite default and a
shared PostgreSQL use one code path. Every public write is one transaction:
nothing is ever half-written. The schema carries a version in `meta`; older
stores are upgraded on open, newer ones refused.

Raw outputs (iperf3 JSON, `wg show` dumps, logs) are kept in the database
itself, zlib-compressed, so a run is one consistent unit wherever it is stored.

Hostile or damaged databases (docs/reliability.md): a database that holds tables
but no wgharness version row is refused before anything is written into it; a
command that only reads creates nothing; a database error or a row that does not
decode is a one-line `StoreError`. What is stored keeps no password (`mask_passwords`)
and no key a lab file holds (`harness.keys.redact_key_text`); a new SQLite file
is readable by its owner only, in folders the store makes owner-only.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import socket
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from harness.codec import from_json, to_json
from harness.errors import StoreError
from harness.keys import create_private, redact_key_text
from harness.procs import alive_since
from harness.results.records import (
    FINAL_STATUSES,
    TRUSTED_STATUSES,
    Direction,
    HostRecord,
    ImplRecord,
    Measurement,
    Overlap,
    RunDetails,
    RunRecord,
    RunStatus,
    RunSummary,
)

if TYPE_CHECKING:
    import pandas


def default_store_url() -> str:
    return "sqlite:///results/wgharness.db"


_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s/@]*(?=@)")


def mask_passwords(text: str) -> str:
    """``text`` with the password of every URL in it (``scheme://user:password@host``)
    shown as ``***``, as SQLAlchemy shows a URL's."""
    return _URL_PASSWORD.sub(r"\1***", text)


# -- schema --------------------------------------------------------------------
metadata = sa.MetaData()
meta_t = sa.Table(
    "meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(255), nullable=False),
)  # fmt: skip
runs_t = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("lab_name", sa.String(64), nullable=False),
    sa.Column("lab_path", sa.Text, nullable=False),
    sa.Column("lab_sha256", sa.String(64), nullable=False),
    sa.Column("lab_text", sa.Text, nullable=False),
    sa.Column("build", sa.String(255)),
    sa.Column("harness_version", sa.String(64), nullable=False),
    sa.Column("command", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("hostname", sa.String(255), nullable=False),
    sa.Column("overlap", sa.Text),
    sa.Column("runner", sa.String(255)),
    sa.Column("job", sa.String(64), index=True),
)  # fmt: skip
hosts_t = sa.Table(
    "run_hosts", metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("host", sa.String(64), primary_key=True),
    sa.Column("impl", sa.String(64)),
    sa.Column("impl_version", sa.String(255)),
    sa.Column("build", sa.String(255)),
    sa.Column("facts", sa.Text, nullable=False),
)  # fmt: skip
measurements_t = sa.Table(
    "measurements", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("suite", sa.String(64), nullable=False),
    sa.Column("case_name", sa.String(64), nullable=False),
    sa.Column("repetition", sa.Integer, nullable=False),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("unit", sa.String(16), nullable=False),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("flow_direction", sa.String(16), nullable=False),
    sa.Column("test_id", sa.Text, nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("series", sa.Text),
    sa.Column("build", sa.String(255)),
)  # fmt: skip
artifacts_t = sa.Table(
    "artifacts", metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("content_type", sa.String(64), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
)  # fmt: skip


UPGRADES = (
    (2, "measurements", "build", "VARCHAR(255)"),
    (3, "runs", "overlap", "TEXT"),
    (4, "runs", "runner", "VARCHAR(255)"),
    (5, "runs", "job", "VARCHAR(64)"),
)
"""Each schema version's upgrade of an older store: (version, table, added column, its type)."""


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _overlap(text: str | None) -> Overlap | None:
    """A stored `Overlap`; None when none was stored or it is not one this version reads."""
    if not text:
        return None
    try:
        return from_json(text, Overlap)
    except ValueError:
        return None


def _sqlite_pragmas(engine: Engine, *, wal: bool) -> None:
    """WAL (``wal``: set by a store that writes; the file keeps it) and a busy timeout so
    concurrent writers wait instead of failing, and BEGIN IMMEDIATE so a read-then-write
    transaction cannot deadlock on upgrade."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 30000")
        if wal:
            cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _series(text: str) -> list[tuple[float, float]]:
    return [(float(a), float(b)) for a, b in json.loads(text)]


def _reason(exc: BaseException) -> str:
    """The first line of what a database or decoder said."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
_DAMAGED_ROW = (ValueError, TypeError, KeyError, IndexError, OverflowError, zlib.error)
"""What reading a hand-edited or damaged row can raise (a date that is none, say)."""


def _guarded(method: F, damaged: tuple[type[BaseException], ...]) -> F:
    @functools.wraps(method)
    def guarded(self: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except StoreError:
            raise
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"store {self.url}: {_reason(exc)}") from None
        except damaged as exc:
            raise StoreError(f"store {self.url}: a damaged row: {_reason(exc)}") from None

    return cast(F, guarded)


def _writes(method: F) -> F:
    """A write: a database error (a read-only or damaged file) is a one-line `StoreError`."""
    return _guarded(method, ())


def _reads(method: F) -> F:
    """A read: a database error or a row that does not decode is a one-line `StoreError`."""
    return _guarded(method, _DAMAGED_ROW)


class Store:
    SCHEMA_VERSION = 5
    """1: first. 2: measurements.build (runs that interleave variants). 3: runs.overlap
    (whether a run measured alone on its machine). 4: runs.runner. 5: runs.job (the
    fleet job that made the run, `harness.fleet`)."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url

    @classmethod
    def open(cls, url: str | None = None, *, create: bool = True) -> Store:
        """The store at ``url`` (the default's when None), its schema made or upgraded.
        ``create`` False (a command that only reads): a store that does not exist is a
        `StoreError` ("no store at ..."), and nothing is created: no file, folder or table.
        A database that holds tables but no wgharness version row is refused either way,
        before anything is written into it."""
        url = url or default_store_url()
        try:
            parsed = make_url(url)
        except sa.exc.ArgumentError:
            raise StoreError(
                f"store {url}: not a database URL (e.g. sqlite:///results/wgharness.db)"
            ) from None
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3, installed with the extra
        shown = parsed.render_as_string(hide_password=True)
        try:
            where = "this URL"  # a server's database: the URL says where
            if parsed.get_backend_name() == "sqlite":
                on_disk = bool(parsed.database) and parsed.database != ":memory:"
                where = str(parsed.database)
                if on_disk and not Path(where).exists():
                    if not create:
                        raise StoreError(f"store {shown}: no store at {where}")
                    with contextlib.suppress(FileExistsError):  # another process made it meanwhile
                        os.close(create_private(Path(where)))  # SQLite gives its WAL the same mode
                engine = sa.create_engine(parsed, connect_args={"timeout": 30})
                _sqlite_pragmas(engine, wal=create)
            else:
                engine = sa.create_engine(parsed, pool_pre_ping=True)
            store = cls(engine, shown)
            store._migrate(create, where)
        except StoreError:
            raise
        except (sa.exc.SQLAlchemyError, OSError, ImportError) as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise StoreError(f"store {shown}: {reason}") from None
        return store

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self, create: bool, where: str) -> None:
        """Make the schema of an empty database (``create``), or check and upgrade a
        wgharness store's; anything else is refused before a write."""
        with self.engine.begin() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            if not tables:
                if not create:
                    raise StoreError(f"store {self.url}: no store at {where} (the database holds no table)")
                metadata.create_all(conn)
                conn.execute(meta_t.insert().values(key="schema_version", value=str(self.SCHEMA_VERSION)))
                return
            version = self._version(conn, tables)
            if version <= self.SCHEMA_VERSION:
                metadata.create_all(conn)  # a table a later version added
        if version > self.SCHEMA_VERSION:
            raise StoreError(
                f"store {self.url}: schema version {version} is newer than this harness "
                f"supports ({self.SCHEMA_VERSION}); upgrade wgharness"
            )
        for to, table, column, kind in UPGRADES:
            if version < to:
                with self.engine.begin() as conn:
                    if column not in {c["name"] for c in sa.inspect(conn).get_columns(table)}:
                        conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))
                    conn.execute(
                        meta_t.update().where(meta_t.c.key == "schema_version").values(value=str(to))
                    )

    def _version(self, conn: sa.Connection, tables: set[str]) -> int:
        """The schema version of a database that holds ``tables``; StoreError if it is no
        wgharness store (another program's, or one whose version row is gone)."""
        columns = {c["name"] for c in sa.inspect(conn).get_columns("meta")} if "meta" in tables else set()
        if not {"key", "value"} <= columns:
            shown = ", ".join(sorted(tables)[:6])
            raise StoreError(
                f"store {self.url}: not a wgharness store (it holds {shown} and no wgharness meta "
                "table): refusing to write into it; give wgharness a database of its own"
            )
        row = conn.execute(sa.select(meta_t.c.value).where(meta_t.c.key == "schema_version")).first()
        if row is None:
            raise StoreError(
                f"store {self.url}: no schema version in its meta table (a damaged store, or "
                "another program's): refusing it rather than stamping a version on it"
            )
        text = str(row[0])
        if not re.fullmatch(r"[0-9]{1,9}", text):
            raise StoreError(
                f"store {self.url}: schema version {text!r} is not a whole number: a damaged store"
            )
        return int(text)

    def _decoded(self, run_id: str, field: str, parse: Callable[[Any], T], value: Any) -> T:
        """``parse(value)`` of a stored field; a value that does not read is a `StoreError`
        naming the run and the field (a hand-edited or damaged row)."""
        try:
            return parse(value)
        except (ValueError, TypeError, zlib.error) as exc:
            raise StoreError(f"store {self.url}: run {run_id}: {field} does not read: {exc}") from None

    # -- writes ------------------------------------------------------------------
    @_writes
    def begin_run(self, run: RunRecord) -> None:
        """Store ``run`` as running: its command and lab text without passwords or keys."""
        with self.engine.begin() as conn:
            conn.execute(
                runs_t.insert().values(
                    id=run.id,
                    started_at=run.started_at,
                    status=RunStatus.RUNNING.value,
                    lab_name=run.lab_name,
                    lab_path=run.lab_path,
                    lab_sha256=run.lab_sha256,
                    lab_text=redact_key_text(mask_passwords(run.lab_text)),
                    build=run.build,
                    harness_version=run.harness_version,
                    command=mask_passwords(run.command),
                    pid=run.pid,
                    hostname=run.hostname,
                    runner=run.runner,
                    job=run.job,
                )  # fmt: skip
            )

    @_writes
    def add_hosts(self, run_id: str, hosts: Sequence[HostRecord]) -> None:
        with self.engine.begin() as conn:
            for h in hosts:
                conn.execute(
                    hosts_t.insert().values(
                        run_id=run_id,
                        host=h.host,
                        impl=None if h.impl is None else str(h.impl),
                        impl_version=h.impl_version,
                        build=h.build,
                        facts=json.dumps(h.facts, sort_keys=True),
                    )  # fmt: skip
                )

    @_writes
    def add_measurements(self, run_id: str, ms: Sequence[Measurement]) -> None:
        if not ms:
            return
        rows = [
            dict(
                run_id=run_id,
                suite=m.suite,
                case_name=m.case,
                repetition=m.repetition,
                metric=m.metric,
                value=float(m.value),
                unit=m.unit,
                direction=str(m.direction),
                flow_direction=str(m.flow_direction),
                test_id=m.test_id,
                build=m.build,
                params=json.dumps(m.params, sort_keys=True),
                series=json.dumps(m.series) if m.series is not None else None,
            )  # fmt: skip
            for m in ms
        ]
        with self.engine.begin() as conn:
            conn.execute(measurements_t.insert(), rows)

    @_writes
    def add_artifact(self, run_id: str, name: str, data: bytes, content_type: str = "text/plain") -> None:
        with self.engine.begin() as conn:
            exists = conn.execute(
                sa.select(artifacts_t.c.name).where(
                    artifacts_t.c.run_id == run_id, artifacts_t.c.name == name
                )
            ).first()
            if exists:
                raise StoreError(f"store {self.url}: run {run_id} already has an artifact {name!r}")
            conn.execute(
                artifacts_t.insert().values(
                    run_id=run_id,
                    name=name,
                    content_type=content_type,
                    size=len(data),
                    sha256=hashlib.sha256(data).hexdigest(),
                    data=zlib.compress(data, 6),
                )  # fmt: skip
            )

    @_writes
    def finish_run(
        self,
        run_id: str,
        status: RunStatus | str,
        error: str | None = None,
        finished_at: datetime | None = None,
    ) -> None:
        """Finish run ``run_id`` with ``status``: one of `FINAL_STATUSES` (or its text)."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"a run cannot finish as {str(status)!r}")
        with self.engine.begin() as conn:
            conn.execute(
                runs_t.update()
                .where(runs_t.c.id == run_id)
                .values(
                    status=RunStatus(status).value,
                    error=None if error is None else mask_passwords(error),
                    finished_at=finished_at or datetime.now(UTC),
                )
            )

    @_writes
    def set_overlap(self, run_id: str, overlap: Overlap) -> None:
        """Store whether run ``run_id`` measured alone (once its measured phase has ended)."""
        with self.engine.begin() as conn:
            conn.execute(runs_t.update().where(runs_t.c.id == run_id).values(overlap=to_json(overlap)))

    # -- reads ---------------------------------------------------------------------
    @_reads
    def resolve(self, run_ref: str) -> str:
        with self.engine.connect() as conn:
            if run_ref == "latest":
                row = conn.execute(
                    sa.select(runs_t.c.id).order_by(runs_t.c.started_at.desc()).limit(1)
                ).first()
                if row is None:
                    raise StoreError(f"store {self.url}: no runs stored")
                return str(row[0])
            ids = [
                r[0]
                for r in conn.execute(
                    sa.select(runs_t.c.id)
                    .where(runs_t.c.id.startswith(run_ref.lower(), autoescape=True))
                    .limit(2)
                )
            ]
        if not ids or not run_ref:
            raise StoreError(f"store {self.url}: no run {run_ref!r}")
        if len(ids) > 1:
            raise StoreError(f"store {self.url}: run {run_ref!r} is ambiguous: give more characters")
        return str(ids[0])

    def _summaries(self, conn: sa.Connection, where: Any, limit: int | None) -> list[RunSummary]:
        counts = (
            sa.select(measurements_t.c.run_id, sa.func.count().label("n"))
            .group_by(measurements_t.c.run_id)
            .subquery()
        )
        query = (
            sa.select(runs_t, sa.func.coalesce(counts.c.n, 0).label("n"))
            .select_from(runs_t.outerjoin(counts, counts.c.run_id == runs_t.c.id))
            .order_by(runs_t.c.started_at.desc())
        )
        if where is not None:
            query = query.where(where)
        if limit is not None:
            query = query.limit(limit)
        rows = conn.execute(query).mappings().all()
        impls: dict[str, list[ImplRecord]] = {}
        ids = [r["id"] for r in rows]
        if ids:
            for h in conn.execute(
                sa.select(hosts_t).where(hosts_t.c.run_id.in_(ids)).order_by(hosts_t.c.host)
            ).mappings():
                if h["impl"]:
                    impls.setdefault(h["run_id"], []).append(
                        ImplRecord(h["host"], h["impl"], h["impl_version"], h["build"])
                    )
        here = socket.gethostname()
        out = []
        for r in rows:
            status = self._decoded(r["id"], "runs.status", RunStatus, r["status"])
            if (
                status is RunStatus.RUNNING
                and r["hostname"] == here
                and not alive_since(r["pid"], _utc(r["started_at"]))  # type: ignore[arg-type]
            ):
                status = RunStatus.ABORTED
            out.append(
                RunSummary(
                    id=r["id"],
                    started_at=_utc(r["started_at"]),  # type: ignore[arg-type]
                    finished_at=_utc(r["finished_at"]),
                    status=status,
                    lab_name=r["lab_name"],
                    build=r["build"],
                    impls=tuple(impls.get(r["id"], [])),
                    measurements=int(r["n"]),
                    error=r["error"],
                    overlap=_overlap(r["overlap"]),
                )  # fmt: skip
            )
        return out

    @_reads
    def list_runs(self, limit: int = 50) -> list[RunSummary]:
        with self.engine.connect() as conn:
            return self._summaries(conn, None, limit)

    @_reads
    def runs_of_lab(
        self, lab: str, statuses: Sequence[RunStatus] = TRUSTED_STATUSES, limit: int = 500
    ) -> list[RunSummary]:
        """The newest ``limit`` runs of lab ``lab`` that ended with one of ``statuses``
        (by default those with measurements to trust: passed or failed), newest first."""
        with self.engine.connect() as conn:
            where = sa.and_(
                runs_t.c.lab_name == lab, runs_t.c.status.in_([RunStatus(s).value for s in statuses])
            )
            return self._summaries(conn, where, limit)

    @_reads
    def runs_of_job(self, job: str) -> list[tuple[RunSummary, str | None]]:
        """Every run fleet job ``job`` made (one per attempt), newest first, each with
        its runner's name."""
        with self.engine.connect() as conn:
            runners = dict(
                conn.execute(sa.select(runs_t.c.id, runs_t.c.runner).where(runs_t.c.job == job)).all()
            )
            return [(s, runners.get(s.id)) for s in self._summaries(conn, runs_t.c.job == job, None)]

    @_reads
    def get_run(self, run_ref: str) -> RunDetails:
        run_id = self.resolve(run_ref)
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(runs_t).where(runs_t.c.id == run_id)).mappings().one()
            run = RunRecord(
                id=r["id"], started_at=_utc(r["started_at"]), lab_name=r["lab_name"],  # type: ignore[arg-type]
                lab_path=r["lab_path"], lab_sha256=r["lab_sha256"], lab_text=r["lab_text"], build=r["build"],
                harness_version=r["harness_version"], command=r["command"], pid=r["pid"], hostname=r["hostname"],
                runner=r["runner"], job=r["job"],
            )  # fmt: skip
            [summary] = self._summaries(conn, runs_t.c.id == run_id, None)
            hosts = [
                HostRecord(
                    h["host"],
                    h["impl"],
                    h["impl_version"],
                    h["build"],
                    self._decoded(run_id, f"run_hosts.facts of {h['host']}", _json_object, h["facts"]),
                )
                for h in conn.execute(
                    sa.select(hosts_t).where(hosts_t.c.run_id == run_id).order_by(hosts_t.c.host)
                ).mappings()
            ]
            ms = [
                Measurement(
                    suite=m["suite"],
                    case=m["case_name"],
                    repetition=m["repetition"],
                    metric=m["metric"],
                    value=m["value"],
                    unit=m["unit"],
                    direction=self._decoded(run_id, "measurements.direction", Direction, m["direction"]),
                    test_id=m["test_id"],
                    params=self._decoded(run_id, "measurements.params", _json_object, m["params"]),
                    series=self._decoded(run_id, "measurements.series", _series, m["series"])
                    if m["series"]
                    else None,
                    flow_direction=m["flow_direction"],
                    build=m["build"],
                )  # fmt: skip
                for m in conn.execute(
                    sa.select(measurements_t)
                    .where(measurements_t.c.run_id == run_id)
                    .order_by(measurements_t.c.id)
                ).mappings()
            ]
            names = [
                a[0]
                for a in conn.execute(
                    sa.select(artifacts_t.c.name)
                    .where(artifacts_t.c.run_id == run_id)
                    .order_by(artifacts_t.c.name)
                )
            ]
        return RunDetails(run, summary, hosts, ms, names)

    @_reads
    def measured_builds(self, run_id: str) -> set[str]:
        """Build labels carried by a run's measurements (runs that interleave variants)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(measurements_t.c.build)
                .where(measurements_t.c.run_id == run_id, measurements_t.c.build.is_not(None))
                .distinct()
            )
            return {r[0] for r in rows}

    @_reads
    def get_artifact(self, run_ref: str, name: str) -> bytes:
        run_id = self.resolve(run_ref)
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(artifacts_t.c.data).where(
                    artifacts_t.c.run_id == run_id, artifacts_t.c.name == name
                )
            ).first()
        if row is None:
            raise StoreError(f"store {self.url}: run {run_id} has no artifact {name!r}")
        return self._decoded(run_id, f"artifacts.data of {name!r}", zlib.decompress, row[0])

    @_reads
    def measurements_frame(self, run_ids: Sequence[str] | None = None) -> pandas.DataFrame:
        """One row per measured value with its run's metadata, case parameters
        (``param_*``) and each host's implementation (``impl_<host>``, ``impl_version_<host>``)."""
        import pandas as pd

        query = (
            sa.select(
                runs_t.c.id.label("run_id"),
                runs_t.c.started_at,
                runs_t.c.status,
                runs_t.c.lab_name,
                runs_t.c.lab_sha256,
                # The build measured: a variant's when the run interleaved variants.
                sa.func.coalesce(measurements_t.c.build, runs_t.c.build).label("build"),
                measurements_t.c.suite,
                measurements_t.c.case_name.label("case"),
                measurements_t.c.repetition,
                measurements_t.c.metric,
                measurements_t.c.value,
                measurements_t.c.unit,
                measurements_t.c.direction,
                measurements_t.c.flow_direction,
                measurements_t.c.test_id,
                measurements_t.c.params,
            )  # fmt: skip
            .select_from(measurements_t.join(runs_t, runs_t.c.id == measurements_t.c.run_id))
            .order_by(runs_t.c.started_at, measurements_t.c.id)
        )
        if run_ids is not None:
            query = query.where(runs_t.c.id.in_(list(run_ids)))
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
            host_rows = list(conn.execute(sa.select(hosts_t)).mappings())
        base = [
            "run_id", "started_at", "status", "lab_name", "lab_sha256", "build", "suite", "case",
            "repetition", "metric", "value", "unit", "direction", "flow_direction", "test_id",
        ]  # fmt: skip
        if not rows:
            return pd.DataFrame(columns=base)
        for row in rows:
            row["started_at"] = _utc(row["started_at"])
            params = self._decoded(row["run_id"], "measurements.params", _json_object, row.pop("params"))
            for k, v in params.items():
                row[f"param_{k}"] = v
        frame = pd.DataFrame(rows)
        wanted = set(frame["run_id"])
        impl: dict[str, dict[str, Any]] = {}
        for h in host_rows:
            if h["run_id"] in wanted:
                impl.setdefault(h["run_id"], {})[f"impl_{h['host']}"] = h["impl"]
                impl[h["run_id"]][f"impl_version_{h['host']}"] = h["impl_version"]
        if impl:
            extra = pd.DataFrame.from_dict(impl, orient="index")
            frame = frame.join(extra, on="run_id")
        return frame
