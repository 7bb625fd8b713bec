"""Store tests run on both databases the server supports: a SQLite file and a real PostgreSQL server (started
by the test run, see tests/postgres.py). ``db_url`` is parametrized over both; SQLite-only checks (WAL pragmas,
file paths, the round-1 SQLite file) use ``sqlite_path`` instead."""

from __future__ import annotations

from pathlib import Path

import pytest

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "store.db"


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, sqlite_path: Path) -> str:
    """A fresh empty database: a new SQLite file, or a new database on the test run's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{sqlite_path}"
    url: str = request.getfixturevalue("pg_url")
    return url
