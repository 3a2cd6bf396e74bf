"""Where the queue lives: the store's PostgreSQL database, in a schema of its own.

The store is a SQLAlchemy URL (``postgresql://`` or ``postgresql+psycopg://``);
procrastinate's connector takes a libpq conninfo. `queue_place` turns the one into
the other, with a search path naming the queue's schema: ``wgharness_queue``, or
``<store schema>_queue`` when the store's URL sets a search path of its own
(``?options=-csearch_path=team``), so two stores in one database have two queues.
procrastinate's tables never mix with the store's.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass

from harness.errors import StoreError, UsageError

DEFAULT_SCHEMA = "wgharness_queue"
_SEARCH_PATH = re.compile(r"-c\s*search_path\s*=\s*([^\s,]+)")
_SCHEMA_LOCK = 0x776768_66  # an advisory lock key: one process makes the schema at a time


@dataclass(frozen=True)
class Queue:
    conninfo: str
    """libpq's key=value form, with ``options=-csearch_path=SCHEMA``."""
    schema: str
    shown: str
    """The store's URL without its password, for messages."""

    async def prepare(self, also: Callable[[], None]) -> None:
        """Make the schema and apply procrastinate's tables to it, once, then call
        ``also`` (in a thread), all under a lock: other processes starting at the same
        moment wait for the first. A database that cannot be reached is a `StoreError`
        within seconds."""
        import psycopg
        from procrastinate.schema import SchemaManager
        from psycopg import sql

        try:
            conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"store {self.shown}: {reason(exc)}") from None
        async with conn:
            await conn.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK,))
            try:
                await conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
                )
                cur = await conn.execute("SELECT to_regclass(%s)", (f"{self.schema}.procrastinate_jobs",))
                row = await cur.fetchone()
                if row is None or row[0] is None:
                    await conn.execute(SchemaManager.get_schema())  # no parameters: its % stay as they are
                await asyncio.to_thread(also)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))


def reason(exc: BaseException) -> str:
    """The first line of what the database (or the queue) said."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def queue_place(store_url: str | None) -> Queue:
    """The queue of the store at ``store_url``: a `UsageError` unless it is PostgreSQL."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    if not store_url:
        raise UsageError("--store: a fleet needs PostgreSQL: give --store postgresql://USER:PASSWORD@HOST/DB")
    try:
        url = make_url(store_url)
    except sa.exc.ArgumentError:
        raise UsageError(
            f"--store {store_url}: not a database URL (e.g. postgresql://user:pw@host/db)"
        ) from None
    shown = url.render_as_string(hide_password=True)
    if url.drivername not in ("postgresql", "postgresql+psycopg"):
        raise UsageError(
            f"--store {shown}: a fleet needs PostgreSQL (its workers share the store and the queue): "
            "postgresql://USER:PASSWORD@HOST/DB"
        )
    if not url.database:
        raise UsageError(f"--store {shown}: name the database (postgresql://USER:PASSWORD@HOST/DB)")
    query = {k: v if isinstance(v, str) else v[-1] for k, v in url.query.items()}
    options = query.pop("options", "")
    found = _SEARCH_PATH.search(options)
    schema = f"{found.group(1)}_queue" if found else DEFAULT_SCHEMA
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", schema):
        raise UsageError(f"--store {shown}: search path {schema!r}: a schema name of letters, digits and '_'")
    options = (_SEARCH_PATH.sub("", options).strip() + f" -csearch_path={schema}").strip()
    parts = {"host": url.host, "port": url.port, "user": url.username, "password": url.password,
             "dbname": url.database, **query, "options": options}  # fmt: skip
    conninfo = " ".join(f"{k}={_quote(str(v))}" for k, v in parts.items() if v is not None)
    return Queue(conninfo, schema, shown)
