"""Memory never leaks between people (issue 26): without a user id, what is remembered stays within its session,
whoever calls (auth off: every caller is the same anonymous owner; one API key may serve many people); across
sessions only for the same API key and user id. Through the real HTTP and WebSocket API with fake models and a
bag-of-words embedder; every prompt the fake LLM saw is searched, and each test first shows that the same words
are recalled where memory is meant to reach (so a missing recall is the isolation, not a blind test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.engines.protocols import ChatMessage
from backend.main import create_app
from backend.mentor.prompt_builder import MEMORY_INTRO
from tests.api.followups import services_of, settle
from tests.api.wsutil import receive_until
from tests.conftest import make_settings
from tests.fakes import FakeEmbedder, FakeModels

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

# What four people said, each in their own session, and what a fifth says later: each later message shares words
# with one fact, so any of those facts would be recalled if sessions shared a scope (the leaks issue 26 saw).
FACTS = (
    "My daughter Mia started school this week.",
    "My train leaves at eight tomorrow morning.",
    "I have a dentist appointment next month.",
    "My parcel to the university got lost last week.",
)
LATER = (
    "School this week was hard for my daughter.",
    "The train at eight this morning worries me.",
    "Next month I have a lot to do.",
    "The university still has not found my parcel.",
)
K1 = {"X-API-Key": "k1"}


@pytest.fixture
def fakes() -> FakeModels:
    return FakeModels(embedder=FakeEmbedder())


def _client(tmp_path: Path, fakes: FakeModels, **overrides: object) -> TestClient:
    settings = make_settings(tmp_path, memory__min_similarity=0.3, **overrides)
    return TestClient(create_app(settings, models=fakes.service(settings)))


@pytest.fixture
def anon(tmp_path: Path, fakes: FakeModels) -> Iterator[TestClient]:
    """Auth off, the default: every caller is the same anonymous owner."""
    with _client(tmp_path, fakes) as client:
        yield client


@pytest.fixture
def keyed(tmp_path: Path, fakes: FakeModels) -> Iterator[TestClient]:
    with _client(tmp_path, fakes, auth__api_keys=["k1", "k2"]) as client:
        yield client


def _said(prompt: list[ChatMessage]) -> str:
    return "\n".join(m.content for m in prompt)


def _chat(client: TestClient, text: str, headers: dict[str, str] | None = None, **body: str) -> str:
    reply = client.post("/api/text-chat", json={"text": text, **body}, headers=headers or {})
    assert reply.status_code == 200, reply.text
    session_id: str = reply.json()["session_id"]
    return session_id


def _memories(client: TestClient, query: str = "", headers: dict[str, str] | None = None) -> list[str]:
    body = client.get(f"/api/memories{query}", headers=headers or {}).json()
    return [m["text"] for m in body["memories"]]


def test_the_same_user_id_recalls_across_sessions(anon: TestClient, fakes: FakeModels) -> None:
    """The control: with a user id (auth off), each fact said in one session reaches the guidance of the related
    message in a new session of that user, so the test below would see a leak."""
    for fact in FACTS:
        _chat(anon, fact, user_id="dana")
    settle(anon)
    assert sorted(_memories(anon, "?user_id=dana")) == sorted(FACTS)
    for fact, later in zip(FACTS, LATER, strict=True):
        _chat(anon, later, user_id="dana")
        assert MEMORY_INTRO in fakes.llm.prompts[-1][-2].content and f'"{fact}"' in _said(fakes.llm.prompts[-1])


def test_two_anonymous_sessions_never_see_each_others_facts(anon: TestClient, fakes: FakeModels) -> None:
    """Auth off, no user id: four people each say a fact in their own session; a fifth person's related messages,
    in new sessions or one of their own, get none of them in any prompt, and each session lists only its own."""
    sessions = [_chat(anon, fact) for fact in FACTS]
    settle(anon)
    for session, fact in zip(sessions, FACTS, strict=True):
        assert _memories(anon, f"?session_id={session}") == [fact]
    seen = len(fakes.llm.prompts)
    own = _chat(anon, LATER[0])  # a session of the fifth person, then each message in it and in a new one
    for later in LATER:
        _chat(anon, later, session_id=own)
        _chat(anon, later)
        settle(anon)
    for prompt in fakes.llm.prompts[seen:]:
        assert MEMORY_INTRO not in _said(prompt)
        assert not [fact for fact in FACTS if fact in _said(prompt)]
    assert not set(_memories(anon, f"?session_id={own}")) & set(FACTS)
    # the first person's session still has (and, were its history gone, would recall) only what they said
    assert _memories(anon, f"?session_id={sessions[0]}") == [FACTS[0]]


def test_within_one_anonymous_session_memory_stays(tmp_path: Path, fakes: FakeModels) -> None:
    """Without a user id the session is the scope: once the history no longer holds a fact (here: 2 turns of
    history), it is recalled from memory in that session, and in no other; the scope is the session's own."""
    with _client(tmp_path, fakes, mentor__max_history_turns=2) as client:
        session = _chat(client, FACTS[0], session_id="mine-1")
        for small_talk in ("Thanks.", "Okay."):
            _chat(client, small_talk, session_id=session)
        settle(client)
        _chat(client, LATER[0], session_id=session)
        assert f'"{FACTS[0]}"' in fakes.llm.prompts[-1][-2].content
        _chat(client, LATER[0])
        assert FACTS[0] not in _said(fakes.llm.prompts[-1])
        assert [m.text for m in services_of(client).store.sync.memories.list("-/-/mine-1")[0]][-1] == FACTS[0]


