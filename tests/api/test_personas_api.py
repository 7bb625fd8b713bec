"""Personas through the real HTTP and WebSocket API (fake models): listed, chosen per session on every wire,
stored with the session, heard in the voice, and refused when unknown."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from backend.config import MentorSettings
from backend.mentor.personas import load_personas
from tests.api.wsutil import receive_until
from tests.fakes import FakeModels

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

PERSONAS = load_personas(MentorSettings())


def _system_prompt(fakes: FakeModels) -> str:
    return fakes.llm.prompts[-1][0].content


def test_personas_are_listed_with_their_voice(client: TestClient) -> None:
    """GET /api/personas lists every persona (id, name, title, description, voice) and the default."""
    body = client.get("/api/personas").json()
    assert body["default"] == "wellbeing"
    listed = {p["id"]: p for p in body["personas"]}
    assert set(listed) >= {"wellbeing", "study-coach", "career-mentor"}
    assert listed["study-coach"]["voice"] == {"voice": "en-us+f3", "rate": 190, "pitch": 60}
    assert all(p["name"] and p["description"] for p in listed.values())


def test_a_session_created_with_a_persona_keeps_it_for_its_turns(client: TestClient, fakes: FakeModels) -> None:
    """POST /api/sessions with a persona stores it (listed with the session); text chat in that session uses its
    system prompt, guidance and voice without naming it again."""
    sid = client.post("/api/sessions", json={"persona": "study-coach"}).json()["id"]
    listed = {s["id"]: s for s in client.get("/api/sessions").json()["sessions"]}
    assert listed[sid]["persona"] == "study-coach"
    reply = client.post("/api/text-chat", json={"text": "I have an exam and feel stuck", "session_id": sid}).json()
    assert reply["persona"] == "study-coach"
    assert _system_prompt(fakes) == PERSONAS.get("study-coach").system_prompt
    guidance = fakes.llm.prompts[-1][-2].content
    coach = PERSONAS.get("study-coach")
    assert guidance == f"{coach.emotion_guidance['sad']} {coach.reminder}"  # the fake emotion is sad


def test_text_chat_persona_switches_the_sessions_persona(client: TestClient, fakes: FakeModels) -> None:
    """A persona named in a text chat request switches the session to it (stored); the default persona is the
    base prompt."""
    first = client.post("/api/text-chat", json={"text": "hello"}).json()
    assert first["persona"] == "wellbeing" and _system_prompt(fakes) == fakes.llm.prompts[0][0].content
    sid = first["session_id"]
    client.post("/api/text-chat", json={"text": "my manager", "session_id": sid, "persona": "career-mentor"})
    assert _system_prompt(fakes) == PERSONAS.get("career-mentor").system_prompt
    client.post("/api/text-chat", json={"text": "and now?", "session_id": sid})
    assert _system_prompt(fakes) == PERSONAS.get("career-mentor").system_prompt
    assert client.get("/api/sessions").json()["sessions"][0]["persona"] == "career-mentor"


def test_session_start_mentor_picks_the_persona_and_its_voice(client: TestClient, fakes: FakeModels) -> None:
    """session.start {"mentor": id} switches the connection's session to that persona: the session event names
    it, the prompt is its prompt, the reply is spoken in its voice, and a later connection resuming the session
    gets it back from the store."""
    with client.websocket_connect("/ws/voice") as ws:
        first = ws.receive_json()
        assert first["persona"] == "wellbeing"
        ws.send_json({"type": "session.start", "mentor": "career-mentor"})
        assert ws.receive_json()["persona"] == "career-mentor"
        ws.send_json({"type": "text", "text": "I want a raise"})
        receive_until(ws, "metrics")
        sid = first["session_id"]
    assert _system_prompt(fakes) == PERSONAS.get("career-mentor").system_prompt
    voice = PERSONAS.get("career-mentor").voice
    assert fakes.tts.styles and {s.voice for s in fakes.tts.styles} == {voice.voice}
    with client.websocket_connect("/ws/voice") as ws:
        ws.receive_json()
        ws.send_json({"type": "session.start", "session_id": sid})
        resumed = ws.receive_json()
    assert resumed["resumed"] is True and resumed["persona"] == "career-mentor"


def test_unknown_persona_is_refused_everywhere(client: TestClient) -> None:
    """An unknown persona: 404 unknown_persona on REST (session creation, text chat), an error event on
    /ws/voice; nothing is created and the connection keeps its persona."""
    made = client.post("/api/sessions", json={"persona": "pirate"})
    assert made.status_code == 404 and made.json()["error"]["code"] == "unknown_persona"
    assert "wellbeing" in made.json()["error"]["message"]
    chat = client.post("/api/text-chat", json={"text": "hi", "persona": "pirate"})
    assert chat.status_code == 404 and chat.json()["error"]["code"] == "unknown_persona"
    assert client.get("/api/sessions").json()["sessions"] == []
    with client.websocket_connect("/ws/voice") as ws:
        ws.receive_json()
        ws.send_json({"type": "session.start", "mentor": "pirate"})
        assert receive_until(ws, "error").first("error")["code"] == "unknown_persona"
        ws.send_json({"type": "session.start"})
        assert ws.receive_json()["persona"] == "wellbeing"


def test_the_personas_prompt_is_warmed_as_the_next_turns_prefix(client: TestClient, fakes: FakeModels) -> None:
    """After a turn of a persona session the next prompt's start (that persona's system prompt and the history)
    is prefilled, and the next turn's prompt begins with exactly those messages (the prefix cache hits)."""
    sid = client.post("/api/sessions", json={"persona": "study-coach"}).json()["id"]
    client.post("/api/text-chat", json={"text": "I have an exam", "session_id": sid})
    coach = PERSONAS.get("study-coach").system_prompt
    assert fakes.llm.wait_warmed(lambda warmed: any(w and w[0].content == coach and len(w) == 3 for w in warmed))
    prefix = next(w for w in fakes.llm.warmed if w[0].content == coach and len(w) == 3)
    client.post("/api/text-chat", json={"text": "what now?", "session_id": sid})
    assert fakes.llm.prompts[-1][: len(prefix)] == prefix
