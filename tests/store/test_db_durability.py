"""kill -9 during writes: no acknowledged turn is lost, on SQLite (the file stays intact) and on PostgreSQL.

A child Python process (a fresh interpreter, no connection inherited across fork) adds turns in a loop and
prints each turn id only after ``add_turn`` has returned (committed). The parent kills it with SIGKILL after
reading a seeded random number of acknowledgements, while the child is in the middle of further writes.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys

import pytest
from sqlalchemy import text

from backend.config import REPO_ROOT
from backend.store.schema import init_db, make_engine
from backend.store.sessions import SessionStore

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

ROUNDS = 8
SEED = 20260521

CHILD = """
import sys
from backend.store.schema import init_db, make_engine
from backend.store.sessions import SessionStore

engine = make_engine(sys.argv[1])
init_db(engine)
store = SessionStore(engine)
session_id = sys.argv[2]
print("ready", flush=True)
n = 0
while True:
    n += 1
    turn = store.add_turn(
        session_id, "user" if n % 2 else "assistant", "words " * 40,
        emotion={"label": "calm", "n": n}, timings={"llm_s": 0.5},
    )
    print(turn.id, flush=True)
"""


def _run_and_kill(url: str, session_id: str, kill_after: int) -> list[int]:
    """Start the writer, SIGKILL it after ``kill_after`` acks, return every id it acknowledged."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, session_id],
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
        env=env,
        text=True,
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline() == "ready\n"
        acked: list[int] = []
        while len(acked) < kill_after:
            line = child.stdout.readline()
            assert line.endswith("\n"), "writer died before it was killed"
            acked.append(int(line))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        # Acks already in the pipe were printed after their commit returned: they count too. A line cut
        # by the kill (no newline) was never acknowledged.
        acked.extend(int(line) for line in child.stdout.read().splitlines(keepends=True) if line.endswith("\n"))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    return acked


def test_kill_9_loses_no_acknowledged_turn(db_url: str) -> None:
    """After 8 SIGKILLs of the writer at random points of a write loop, every printed turn id is in the table,
    the database still accepts writes, and (SQLite) integrity_check is ok."""
    url = db_url
    setup_engine = make_engine(url)
    init_db(setup_engine)
    setup = SessionStore(setup_engine)
    session_id = setup.create_session(title="durability").id
    setup.close()

    rng = random.Random(SEED)
    acked: list[int] = []
    for _ in range(ROUNDS):
        acked.extend(_run_and_kill(url, session_id, kill_after=rng.randint(5, 120)))

    engine = make_engine(url)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        stored = set(conn.execute(text("SELECT id FROM turns")).scalars())
    store = SessionStore(engine)
    try:
        lost = sorted(set(acked) - stored)
        assert lost == [], f"{len(lost)} acknowledged turns lost"
        assert len(acked) >= ROUNDS * 5
        store.add_turn(session_id, "user", "after the crashes")
        assert store.get_session(session_id).turn_count == len(stored) + 1
    finally:
        store.close()
