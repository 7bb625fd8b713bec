"""SessionStore on a real SQLite file and a real PostgreSQL server: CRUD, ownership, history, restart,
concurrency (threads and processes), JSON, updates; WAL and paths on SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest
from sqlalchemy import text

from backend.config import REPO_ROOT
from backend.core.exceptions import InvalidInputError, SessionNotFoundError
from backend.store.records import HistoryTurn
from backend.store.schema import init_db, make_engine
from backend.store.sessions import SessionStore

pytestmark = pytest.mark.fast


def _open(url: str) -> SessionStore:
    engine = make_engine(url)
    init_db(engine)
    return SessionStore(engine)


@pytest.fixture
def store(db_url: str) -> Iterator[SessionStore]:
    s = _open(db_url)
    yield s
    s.close()


def test_create_get_list_delete(store: SessionStore) -> None:
    """A created session can be read back, listed newest first, counted and deleted."""
    first = store.create_session(title="  Career  ")
    second = store.create_session()
    assert first.title == "Career" and second.title is None
    assert first.turn_count == 0 and first.created_at.tzinfo is UTC
    got = store.get_session(first.id)
    assert got == first
    assert [s.id for s in store.list_sessions()] == [second.id, first.id]
    assert [s.id for s in store.list_sessions(limit=1)] == [second.id]
    assert store.count() == 2
    store.delete_session(first.id)
    with pytest.raises(SessionNotFoundError):
        store.get_session(first.id)
    with pytest.raises(SessionNotFoundError):
        store.delete_session(first.id)
    assert store.count() == 1


def test_given_session_id_is_validated_and_idempotent(store: SessionStore) -> None:
    """A client-chosen id must match the pattern; re-creating it returns the same session for its owner and
    is refused for another owner."""
    made = store.create_session(owner="a", session_id="my-session_1")
    assert made.id == "my-session_1"
    assert store.create_session(owner="a", session_id="my-session_1").created_at == made.created_at
    with pytest.raises(InvalidInputError) as refused:
        store.create_session(owner="b", session_id="my-session_1")
    assert refused.value.code == "session_id_unavailable"
    for bad in ("", "has space", "x" * 65, "semi;colon", "ünï"):
        with pytest.raises(InvalidInputError) as invalid:
            store.create_session(session_id=bad)
        assert invalid.value.code == "invalid_session_id"


def test_ownership_isolation(store: SessionStore) -> None:
    """Another owner cannot see, read or delete a session (reported as not found); lists show only own."""
    mine = store.create_session(owner="key-a")
    theirs = store.create_session(owner="key-b")
    store.add_turn(mine.id, "user", "hello there")
    for call in (
        lambda: store.get_session(mine.id, owner="key-b"),
        lambda: store.history(mine.id, owner="key-b"),
        lambda: store.delete_session(mine.id, owner="key-b"),
    ):
        with pytest.raises(SessionNotFoundError):
            call()
    assert store.get_session(mine.id, owner="key-a").turn_count == 1
    assert [s.id for s in store.list_sessions(owner="key-a")] == [mine.id]
    assert [s.id for s in store.list_sessions(owner="key-b")] == [theirs.id]
    assert {s.id for s in store.list_sessions()} == {mine.id, theirs.id}  # auth off sees all
    assert store.count(owner="key-a") == 1
    store.delete_session(mine.id, owner="key-a")
    assert store.count() == 1


def test_history_order_limit_and_title(store: SessionStore) -> None:
    """History is chronological; a limit keeps the most recent turns in order; the first user turn titles
    the session and later ones do not; updated_at moves forward."""
    session = store.create_session()
    texts = [f"turn {i}" for i in range(6)]
    store.add_turn(session.id, "user", "I feel stuck in my job and want a change")
    for i, t in enumerate(texts):
        store.add_turn(session.id, "assistant" if i % 2 == 0 else "user", t)
    history = store.history(session.id)
    assert [h.text for h in history][1:] == texts
    assert [h.id for h in history] == sorted(h.id for h in history)
    assert [h.text for h in store.history(session.id, limit=3)] == texts[-3:]
    after = store.get_session(session.id)
    assert after.title == "I feel stuck in my job"
    assert after.turn_count == 7 and after.updated_at >= session.updated_at
    with pytest.raises(SessionNotFoundError):
        store.add_turn("missing", "user", "hi")
    with pytest.raises(SessionNotFoundError):
        store.history("missing")
    with pytest.raises(InvalidInputError):
        store.add_turn(session.id, "system", "x")  # type: ignore[arg-type]


def test_recent_history_for_prompt(store: SessionStore) -> None:
    """recent_history returns the last N turns as HistoryTurn with the emotion label taken from the dict."""
    session = store.create_session()
    store.add_turn(session.id, "user", "old")
    store.add_turn(session.id, "user", "I am worried", emotion={"label": "anxious", "confidence": 0.8})
    store.add_turn(session.id, "assistant", "Let's look at it together.")
    assert store.recent_history(session.id, 2) == [
        HistoryTurn(role="user", text="I am worried", emotion="anxious"),
        HistoryTurn(role="assistant", text="Let's look at it together.", emotion=None),
    ]
    assert store.recent_history(session.id, 0) == []
    assert store.recent_history("unknown", 5) == []


def test_turns_cascade_on_delete(store: SessionStore, db_url: str) -> None:
    """Deleting a session removes its turns in the database (ON DELETE CASCADE; SQLite: foreign keys on)."""
    keep = store.create_session()
    gone = store.create_session()
    for s in (keep, gone):
        store.add_turn(s.id, "user", "a")
        store.add_turn(s.id, "assistant", "b")
    store.delete_session(gone.id)
    engine = make_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT session_id, COUNT(*) FROM turns GROUP BY session_id")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [(keep.id, 2)]


def test_restart_sees_everything(db_url: str) -> None:
    """A new engine on the same database (a server restart) sees sessions, turns, emotions and timings."""
    first = _open(db_url)
    session = first.create_session(owner="k", title="t")
    turn = first.add_turn(session.id, "user", "hello", emotion={"label": "calm"}, duration_s=1.5)
    first.close()
    second = _open(db_url)
    try:
        assert second.get_session(session.id, owner="k").turn_count == 1
        assert second.history(session.id) == [turn]
    finally:
        second.close()


def test_sqlite_wal_mode_and_pragmas(sqlite_path: Path) -> None:
    """Every SQLite connection runs in WAL mode with foreign keys on and synchronous=NORMAL; the folder is made."""
    _open(f"sqlite:///{sqlite_path}").close()
    assert sqlite_path.parent.is_dir()
    engine = make_engine(f"sqlite:///{sqlite_path}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 5000
    engine.dispose()


def test_relative_sqlite_path_is_under_repo_root() -> None:
    """sqlite:///data/x.db resolves against the repository root, not the working directory."""
    from backend.config import REPO_ROOT

    engine = make_engine("sqlite:///data/never-created-by-tests.db")
    assert engine.url.database == str(REPO_ROOT / "data" / "never-created-by-tests.db")
    engine.dispose()


