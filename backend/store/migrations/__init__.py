"""Alembic migrations of the session store, run by backend.store.migrate (no alembic.ini)."""
