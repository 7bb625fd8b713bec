"""Memories, session insights and the new session fields, on a SQLite file and a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from backend.core.exceptions import InvalidInputError, SessionNotFoundError
from backend.store.insights import InsightState
from backend.store.memories import MemoryNotFoundError, memory_scope, sessions_scope
from backend.store.schema import init_db, make_engine
from backend.store.sessions import SessionExistsError, SessionStore

pytestmark = pytest.mark.fast

DIM = 8


def _open(url: str) -> SessionStore:
    engine = make_engine(url)
    init_db(engine)
    return SessionStore(engine)


@pytest.fixture
def store(db_url: str) -> Iterator[SessionStore]:
    s = _open(db_url)
    yield s
    s.close()


def _vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def test_sessions_keep_persona_user_id_and_refuse_taken_custom_ids(store: SessionStore) -> None:
    """A session stores its persona and user id; a custom id that is taken is refused with session_exists when
    the caller asks for a new session (exist_ok=False), by the same owner or another; invalid ids and user ids
    are invalid input; the persona can be changed later."""
    made = store.create_session(owner="k1", session_id="my-id", persona="study-coach", user_id="u-1", exist_ok=False)
    assert (made.persona, made.user_id) == ("study-coach", "u-1")
    with pytest.raises(SessionExistsError):
        store.create_session(owner="k1", session_id="my-id", exist_ok=False)
    with pytest.raises(SessionExistsError):
        store.create_session(owner="k2", session_id="my-id", exist_ok=False)
    for bad in ("", "a b", "x" * 65, "é"):
        with pytest.raises(InvalidInputError) as err:
            store.create_session(session_id=bad)
        assert err.value.code == "invalid_session_id"
    with pytest.raises(InvalidInputError) as err:
        store.create_session(user_id="no spaces")
    assert err.value.code == "invalid_user_id"
    store.set_persona("my-id", "career-mentor")
    assert store.get_session("my-id", "k1").persona == "career-mentor"
    with pytest.raises(SessionNotFoundError):
        store.set_persona("gone", "career-mentor")


def test_memories_are_per_scope_listed_newest_first_and_deleted_only_by_their_owner(store: SessionStore) -> None:
    """Memories are kept per scope (key and user id); a scope lists only its own, newest first with the total;
    deleting another scope's memory is memory_not_found and leaves it; delete_all empties one scope only."""
    sid = store.create_session(owner="k1").id
    alice, bob = memory_scope("k1", "alice", sid), memory_scope("k1", "bob", sid)
    first = store.memories.add(alice, sid, None, "event", "My exam is on Friday.", _vec(1))
    second = store.memories.add(alice, sid, 7, "person", "My sister is Anna.", _vec(2))
    theirs = store.memories.add(bob, sid, None, "goal", "I want to swim.", _vec(3))
    listed, total = store.memories.list(alice)
    assert [m.id for m in listed] == [second.id, first.id] and total == 2
    assert listed[0].turn_id == 7 and listed[0].kind == "person" and listed[0].created_at.tzinfo is not None
    assert store.memories.list(alice, limit=1, offset=1)[0][0].id == first.id
    with pytest.raises(MemoryNotFoundError):
        store.memories.delete(alice, theirs.id)
    assert store.memories.list(bob)[1] == 1
    store.memories.delete(alice, first.id)
    assert store.memories.delete_all(alice) == 1 and store.memories.list(alice)[1] == 0
    assert store.memories.list(bob)[1] == 1
    assert memory_scope(None, None, sid) != memory_scope("k1", None, sid) != memory_scope("k1", "alice", sid)