def test_concurrent_add_turn_loses_nothing(store: SessionStore) -> None:
    """8 threads adding turns at once to one session all succeed and every turn is stored once."""
    session = store.create_session()
    per_thread = 25
    start = threading.Barrier(8)
    ids: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                turn = store.add_turn(session.id, "user", f"{n}-{i}")
                with lock:
                    ids.append(turn.id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    history = store.history(session.id)
    assert len(ids) == len(set(ids)) == 8 * per_thread
    assert sorted(ids) == [h.id for h in history]
    assert {h.text for h in history} == {f"{n}-{i}" for n in range(8) for i in range(per_thread)}


def test_json_round_trip(store: SessionStore) -> None:
    """Emotion and timings dicts (nested, floats, unicode) come back equal; None stays None."""
    session = store.create_session()
    emotion = {"label": "sad", "confidence": 0.61, "scores": {"sad": 0.61, "calm": 0.2}, "note": "é✓"}
    timings = {"stt_s": 0.21, "llm_first_token_s": 0.5, "marks": [1, 2.5]}
    stored = store.add_turn(session.id, "user", "x", emotion=emotion, timings=timings, duration_s=2.25)
    plain = store.add_turn(session.id, "assistant", "y")
    back, back_plain = store.history(session.id)
    assert back == stored and back.emotion == emotion and back.timings == timings
    assert back.duration_s == 2.25 and back.created_at.tzinfo is UTC
    assert back_plain == plain and back_plain.emotion is None and back_plain.timings is None


def test_update_turn(store: SessionStore) -> None:
    """update_turn corrects text, timings and the interrupted flag, keeps other fields, and reports a
    deleted turn as not found."""
    session = store.create_session()
    turn = store.add_turn(session.id, "assistant", "A long answer that was cut", timings={"llm_s": 1.0})
    updated = store.update_turn(turn.id, text="A long answer", interrupted=True)
    assert updated.text == "A long answer" and updated.interrupted and updated.timings == {"llm_s": 1.0}
    final = store.update_turn(turn.id, timings={"llm_s": 1.0, "tts_s": 0.4})
    assert final.text == "A long answer" and final.interrupted
    assert store.history(session.id) == [final]
    assert store.update_turn(turn.id) == final  # nothing to change
    store.delete_session(session.id)
    with pytest.raises(SessionNotFoundError):
        store.update_turn(turn.id, text="late")


WRITER = """
import sys
from backend.store.schema import make_engine
from backend.store.sessions import SessionStore

store = SessionStore(make_engine(sys.argv[1]))
name, count = sys.argv[3], int(sys.argv[4])
print("ready", flush=True)
sys.stdin.readline()
for i in range(count):
    print(store.add_turn(sys.argv[2], "user", f"{name}-{i}").id, flush=True)
store.close()
"""


def test_two_writer_processes_on_one_session_lose_nothing_and_keep_order(db_url: str) -> None:
    """Two processes (their own engines and connections, as two replicas) released together add 60 turns each
    to one session: every acknowledged turn is stored once, each writer's turns are in the order it wrote them,
    and history order (by id) is the order the turns were committed in: each writer saw its ids increase."""
    setup = _open(db_url)
    session_id = setup.create_session().id
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    count = 60
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, db_url, session_id, name, str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=REPO_ROOT,
            env=env,
            text=True,
        )
        for name in ("a", "b")
    ]
    acked: dict[str, list[int]] = {}
    try:
        for writer in writers:
            assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        for writer in writers:
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.flush()
        for name, writer in zip(("a", "b"), writers, strict=True):
            out, _ = writer.communicate(timeout=60)
            assert writer.returncode == 0
            acked[name] = [int(line) for line in out.split()]
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
    try:
        history = setup.history(session_id)
    finally:
        setup.close()
    assert sorted(acked["a"] + acked["b"]) == [t.id for t in history]
    for name in ("a", "b"):
        assert acked[name] == sorted(acked[name])
        assert [t.text for t in history if t.text.startswith(f"{name}-")] == [f"{name}-{i}" for i in range(count)]
