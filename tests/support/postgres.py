"""The test PostgreSQL that scripts/postgres.sh starts on loopback."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

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