def test_without_a_user_id_memory_stays_in_its_session_with_one_it_follows_key_and_user(store: SessionStore) -> None:
    """No user id: each session is its own scope, whoever the owner (auth off: every caller is the same
    anonymous owner). A user id: one scope per key and user id across sessions, another key's the same user id
    apart. "-" is no user id (the anonymous scope of earlier versions is never named again)."""
    a, b = store.create_session().id, store.create_session().id
    assert memory_scope(None, None, a) != memory_scope(None, None, b)
    assert memory_scope("k1", None, a) != memory_scope("k1", None, b) != memory_scope(None, None, b)
    assert memory_scope(None, "-", a) == memory_scope(None, None, a)
    assert "-/-" not in {memory_scope(None, u, a) for u in (None, "", "-")}  # the old shared anonymous scope
    assert memory_scope("k1", "u", a) == memory_scope("k1", "u", b) != memory_scope("k2", "u", a)
    assert memory_scope(None, "u", a) != memory_scope("k1", "u", a)
    store.memories.add(memory_scope(None, None, a), a, None, "event", "I take the train at eight.", _vec(1))
    assert len(store.memories.vectors(memory_scope(None, None, b))) == 0
    assert store.memories.list(memory_scope(None, None, b)) == ([], 0)
    assert [m.text for m in store.memories.list(memory_scope(None, None, a))[0]] == ["I take the train at eight."]


def test_a_keys_memories_without_a_user_id_are_listed_and_deleted_together(store: SessionStore) -> None:
    """``sessions_scope(key)`` lists and deletes the key's memories of every session without a user id, and the
    shared ``<key>/-`` scope of earlier versions; never another key's, nor the key's users'. It is never a scope
    to recall from or keep in."""
    a, b, other = store.create_session(owner="k1").id, store.create_session(owner="k1").id, store.create_session().id
    store.memories.add("k1/-", a, None, "event", "Kept before sessions had their own scope.", _vec(1))
    in_a = store.memories.add(memory_scope("k1", None, a), a, None, "event", "In session a.", _vec(2))
    store.memories.add(memory_scope("k1", None, b), b, None, "event", "In session b.", _vec(3))
    store.memories.add(memory_scope("k1", "u", a), a, None, "event", "Of user u.", _vec(4))
    store.memories.add(memory_scope("k10", None, a), a, None, "event", "Of another key.", _vec(5))
    theirs = store.memories.add(memory_scope(None, None, other), other, None, "event", "Anonymous.", _vec(6))
    listed, total = store.memories.list(sessions_scope("k1"))
    assert [m.text for m in listed] == ["In session b.", "In session a.", "Kept before sessions had their own scope."]
    assert total == 3
    with pytest.raises(MemoryNotFoundError):
        store.memories.delete(sessions_scope("k1"), theirs.id)
    store.memories.delete(sessions_scope("k1"), in_a.id)
    assert store.memories.delete_all(sessions_scope("k1")) == 2
    assert store.memories.list(memory_scope("k1", "u", b))[1] == 1
    assert store.memories.list(sessions_scope("k10"))[1] == 1 and store.memories.list(sessions_scope(None))[1] == 1
    for use in (store.memories.vectors, lambda s: store.memories.trim(s, 1)):
        with pytest.raises(ValueError):
            use(sessions_scope("k1"))
    with pytest.raises(ValueError):
        store.memories.add(sessions_scope("k1"), a, None, "event", "x", _vec(7))


def test_deleting_a_session_deletes_what_was_learned_in_it(store: SessionStore) -> None:
    """Memories learned in a session, and its insights, go with the session (ON DELETE CASCADE); memories from
    the user's other sessions stay, and the cached vectors follow."""
    gone, kept = store.create_session(owner="k1").id, store.create_session(owner="k1").id
    scope = memory_scope("k1", "u", gone)
    store.memories.add(scope, gone, None, "event", "Said in the deleted session.", _vec(1))
    store.memories.add(scope, kept, None, "event", "Said in the kept session.", _vec(2))
    store.insights.put(gone, InsightState(summary="x", through_turn_id=1))
    assert len(store.memories.vectors(scope)) == 2
    store.delete_session(gone, owner="k1")
    assert [m.text for m in store.memories.list(scope)[0]] == ["Said in the kept session."]
    assert store.memories.vectors(scope).texts == ("Said in the kept session.",)
    assert store.insights.get(gone) == InsightState()
    with pytest.raises(SessionNotFoundError):
        store.memories.add(scope, gone, None, "event", "too late", _vec(3))


