"""Fixtures of the results tests: a store URL of each kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.postgres import fresh_postgres


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLite file that does not exist yet, and the test PostgreSQL emptied
    (skipped without WGH_TEST_POSTGRES_URL: `fresh_postgres`)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sub' / 'runs.db'}"
    return fresh_postgres()
