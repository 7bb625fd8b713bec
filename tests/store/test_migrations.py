"""Alembic migrations behind init_db: fresh databases, first-release databases, reruns, concurrent starts; on a
SQLite file and on a real PostgreSQL server (its advisory lock serialises replicas starting at once)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text

from backend.config import REPO_ROOT
from backend.store import migrate
from backend.store.schema import Base, init_db, make_engine
from backend.store.sessions import SessionStore

pytestmark = pytest.mark.fast

ROUND1_SCHEMA = Path(__file__).parent / "assets" / "round1_schema.sql"

CHILD = """
import logging, sys
from backend.store.schema import init_db, make_engine

logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s|%(message)s")
engine = make_engine(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
init_db(engine)
print("done", flush=True)
"""


def _engine(path: Path) -> Engine:
    return make_engine(f"sqlite:///{path}")


def _ddl(engine: Engine) -> list[str]:
    """The schema as the database itself describes it (SQLite: its CREATE statements; PostgreSQL: columns and
    index definitions from the catalogue)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return list(conn.execute(text("SELECT sql FROM sqlite_master ORDER BY rowid")).scalars())
        columns = conn.execute(
            text(
                "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable"
                " FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
            )
        ).scalars()
        indexes = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname")
        ).scalars()
        return [*columns, *indexes]


def _version_rows(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def _round1_database(path: Path) -> None:
    """A SQLite file as the first release left it: its create_all DDL, one session, two turns."""
    with sqlite3.connect(path) as db:
        db.executescript(ROUND1_SCHEMA.read_text())
        db.execute(
            "INSERT INTO sessions (id, owner, title, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            ("old-session", "alice", "Career", "2026-01-02 10:00:00.000000", "2026-01-02 10:01:00.000000"),
        )
        db.executemany(
            "INSERT INTO turns (session_id, role, text, emotion, timings, duration_s, interrupted, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    "old-session",
                    "user",
                    "Should I switch jobs?",
                    json.dumps({"label": "anxious"}),
                    None,
                    2.5,
                    0,
                    "2026-01-02 10:00:30.000000",
                ),
                (
                    "old-session",
                    "assistant",
                    "What pulls you away?",
                    None,
                    json.dumps({"llm_s": 0.4}),
                    None,
                    1,
                    "2026-01-02 10:01:00.000000",
                ),
            ],
        )
    db.close()


def test_fresh_database_reaches_head_and_matches_models(db_url: str) -> None:
    """A new database is migrated to head, and alembic's compare_metadata finds no difference between the
    migrated schema and Base.metadata, so the migrations and the models cannot drift apart."""
    engine = make_engine(db_url)
    assert migrate.current_revision(engine) is None
    init_db(engine)
    try:
        head = migrate.head_revision()
        assert head is not None and migrate.current_revision(engine) == head
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        engine.dispose()


def test_baseline_revision_creates_the_round1_schema_exactly() -> None:
    """Revision 0001 emits the same CREATE statements as the first release's create_all (the fixture), and
    BASELINE_TABLES names exactly the tables it creates."""
    scratch = create_engine("sqlite://")
    try:
        with scratch.begin() as conn:
            command.upgrade(migrate.alembic_config(conn), migrate.BASELINE_REVISION)
            assert set(inspect(conn).get_table_names()) - {"alembic_version"} == migrate.BASELINE_TABLES
            ddl = conn.execute(
                text(
                    "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND tbl_name != 'alembic_version'"
                    " ORDER BY rowid"
                )
            ).scalars()
            migrated = [f"{statement};" for statement in ddl]
    finally:
        scratch.dispose()
    fixture = "\n".join(line for line in ROUND1_SCHEMA.read_text().splitlines() if not line.startswith("--"))
    statements = [s.strip() + ";" for s in fixture.split(";") if s.strip()]
    assert migrated == statements


def test_round1_database_upgrades_in_place(tmp_path: Path) -> None:
    """A database made by the first release (create_all, no alembic_version) is stamped and upgraded with its
    rows kept; alembic_version is at head, and the store reads the old turns and adds a new one."""
    path = tmp_path / "round1.db"
    _round1_database(path)
    engine = _engine(path)
    init_db(engine)
    assert _version_rows(engine) == [migrate.head_revision()]

    store = SessionStore(engine)
    try:
        session = store.get_session("old-session", owner="alice")
        assert session.title == "Career" and session.turn_count == 2
        store.add_turn("old-session", "user", "I think so.", emotion={"label": "calm"})
        history = store.history("old-session")
        assert [(t.role, t.text) for t in history] == [
            ("user", "Should I switch jobs?"),
            ("assistant", "What pulls you away?"),
            ("user", "I think so."),
        ]
        assert history[0].emotion == {"label": "anxious"} and history[0].duration_s == 2.5
        assert history[1].interrupted is True and history[1].timings == {"llm_s": 0.4}
        assert history[0].created_at.isoformat() == "2026-01-02T10:00:30+00:00"
    finally:
        store.close()


