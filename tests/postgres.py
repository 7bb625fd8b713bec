"""A real PostgreSQL server for tests, started by the test run itself (a pytest plugin, see tests/conftest.py).

Debian's ``postgresql`` binaries (``scripts/setup.sh --dev`` installs the package): ``initdb`` into a temporary
directory as a non-root user (PostgreSQL refuses to run as root; under root the Debian ``postgres`` user runs
it), ``pg_ctl start`` on 127.0.0.1 and a free port, with trust authentication for local test connections only.
It starts the first time a test asks for it and is stopped, and its directory removed, when the session ends.

Fixtures: ``postgres`` (the server, session scope) and ``pg_url`` (a fresh, empty database per test, dropped
afterwards; a SQLAlchemy URL with the psycopg 3 driver).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SUPERUSER = "postgres"  # the database superuser initdb creates (not an OS user)
_START_TIMEOUT_S = 60


def _bin_dir() -> Path:
    """The newest installed PostgreSQL's bin folder (Debian keeps pg_ctl out of PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    raise RuntimeError("PostgreSQL is not installed: run scripts/setup.sh --dev (apt-get install postgresql)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    """One running PostgreSQL cluster in ``datadir``, on 127.0.0.1:``port``."""

    bindir: Path
    datadir: Path
    port: int
    os_user: str | None  # the user it runs as when this process is root; None = this process's user

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = _START_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        if self.os_user is not None:
            entry = pwd.getpwnam(self.os_user)
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"},
            cwd=self.datadir.parent,
            **kwargs,
        )

    def start(self) -> None:
        pgdata = self.datadir / "data"
        done = self._run("initdb", "-D", str(pgdata), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()}")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.datadir} -c max_connections=200"
        log = self.datadir / "postgres.log"
        started = self._run("pg_ctl", "-D", str(pgdata), "-o", options, "-l", str(log), "-w", "-t", "60", "start")
        if started.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {started.stderr.strip()} {tail}")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.datadir / "data"), "-m", "fast", "-w", "stop")

    def admin(self, sql: str) -> None:
        """Run one statement on the maintenance database, outside a transaction (CREATE/DROP DATABASE)."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres", autocommit=True) as c:
            c.execute(sql)

    def create_database(self) -> str:
        """A new empty database; returns its name."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self.admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_postgres() -> PostgresServer:
    """Initialise and start a throwaway cluster (as ``postgres`` when root); the caller stops it."""
    os_user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("running as root and no 'postgres' user exists to run PostgreSQL") from None
        os_user = "postgres"
    datadir = Path(tempfile.mkdtemp(prefix="cm-pg-"))
    if os_user is not None:
        entry = pwd.getpwnam(os_user)
        os.chown(datadir, entry.pw_uid, entry.pw_gid)
    last: Exception | None = None
    for _ in range(3):  # a free port can be taken between choosing it and binding it
        server = PostgresServer(_bin_dir(), datadir, _free_port(), os_user)
        try:
            server.start()
            return server
        except RuntimeError as exc:
            last = exc
            server.stop()
            shutil.rmtree(datadir / "data", ignore_errors=True)
    shutil.rmtree(datadir, ignore_errors=True)
    raise RuntimeError(f"PostgreSQL did not start: {last}")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole test session, stopped and removed at the end."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.datadir, ignore_errors=True)


@pytest.fixture
def pg_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh empty database on the session's PostgreSQL server (SQLAlchemy URL), dropped after the test."""
    name = postgres.create_database()
    try:
        yield postgres.url(name)
    finally:
        postgres.drop_database(name)