def test_anonymous_voice_sessions_never_see_each_others_facts(anon: TestClient, fakes: FakeModels) -> None:
    """Two anonymous /ws/voice connections (no session id, no user id): what one said is not recalled in the
    other; the same two connections naming one user id do recall it."""

    def talk(text: str, start: dict[str, str]) -> list[ChatMessage]:
        with anon.websocket_connect("/ws/voice") as ws:
            ws.receive_json()
            if start:
                ws.send_json({"type": "session.start", **start})
                ws.receive_json()
            ws.send_json({"type": "text", "text": text})
            receive_until(ws, "metrics")
        settle(anon)
        return fakes.llm.prompts[-1]

    talk(FACTS[1], {})
    assert FACTS[1] not in _said(talk(LATER[1], {}))
    talk(FACTS[1], {"user_id": "eli"})
    assert f'"{FACTS[1]}"' in _said(talk(LATER[1], {"user_id": "eli"}))


def test_one_key_without_user_ids_keeps_its_sessions_apart(keyed: TestClient, fakes: FakeModels) -> None:
    """One API key may serve many people: without a user id its sessions do not share memories either; with the
    key and a user id they do. The key lists and deletes its sessions' memories together (no query), one session's
    (``session_id``) or one user's (``user_id``); another key's session is 404 session_not_found."""
    first = _chat(keyed, FACTS[2], K1)
    settle(keyed)
    _chat(keyed, LATER[2], K1)
    assert FACTS[2] not in _said(fakes.llm.prompts[-1])
    _chat(keyed, FACTS[2], K1, user_id="fay")
    settle(keyed)
    _chat(keyed, LATER[2], K1, user_id="fay")
    assert f'"{FACTS[2]}"' in _said(fakes.llm.prompts[-1])
    settle(keyed)

    assert _memories(keyed, f"?session_id={first}", K1) == [FACTS[2]]
    assert sorted(_memories(keyed, "", K1)) == sorted([FACTS[2], LATER[2]])  # both sessions without a user id
    assert _memories(keyed, "?user_id=fay", K1) == [LATER[2], FACTS[2]]
    other = keyed.get(f"/api/memories?session_id={first}", headers={"X-API-Key": "k2"})
    assert other.status_code == 404 and other.json()["error"]["code"] == "session_not_found"
    assert keyed.delete(f"/api/memories?session_id={first}", headers={"X-API-Key": "k2"}).status_code == 404
    assert keyed.delete(f"/api/memories?session_id={first}", headers=K1).json() == {"deleted": 1}
    assert keyed.delete("/api/memories", headers=K1).json() == {"deleted": 1}
    assert len(_memories(keyed, "?user_id=fay", K1)) == 2  # a user's memories go only by naming the user


def test_the_shared_anonymous_scope_of_earlier_versions_is_never_recalled(anon: TestClient, fakes: FakeModels) -> None:
    """Before sessions had their own scope, every anonymous caller's facts were kept in one scope (``-/-``). Those
    rows stay in the database until their sessions go, but no session recalls them, not even one naming the user
    id ``-`` (no user id); listing and deleting without a query still reaches them."""
    old = _chat(anon, "Hello.")
    store = services_of(anon).store.sync.memories
    embedding = FakeEmbedder().embed([FACTS[3]])[0]
    store.add("-/-", old, None, "event", FACTS[3], embedding)
    _chat(anon, LATER[3])
    _chat(anon, LATER[3], user_id="-")
    _chat(anon, LATER[3], session_id=old)
    for prompt in fakes.llm.prompts[-3:]:
        assert FACTS[3] not in _said(prompt)
    assert _memories(anon, "?user_id=-") == []
    assert FACTS[3] in _memories(anon)
    settle(anon)
    assert anon.delete("/api/memories").json()["deleted"] >= 1 and FACTS[3] not in _memories(anon)
