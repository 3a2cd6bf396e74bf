"""The test PostgreSQL that scripts/postgres.sh starts on loopback."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from harness.results.store import metadata


def fresh_postgres() -> str:
    """Its URL, with every wgharness table dropped first. Without
    WGH_TEST_POSTGRES_URL the test is skipped, or failed where
    WGH_REQUIRE_INTEGRATION=1 says every prerequisite is installed."""
    url = os.environ.get("WGH_TEST_POSTGRES_URL")
    if not url:
        reason = "WGH_TEST_POSTGRES_URL is not set (scripts/postgres.sh prints one)"
        if os.environ.get("WGH_REQUIRE_INTEGRATION") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    engine = sa.create_engine(url)
    metadata.drop_all(engine)
    engine.dispose()
    return url


@contextlib.contextmanager
def own_schema() -> Iterator[tuple[str, sa.Engine]]:
    """The URL of a fresh, empty schema of the test database (its own search path,
    so nothing another test leaves in ``public`` is seen) and an engine on it for
    the test's own statements; the schema is dropped afterwards."""
    base = fresh_postgres()
    name = f"wgh_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {name}")
    url = make_url(base).update_query_dict({"options": f"-csearch_path={name}"})
    engine = sa.create_engine(url)
    try:
        yield url.render_as_string(hide_password=False), engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
        admin.dispose()


@contextlib.contextmanager
def own_fleet() -> Iterator[str]:
    """The URL of a store in a fresh schema of its own (`own_schema`); the schema
    its fleet's queue made beside it is dropped afterwards too."""
    from harness.fleet.postgres import queue_place

    with own_schema() as (url, engine):
        try:
            yield url
        finally:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {queue_place(url).schema} CASCADE")