def test_vectors_stay_right_when_another_process_adds_or_deletes(db_url: str) -> None:
    """The in-memory matrix of a scope follows the database: rows added through another store (a replica) are
    appended, a deletion there is noticed (full reload), and embeddings round-trip exactly as float32."""
    mine, other = _open(db_url), _open(db_url)
    try:
        sid = mine.create_session().id
        scope = memory_scope(None, "u", sid)
        a = mine.memories.add(scope, sid, None, "event", "first", _vec(1))
        first = mine.memories.vectors(scope)
        assert first.ids.tolist() == [a.id] and np.array_equal(first.matrix[0], _vec(1))
        assert mine.memories.vectors(scope) is first  # unchanged: the cached arrays are reused
        b = other.memories.add(scope, sid, None, "event", "second", _vec(2))
        grown = mine.memories.vectors(scope)
        assert grown.ids.tolist() == [a.id, b.id] and grown.texts == ("first", "second")
        other.memories.delete(scope, a.id)
        c = other.memories.add(scope, sid, None, "event", "third", _vec(3))
        after = mine.memories.vectors(scope)
        assert after.ids.tolist() == [b.id, c.id] and np.array_equal(after.matrix[1], _vec(3))
    finally:
        mine.close()
        other.close()


def test_trim_keeps_the_newest(store: SessionStore) -> None:
    """Past the per-user cap the oldest memories are dropped."""
    sid = store.create_session().id
    scope = memory_scope(None, None, sid)
    ids = [store.memories.add(scope, sid, None, "event", f"fact {i}", _vec(i)).id for i in range(5)]
    assert store.memories.trim(scope, 3) == 2 and store.memories.trim(scope, 3) == 0
    assert [m.id for m in store.memories.list(scope)[0]] == ids[:1:-1]


def test_insights_round_trip_and_a_stale_update_never_overwrites_a_newer_one(store: SessionStore) -> None:
    """The insight state is stored and read back; an update that folded in fewer turns than the stored one (a
    slower concurrent update) is dropped; user turns after a given id are listed oldest first."""
    sid = store.create_session().id
    turns = [store.add_turn(sid, "user", "a").id, store.add_turn(sid, "assistant", "b").id]
    turns.append(store.add_turn(sid, "user", "c").id)
    assert [t.text for t in store.insights.user_turns_after(sid, 0)] == ["a", "c"]
    assert [t.id for t in store.insights.user_turns_after(sid, turns[0])] == [turns[2]]
    new = InsightState(summary="S", points=[{"text": "p"}], topics={"work": 1}, through_turn_id=turns[2], updates=2)
    store.insights.put(sid, new)
    store.insights.put(sid, InsightState(summary="old", through_turn_id=turns[0], updates=1))
    got = store.insights.get(sid)
    assert (got.summary, got.points, got.topics, got.through_turn_id, got.updates) == (
        "S",
        [{"text": "p"}],
        {"work": 1},
        turns[2],
        2,
    )
    assert got.updated_at is not None


def test_growing_the_cached_matrix_keeps_every_row_and_earlier_views(store: SessionStore) -> None:
    """Memories added one by one grow the cached matrix in place (no full copy per memory): after each addition
    the matrix holds exactly the embeddings so far, and a matrix handed out earlier still shows its rows."""
    sid = store.create_session().id
    scope = memory_scope(None, "grow", sid)
    views = []
    for i in range(40):
        store.memories.add(scope, sid, None, "event", f"fact {i}", _vec(i))
        vectors = store.memories.vectors(scope)
        assert np.array_equal(vectors.matrix, np.stack([_vec(j) for j in range(i + 1)]))
        views.append(vectors.matrix)
    assert all(np.array_equal(view, np.stack([_vec(j) for j in range(len(view))])) for view in views)
