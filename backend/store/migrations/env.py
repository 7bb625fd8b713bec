"""Alembic environment: migrates the connection that backend.store.migrate passes in ``config.attributes``.

Online only, inside the caller's transaction (the caller holds the lock and commits). No logging config.
"""

from __future__ import annotations

from alembic import context

from backend.store.schema import Base


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through backend.store.migrate, which passes a connection")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