def test_first_release_postgresql_database_upgrades_in_place(pg_url: str) -> None:
    """A PostgreSQL database as the first release left it (its create_all tables = revision 0001, with no
    alembic_version) is checked, stamped and upgraded with its rows kept; the store reads them and adds more."""
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        command.upgrade(migrate.alembic_config(conn), migrate.BASELINE_REVISION)
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(
            text(
                "INSERT INTO sessions (id, owner, title, created_at, updated_at)"
                " VALUES ('old-session', 'alice', 'Career', '2026-01-02 10:00:00+00', '2026-01-02 10:01:00+00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO turns (session_id, role, text, emotion, duration_s, interrupted, created_at) VALUES"
                " ('old-session', 'user', 'Should I switch jobs?', '{\"label\": \"anxious\"}', 2.5, false,"
                " '2026-01-02 10:00:30+00')"
            )
        )
    init_db(engine)
    assert _version_rows(engine) == [migrate.head_revision()]
    store = SessionStore(engine)
    try:
        assert store.get_session("old-session", owner="alice").turn_count == 1
        store.add_turn("old-session", "assistant", "What pulls you away?")
        history = store.history("old-session")
        assert [(t.role, t.text) for t in history] == [
            ("user", "Should I switch jobs?"),
            ("assistant", "What pulls you away?"),
        ]
        assert history[0].emotion == {"label": "anxious"} and history[0].created_at.isoformat() == (
            "2026-01-02T10:00:30+00:00"
        )
    finally:
        store.close()


def test_unversioned_tables_that_differ_are_refused(db_url: str) -> None:
    """Unversioned tables that do not match revision 0001 raise SchemaMismatchError and are left as they
    were: no alembic_version table, nothing stamped or created."""
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE sessions (id TEXT PRIMARY KEY, name TEXT)"))
    try:
        with pytest.raises(migrate.SchemaMismatchError):
            init_db(engine)
        assert set(inspect(engine).get_table_names()) == {"sessions"}
    finally:
        engine.dispose()


def test_init_db_twice_is_a_noop(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """A second init_db on a database at head changes nothing: same revision (one row), same DDL, same rows,
    and it logs "database schema up to date" instead of "database migrated"."""
    engine = make_engine(db_url)
    try:
        init_db(engine)
        store = SessionStore(engine)
        sid = store.create_session(title="kept").id

        def snapshot() -> tuple[list[str], list[str], int]:
            return _ddl(engine), _version_rows(engine), store.count()

        before = snapshot()
        caplog.set_level("INFO", logger="backend.store.migrate")
        caplog.clear()
        init_db(engine)
        assert snapshot() == before
        assert [r.getMessage() for r in caplog.records if r.name == "backend.store.migrate"] == [
            "database schema up to date"
        ]
        assert store.get_session(sid).title == "kept"
    finally:
        engine.dispose()


def test_two_processes_initialize_one_new_database_at_once(db_url: str) -> None:
    """Two fresh interpreters (two replicas starting together) released at once run init_db on the same new
    database: both succeed, exactly one migrates (creates the schema) and the other finds it at head, thanks to
    SQLite's write lock or PostgreSQL's advisory lock."""
    url = db_url
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=env,
            text=True,
        )
        for _ in range(2)
    ]
    outputs: list[str] = []
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        for child in children:
            out, _ = child.communicate(timeout=60)
            outputs.append(out)
            assert child.returncode == 0, out
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    lines = "".join(outputs).splitlines()
    assert lines.count("backend.store.migrate|database migrated") == 1, outputs
    assert lines.count("backend.store.migrate|database schema up to date") == 1, outputs
    engine = make_engine(url)
    try:
        assert _version_rows(engine) == [migrate.head_revision()]
        assert set(inspect(engine).get_table_names()) >= migrate.BASELINE_TABLES
    finally:
        engine.dispose()


def test_two_threads_initialize_one_new_database_at_once(db_url: str) -> None:
    """Two threads with their own engines run init_db on the same new database at once: both succeed
    (alembic's process-wide context is used by one at a time) and the schema is at head with one version row."""
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def start() -> None:
        engine = make_engine(db_url)
        try:
            barrier.wait()
            init_db(engine)
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    engine = make_engine(db_url)
    try:
        assert _version_rows(engine) == [migrate.head_revision()]
    finally:
        engine.dispose()
