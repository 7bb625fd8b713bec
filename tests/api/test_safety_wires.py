"""The crisis protocol on every wire with fake models (docs/SAFETY.md): a flagged turn gets the team's written
reply and no LLM words, its ``safety`` reading on REST, SSE, /ws/voice, /v1/chat/completions and /v1/realtime;
safety mode on the next turns, the locale's numbers, the record (history, insights, metrics), memory exclusion,
restart persistence and a planted unsafe model reply."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.engines.protocols import SafetyCategory, SafetyLevel
from backend.main import create_app
from backend.mentor.safety_protocol import Line
from tests.api.followups import services_of, settle
from tests.api.rtutil import until
from tests.api.wsutil import receive_until
from tests.conftest import make_settings
from tests.fakes import FakeEmbedder, FakeModels, silence_pcm, tone_pcm

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

CRISIS = "I have been thinking about ending it all."
CRISIS_WORDS = "ending it all"
ORDINARY = "I went to work today and it was long."
UNSAFE = "It's natural to want to die. What would you do first?"
# The unsafe sentence after a first one: the first chunk (pipeline.first_chunk_max_words) is safe. UNSAFE's own
# first chunk, "It's natural to", is held for the rest of its sentence (SafetyChecker.unfinished_risk).
UNSAFE_SECOND = "That sounds so hard to carry. It's natural to want to die. What would you do first?"
NOT_FLAGGED = {"flagged": False, "category": None, "level": None}


def _text(lines: list[Line]) -> str:
    return " ".join(line.text for line in lines)


def _protocol_reply(client: TestClient, category: SafetyCategory = "suicide", level: SafetyLevel = "concern") -> str:
    return _text(services_of(client).shared.safety.protocol.reply(category, level, None))


def _check_in(client: TestClient) -> str:
    return _text(services_of(client).shared.safety.protocol.check_in(None))


def _chat(client: TestClient, text: str, **extra: Any) -> dict[str, Any]:
    response = client.post("/api/text-chat", json={"text": text, **extra})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _prompt_text(fakes: FakeModels) -> str:
    return " ".join(m.content for prompt in fakes.llm.prompts for m in prompt)


def _sse(client: TestClient, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    name = ""
    with client.stream("POST", "/api/text-chat/stream", json=body) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    return events


def _speak(ws: Any) -> None:
    for chunk in (silence_pcm(0.3), tone_pcm(1.0), silence_pcm(0.8)):
        for i in range(0, len(chunk), 640):
            ws.send_bytes(chunk[i : i + 640])


# --- every wire --------------------------------------------------------------------------------------------


def test_rest_text_chat_answers_a_crisis_with_the_written_reply(client: TestClient, fakes: FakeModels) -> None:
    body = _chat(client, CRISIS)
    assert body["response"] == _protocol_reply(client)
    assert "988" in body["response"] and "911" in body["response"]
    assert body["safety"] == {"flagged": True, "category": "suicide", "level": "concern", "mode": True}
    assert fakes.llm.prompts == []


def test_rest_ordinary_turn_carries_flagged_false(client: TestClient, fakes: FakeModels) -> None:
    body = _chat(client, ORDINARY)
    assert body["response"] == fakes.llm.reply
    assert body["safety"]["flagged"] is False and body["safety"]["category"] is None


def test_sse_sends_safety_before_response_and_done_carries_it(client: TestClient, fakes: FakeModels) -> None:
    events = _sse(client, {"text": CRISIS})
    names = [name for name, _ in events]
    assert "safety" in names and "response" in names
    assert names.index("safety") < names.index("response")
    safety = dict(events)["safety"]
    assert safety["category"] == "suicide" and safety["level"] == "concern"
    assert "988" in str(safety["resources"]["crisis_line"])
    assert dict(events)["response"]["text"] == _protocol_reply(client)
    assert names[-1] == "done"
    assert events[-1][1]["safety"]["flagged"] is True and events[-1][1]["safety"]["category"] == "suicide"
    assert fakes.llm.prompts == []

    ordinary = _sse(client, {"text": ORDINARY})
    assert "safety" not in [name for name, _ in ordinary]
    assert ordinary[-1][0] == "done" and ordinary[-1][1]["safety"] == NOT_FLAGGED


def _assert_voice_crisis(client: TestClient, got: Any) -> None:
    order = got.order
    assert "safety" in order and "response" in order, order
    assert order.index("safety") < order.index("response"), order
    safety = got.first("safety")
    assert safety["category"] == "suicide" and safety["level"] == "concern" and safety["turn_id"]
    assert "988" in safety["resources"]["crisis_line"] and safety["resources"]["emergency"] == "911"
    assert got.first("response")["text"] == _protocol_reply(client)
    assert "<audio>" in order and order.index("safety") < order.index("<audio>"), order
    assert len(got.audio) == got.first("audio.end")["bytes"] > 0


def test_ws_voice_text_message_gets_the_safety_event_and_the_written_reply(
    client: TestClient, fakes: FakeModels
) -> None:
    with client.websocket_connect("/ws/voice") as ws:
        ws.receive_json()
        ws.send_json({"type": "text", "text": CRISIS})
        got = receive_until(ws, "metrics")
    _assert_voice_crisis(client, got)
    assert fakes.llm.prompts == []
    # the protocol's words are spoken with their spoken forms ("nine eight eight")
    assert any("nine eight eight" in text for text in fakes.tts.texts)


def test_ws_voice_spoken_crisis_turn(client: TestClient, fakes: FakeModels) -> None:
    fakes.stt.transcript = CRISIS
    with client.websocket_connect("/ws/voice") as ws:
        ws.receive_json()
        _speak(ws)
        got = receive_until(ws, "metrics")
    assert got.first("transcript")["text"] == CRISIS
    _assert_voice_crisis(client, got)
    assert fakes.llm.prompts == []


def test_ws_voice_ordinary_turn_sends_no_safety_event(client: TestClient, fakes: FakeModels) -> None:
    with client.websocket_connect("/ws/voice") as ws:
        ws.receive_json()
        ws.send_json({"type": "text", "text": ORDINARY})
        got = receive_until(ws, "metrics")
    assert "safety" not in got.types()
    assert got.first("response")["text"] == fakes.llm.reply


def test_chat_completions_non_stream(client: TestClient, fakes: FakeModels) -> None:
    body = {"model": "claritymentor", "messages": [{"role": "user", "content": CRISIS}]}
    data = client.post("/v1/chat/completions", json=body).json()
    content = data["choices"][0]["message"]["content"]
    assert content == _protocol_reply(client) and "988" in content
    assert data["claritymentor"]["safety"]["flagged"] is True
    assert data["claritymentor"]["safety"]["category"] == "suicide"
    assert fakes.llm.prompts == []
    ordinary = {"model": "claritymentor", "messages": [{"role": "user", "content": ORDINARY}]}
    data = client.post("/v1/chat/completions", json=ordinary).json()
    assert data["claritymentor"]["safety"]["flagged"] is False


def test_chat_completions_stream(client: TestClient, fakes: FakeModels) -> None:
    body = {"model": "claritymentor", "stream": True, "messages": [{"role": "user", "content": CRISIS}]}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == _protocol_reply(client)
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["claritymentor"]["safety"]["flagged"] is True
    assert last["claritymentor"]["safety"]["category"] == "suicide"
    assert fakes.llm.prompts == []


def test_chat_completions_history_keeps_safety_mode_and_out_of_the_prompt(
    client: TestClient, fakes: FakeModels
) -> None:
    """A stateless caller's history is checked again: the flagged message and the written answer stay out of
    the prompt, and the reply ends with the check-in."""
    messages = [
        {"role": "user", "content": CRISIS},
        {"role": "assistant", "content": _protocol_reply(client)},
        {"role": "user", "content": ORDINARY},
    ]
    data = client.post("/v1/chat/completions", json={"model": "claritymentor", "messages": messages}).json()
    assert data["choices"][0]["message"]["content"].endswith(_check_in(client))
    assert data["claritymentor"]["safety"]["mode"] is True
    prompt = _prompt_text(fakes)
    assert CRISIS_WORDS not in prompt and "988" not in prompt


def _realtime_text_turn(ws: Any, text: str) -> dict[str, Any]:
    ws.send_json(
        {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
        }
    )
    until(ws, "conversation.item.done")
    ws.send_json({"type": "response.create"})
    response: dict[str, Any] = until(ws, "response.done")[-1]["response"]
    return response


def test_realtime_response_done_carries_safety_metadata(client: TestClient, fakes: FakeModels) -> None:
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        crisis = _realtime_text_turn(ws, CRISIS)
        assert fakes.llm.prompts == []
        ordinary = _realtime_text_turn(ws, "Hello.")
    safety = json.loads(crisis["metadata"]["safety"])
    assert safety["flagged"] is True and safety["category"] == "suicide" and safety["level"] == "concern"
    assert crisis["output"][0]["content"][0]["transcript"] == _protocol_reply(client)
    later = json.loads(ordinary["metadata"]["safety"])
    assert later["flagged"] is False and later["mode"] is True  # still in safety mode: checked on
    assert ordinary["output"][0]["content"][0]["transcript"].endswith(_check_in(client))


def test_realtime_ordinary_turn_metadata_not_flagged(client: TestClient) -> None:
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        response = _realtime_text_turn(ws, ORDINARY)
    assert json.loads(response["metadata"]["safety"])["flagged"] is False


def test_realtime_response_done_says_when_the_reply_check_stopped_the_reply(
    client: TestClient, fakes: FakeModels
) -> None:
    fakes.llm.reply = UNSAFE
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        response = _realtime_text_turn(ws, ORDINARY)
    safety = json.loads(response["metadata"]["safety"])
    assert safety["reply_blocked"] is True and safety["flagged"] is False
    assert "natural" not in response["output"][0]["content"][0]["transcript"].lower()


# --- safety mode ---------------------------------------------------------------------------------------------


def test_safety_mode_checks_in_until_the_person_says_they_are_safe(client: TestClient, fakes: FakeModels) -> None:
    session = _chat(client, CRISIS)["session_id"]
    check_in = _check_in(client)

    later = _chat(client, ORDINARY, session_id=session)
    assert later["response"] == f"{fakes.llm.reply} {check_in}"
    assert later["safety"] == {**NOT_FLAGGED, "mode": True}
    prompt = _prompt_text(fakes)
    assert ORDINARY in prompt
    assert CRISIS_WORDS not in prompt and "988" not in prompt  # neither the crisis nor the written answer

    prompts = len(fakes.llm.prompts)
    safe = _chat(client, "I'm safe now", session_id=session)
    assert safe["response"] == _text(services_of(client).shared.safety.protocol.safe_ack(None))
    assert safe["safety"]["mode"] is False
    assert len(fakes.llm.prompts) == prompts  # the acknowledgement is written too

    after = _chat(client, ORDINARY, session_id=session)
    assert after["response"] == fakes.llm.reply
    assert after["safety"] == {**NOT_FLAGGED, "mode": False}


def test_not_safe_answer_gets_the_protocol_again_as_urgent(client: TestClient, fakes: FakeModels) -> None:
    session = _chat(client, CRISIS)["session_id"]
    again = _chat(client, "no", session_id=session)
    assert again["safety"] == {"flagged": True, "category": "suicide", "level": "urgent", "mode": True}
    assert again["response"] == _protocol_reply(client, level="urgent")
    assert fakes.llm.prompts == []


def test_a_new_crisis_in_safety_mode_gets_the_protocol_again(client: TestClient, fakes: FakeModels) -> None:
    session = _chat(client, CRISIS)["session_id"]
    again = _chat(client, "My husband hits me when he drinks.", session_id=session)
    assert again["safety"]["category"] == "abuse" and again["safety"]["flagged"] is True
    assert again["response"] == _protocol_reply(client, category="abuse")
    assert fakes.llm.prompts == []


# --- locale ----------------------------------------------------------------------------------------------------


def test_safety_locale_gb_and_unknown(client: TestClient) -> None:
    gb = _chat(client, CRISIS, safety_locale="GB")["response"]
    assert "116 123" in gb and "999" in gb and "988" not in gb and "911" not in gb
    uk = _chat(client, CRISIS, safety_locale="uk")["response"]
    assert uk == gb
    unknown = _chat(client, CRISIS, safety_locale="ZZ")["response"]
    assert "your local emergency number" in unknown and "988" not in unknown


def test_session_locale_is_kept_for_later_turns(client: TestClient, fakes: FakeModels) -> None:
    session = _chat(client, "Hello there.", safety_locale="GB")["session_id"]
    later = _chat(client, CRISIS, session_id=session)["response"]
    assert "116 123" in later and "999" in later


# --- the record --------------------------------------------------------------------------------------------------


def test_history_insights_and_metrics_record_the_flag(client: TestClient) -> None:
    session = _chat(client, CRISIS)["session_id"]
    settle(client)
    turns = client.get(f"/api/sessions/{session}/history").json()["turns"]
    user = next(t for t in turns if t["role"] == "user")
    assert user["safety"]["flagged"] is True and user["safety"]["category"] == "suicide"
    assistant = next(t for t in turns if t["role"] == "assistant")
    assert assistant["safety"] == {"written": True}

    points = client.get(f"/api/sessions/{session}/insights").json()["arc"]["points"]
    assert len(points) == 1 and points[0]["safety"] is not None
    assert points[0]["safety"]["category"] == "suicide"

    metrics = client.get("/metrics").text
    assert 'claritymentor_safety_flags_total{category="suicide",level="concern"} 1.0' in metrics


@pytest.fixture
def memory_client(tmp_path: Path) -> Iterator[tuple[TestClient, FakeModels]]:
    fakes = FakeModels(embedder=FakeEmbedder())
    settings = make_settings(tmp_path, memory__min_similarity=0.3)
    with TestClient(create_app(settings, models=fakes.service(settings))) as client:
        yield client, fakes


FACT = "My sister Anna is getting married next month and I have to give a speech."


def test_a_flagged_turn_is_never_kept_as_a_memory_nor_titles_the_session(
    memory_client: tuple[TestClient, FakeModels],
) -> None:
    client, _ = memory_client
    flagged = _chat(client, f"{FACT} {CRISIS}", user_id="u1")
    assert flagged["safety"]["flagged"] is True
    settle(client)
    assert client.get("/api/memories", params={"user_id": "u1"}).json()["memories"] == []
    assert services_of(client).store.sync.memories.list("-/u1") == ([], 0)  # the store's own view agrees
    sessions = client.get("/api/sessions").json()["sessions"]
    assert [s["title"] for s in sessions if s["id"] == flagged["session_id"]] == [None]

    # the same fact in an ordinary turn is kept: the test could see a memory
    ordinary = _chat(client, FACT, user_id="u2")
    settle(client)
    kept = client.get("/api/memories", params={"user_id": "u2"}).json()["memories"]
    assert [m["text"] for m in kept] == [FACT]
    sessions = client.get("/api/sessions").json()["sessions"]
    assert [s["title"] for s in sessions if s["id"] == ordinary["session_id"]] != [None]


def test_safety_mode_survives_a_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    fakes = FakeModels()
    with TestClient(create_app(settings, models=fakes.service(settings))) as first_app:
        session = _chat(first_app, CRISIS)["session_id"]
    with TestClient(create_app(settings, models=fakes.service(settings))) as second_app:
        later = _chat(second_app, ORDINARY, session_id=session)
        assert later["response"] == f"{fakes.llm.reply} {_check_in(second_app)}"
        assert later["safety"]["mode"] is True
    assert CRISIS_WORDS not in _prompt_text(fakes)


# --- the reply check ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "planted",
    [UNSAFE, UNSAFE_SECOND],
)
def test_a_planted_unsafe_model_reply_is_never_sent(client: TestClient, fakes: FakeModels, planted: str) -> None:
    fakes.llm.reply = planted
    body = _chat(client, ORDINARY)
    blocked = _text(services_of(client).shared.safety.protocol.reply_blocked(None))
    assert body["response"].endswith(blocked)
    assert "natural" not in body["response"].lower()
    assert body["safety"]["reply_blocked"] is True and body["safety"]["flagged"] is False
    metrics = client.get("/metrics").text
    assert 'claritymentor_safety_replies_blocked_total{reason="normalises_harm"} 1.0' in metrics
    turns = client.get(f"/api/sessions/{body['session_id']}/history").json()["turns"]
    assistant = [t for t in turns if t["role"] == "assistant"]
    assert [t["text"] for t in assistant] == [body["response"]] and assistant[0]["safety"] == {"written": True}
    if planted == UNSAFE:
        assert body["response"] == blocked


@pytest.mark.parametrize(
    "planted",
    [UNSAFE, UNSAFE_SECOND],
)
def test_a_planted_unsafe_model_reply_is_never_spoken(client: TestClient, fakes: FakeModels, planted: str) -> None:
    fakes.llm.reply = planted
    with client.websocket_connect("/ws/voice") as ws:
        ws.receive_json()
        ws.send_json({"type": "text", "text": ORDINARY})
        got = receive_until(ws, "metrics")
    said = " ".join(fakes.tts.texts).lower()
    assert "natural" not in said and "die" not in re.findall(r"[a-z]+", said)
    deltas = " ".join(e["text"] for e in got.events if e["type"] == "response.delta")
    assert "natural" not in deltas.lower()
    assert "natural" not in got.first("response")["text"].lower()
