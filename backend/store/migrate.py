"""Schema migrations: Alembic configured in code, run to head under a database-wide lock.

PostgreSQL: the upgrade runs in one transaction holding ``pg_advisory_xact_lock``; SQLite: in one
``BEGIN IMMEDIATE`` transaction (the write lock). So replicas or processes starting at once migrate one after
the other, and the later ones find the schema at head. A database made by the first release (tables from
``create_all``, no ``alembic_version``) is checked against revision 0001, stamped, then upgraded in place.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, inspect, text

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
BASELINE_REVISION = "0001"
# The tables revision 0001 creates (a released revision never changes, so neither does this).
BASELINE_TABLES = frozenset({"sessions", "turns"})
# Fixed key of the PostgreSQL advisory lock that serializes migrations ("ClarityM" as a signed 64-bit int).
PG_LOCK_KEY = int.from_bytes(b"ClarityM", "big", signed=True)
_VERSION_TABLE = "alembic_version"
# Alembic's ``context`` and ``op`` are process-wide proxies: one migration at a time per process.
_process_lock = threading.Lock()


class SchemaMismatchError(RuntimeError):
    """Unversioned tables exist but do not match revision 0001; they are left untouched."""


def alembic_config(connection: Connection) -> Config:
    """An Alembic config for this package's migrations on ``connection`` (no ini file, no logging setup)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    """The newest revision in the migration scripts."""
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None when it has no ``alembic_version`` table (or an empty one)."""
    with engine.connect() as connection:
        return _revision(connection)


def _shape(connection: Connection, tables: set[str]) -> dict[str, Any]:
    """Names, nullability, keys, indexes and checks of ``tables`` (types are left out: they vary by dialect)."""
    inspector = inspect(connection)
    shape: dict[str, Any] = {}
    for table in sorted(tables & set(inspector.get_table_names())):
        shape[table] = (
            sorted((c["name"], c["nullable"]) for c in inspector.get_columns(table)),
            sorted(inspector.get_pk_constraint(table)["constrained_columns"]),
            sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)),
            sorted(
                (
                    tuple(f["constrained_columns"]),
                    f["referred_table"],
                    tuple(f["referred_columns"]),
                    str(f["options"].get("ondelete", "")).upper(),
                )
                for f in inspector.get_foreign_keys(table)
            ),
            sorted(str(c["name"]) for c in inspector.get_check_constraints(table)),
        )
    return shape


def _baseline_shape() -> dict[str, Any]:
    """The shape revision 0001 creates, built on a scratch in-memory SQLite database."""
    scratch = create_engine("sqlite://")
    try:
        with scratch.begin() as connection:
            command.upgrade(alembic_config(connection), BASELINE_REVISION)
            return _shape(connection, set(BASELINE_TABLES))
    finally:
        scratch.dispose()


def _adopt_unversioned(connection: Connection) -> None:
    """Stamp a first-release database (our tables, no ``alembic_version``) at 0001 if it matches it exactly."""
    existing = set(inspect(connection).get_table_names())
    if _VERSION_TABLE in existing or not existing & BASELINE_TABLES:
        return
    if _shape(connection, set(BASELINE_TABLES)) != _baseline_shape():
        raise SchemaMismatchError("unversioned tables do not match revision 0001; not migrating them")
    command.stamp(alembic_config(connection), BASELINE_REVISION)
    logger.info(
        "unversioned database stamped", extra={"backend": connection.dialect.name, "revision": BASELINE_REVISION}
    )


def _lock(connection: Connection) -> None:
    """Take the database-wide migration lock; it is released when the transaction ends."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
    elif dialect == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def upgrade(engine: Engine) -> None:
    """Migrate the database to head in one locked transaction; a no-op when it is already there."""
    with _process_lock, engine.connect() as connection:
        _lock(connection)
        _adopt_unversioned(connection)
        before = _revision(connection)
        command.upgrade(alembic_config(connection), "head")
        after = _revision(connection)
        connection.commit()
    backend = engine.dialect.name
    if before == after:
        logger.info("database schema up to date", extra={"backend": backend, "revision": after})
    else:
        logger.info("database migrated", extra={"backend": backend, "from_revision": before, "to_revision": after})
