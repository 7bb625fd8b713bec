"""/v1/realtime with fake models: the GA event mapping, ids, formats, turn taking, barge-in, truncate, resume."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.config import MentorSettings
from backend.core import g711
from backend.main import create_app
from backend.mentor.personas import load_personas
from backend.mentor.prompt_builder import load_mentor_prompt
from tests.api.rtutil import RATE, append, b64, first, speak, types, until
from tests.conftest import make_settings
from tests.fakes import FakeModels, silence_pcm, tone_pcm

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

MANUAL = {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}}}


def test_session_created_first_with_the_realtime_subprotocol(client: TestClient) -> None:
    """The `realtime` subprotocol is accepted; session.created comes first with its event_id, the GA session
    shape (24 kHz PCM both ways, server VAD) and our extension naming the stored session."""
    with client.websocket_connect("/v1/realtime?model=gpt-realtime", subprotocols=["realtime"]) as ws:
        assert ws.accepted_subprotocol == "realtime"
        created = ws.receive_json()
    assert created["type"] == "session.created" and created["event_id"].startswith("event_")
    session = created["session"]
    assert session["type"] == "realtime" and session["model"] == "gpt-realtime"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert session["claritymentor"]["session_id"] and session["claritymentor"]["resumed"] is False


def test_spoken_turn_maps_to_the_ga_event_sequence(client: TestClient, fakes: FakeModels) -> None:
    """Server VAD: speech_started, speech_stopped, committed and the user item, then one response with its ids,
    the transcription (carrying the emotion), transcript and audio deltas (24 kHz PCM), and response.done
    completed with usage and the emotion in metadata; item ids tie every event together."""
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        speak(ws)
        got = until(ws, "response.done")
    order = types(got)
    assert order[:5] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    item_id = first(got, "input_audio_buffer.committed")["item_id"]
    assert first(got, "input_audio_buffer.speech_started")["item_id"] == item_id
    # The words (the tone) are 0.3-1.3 s into the audio; the silence that ended the turn is not counted.
    assert abs(first(got, "input_audio_buffer.speech_started")["audio_start_ms"] - 300) <= 100
    assert abs(first(got, "input_audio_buffer.speech_stopped")["audio_end_ms"] - 1300) <= 100
    done = first(got, "conversation.item.input_audio_transcription.completed")
    assert done["item_id"] == item_id and done["transcript"] == fakes.stt.transcript
    assert done["emotion"]["label"] == "sad" and done["usage"]["type"] == "duration"
    response = first(got, "response.created")["response"]
    deltas = [e for e in got if e["type"] == "response.output_audio.delta"]
    assert deltas and {(e["response_id"], e["output_index"], e["content_index"]) for e in deltas} == {
        (response["id"], 0, 0)
    }
    audio = b"".join(base64.b64decode(e["delta"]) for e in deltas)
    spoken_s = len(" ".join(fakes.tts.texts).split()) * fakes.tts.seconds_per_word
    assert abs(len(audio) / 2 / RATE - spoken_s) < 0.05  # resampled 16 -> 24 kHz, nothing lost
    transcript = "".join(e["delta"] for e in got if e["type"] == "response.output_audio_transcript.delta")
    assert transcript == fakes.llm.reply
    assert order.index("response.output_audio.done") < order.index("response.output_audio_transcript.done")
    assert order[-4:] == [
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    final = got[-1]["response"]
    assert final["id"] == response["id"] and final["status"] == "completed"
    assert final["output"][0]["content"][0]["transcript"] == fakes.llm.reply
    assert final["usage"]["output_tokens"] > 0 and final["metadata"]["emotion"] == "sad"
    assert len({e["event_id"] for e in got}) == len(got)


def test_text_item_waits_for_response_create_and_second_turn_sees_the_first(
    client: TestClient, fakes: FakeModels
) -> None:
    """conversation.item.create adds the user's text (echoed with the client's item id) and starts nothing;
    response.create answers it; a second response.create meanwhile is refused with its event_id; the next
    turn's prompt holds the first exchange."""
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        ws.send_json(
            {
                "type": "conversation.item.create",
                "item": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "I failed my exam."}],
                },
            }
        )
        added = until(ws, "conversation.item.done")
        assert added[0]["item"]["id"] == "msg_1" and added[0]["item"]["content"][0]["text"] == "I failed my exam."
        assert not fakes.llm.prompts
        fakes.llm.hold_after = 4  # text goes out a checked clause at a time: "That sounds hard." then it waits
        ws.send_json({"type": "response.create"})
        until(ws, "response.output_audio_transcript.delta")
        ws.send_json({"type": "response.create", "event_id": "evt_again"})
        error = first(until(ws, "error"), "error")["error"]
        assert error["code"] == "conversation_already_has_active_response" and error["event_id"] == "evt_again"
        fakes.llm.release.set()
        assert until(ws, "response.done")[-1]["response"]["status"] == "completed"
        ws.send_json(
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "What now?"}]},
            }
        )
        ws.send_json({"type": "response.create"})
        until(ws, "response.done")
    second_prompt = " ".join(m.content for m in fakes.llm.prompts[1])
    assert "I failed my exam." in second_prompt and fakes.llm.reply in second_prompt


def test_manual_turns_commit_then_response_create(client: TestClient, fakes: FakeModels) -> None:
    """turn_detection null: no VAD events and no automatic reply; commit makes the user item and
    response.create answers it; committing an empty buffer is input_audio_buffer_commit_empty."""
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        ws.send_json(MANUAL)
        assert until(ws, "session.updated")[-1]["session"]["audio"]["input"]["turn_detection"] is None
        speak(ws)
        ws.send_json({"type": "input_audio_buffer.commit"})
        committed = until(ws, "conversation.item.done")
        assert types(committed)[0] == "input_audio_buffer.committed"
        assert not fakes.stt.calls
        ws.send_json({"type": "input_audio_buffer.commit", "event_id": "evt_empty"})
        error = first(until(ws, "error"), "error")["error"]
        assert error["code"] == "input_audio_buffer_commit_empty" and error["event_id"] == "evt_empty"
        ws.send_json({"type": "response.create"})
        got = until(ws, "response.done")
    assert "input_audio_buffer.speech_started" not in types(got)
    assert first(got, "conversation.item.input_audio_transcription.completed")["item_id"] == committed[0]["item_id"]
    assert got[-1]["response"]["status"] == "completed"


def test_clear_forgets_uncommitted_audio(client: TestClient) -> None:
    """input_audio_buffer.clear answers cleared; a commit after it has nothing to commit."""
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        ws.send_json(MANUAL)
        until(ws, "session.updated")
        append(ws, tone_pcm(0.5, RATE))
        ws.send_json({"type": "input_audio_buffer.clear"})
        until(ws, "input_audio_buffer.cleared")
        ws.send_json({"type": "input_audio_buffer.commit"})
        assert first(until(ws, "error"), "error")["error"]["code"] == "input_audio_buffer_commit_empty"


@pytest.mark.parametrize(("fmt", "law"), [("audio/pcmu", "ulaw"), ("audio/pcma", "alaw")])
def test_g711_in_and_out_at_8khz(client: TestClient, fakes: FakeModels, fmt: str, law: g711.Law) -> None:
    """G.711 µ-law / A-law: 8 kHz telephony audio in is heard by the VAD and STT, the reply comes back as one
    byte per sample at 8 kHz."""
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        audio = {"input": {"format": {"type": fmt}}, "output": {"format": {"type": fmt}}}
        ws.send_json({"type": "session.update", "session": {"type": "realtime", "audio": audio}})
        assert until(ws, "session.updated")[-1]["session"]["audio"]["output"]["format"] == {"type": fmt}
        pcm = silence_pcm(0.3, 8000) + tone_pcm(1.0, 8000) + silence_pcm(0.8, 8000)
        encoded = g711.encode(pcm, law)
        for i in range(0, len(encoded), 800):
            ws.send_json({"type": "input_audio_buffer.append", "audio": b64(encoded[i : i + 800])})
        got = until(ws, "response.done")
    assert fakes.stt.calls and 0.9 <= fakes.stt.calls[0] <= 2.5
    audio_out = b"".join(base64.b64decode(e["delta"]) for e in got if e["type"] == "response.output_audio.delta")
    spoken_s = len(" ".join(fakes.tts.texts).split()) * fakes.tts.seconds_per_word
    assert abs(len(audio_out) / 8000 - spoken_s) < 0.05


def test_barge_in_cancels_and_truncate_stores_what_was_heard(client: TestClient, fakes: FakeModels) -> None:
    """Speech during a reply ends it with response.done cancelled (turn_detected); truncating the reply at
    0.25 s stores only the words heard by then (interrupted) and answers conversation.item.truncated; a
    truncate past the audio sent is refused."""
    fakes.llm.hold_after = 6  # "That sounds hard. You are not" then waits
    with client.websocket_connect("/v1/realtime") as ws:
        session_id = ws.receive_json()["session"]["claritymentor"]["session_id"]
        speak(ws)
        until(ws, "response.output_audio.delta")
        speak(ws, 0.6)
        got = until(ws, "response.done")
        cancelled = got[-1]["response"]
        assert cancelled["status"] == "cancelled" and cancelled["status_details"]["reason"] == "turn_detected"
        item_id = cancelled["output"][0]["id"]
        assert cancelled["output"][0]["status"] == "incomplete"
        fakes.llm.release.set()
        until(ws, "response.done")  # the interrupting speech is answered
        truncate = {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0}
        ws.send_json({**truncate, "audio_end_ms": 5000})
        assert first(until(ws, "error"), "error")["error"]["code"] == "invalid_audio_end"
        ws.send_json({**truncate, "audio_end_ms": 250})
        truncated = first(until(ws, "conversation.item.truncated"), "conversation.item.truncated")
        assert truncated["item_id"] == item_id and truncated["audio_end_ms"] == 250
        ws.send_json({"type": "conversation.item.retrieve", "item_id": item_id})
        item = first(until(ws, "conversation.item.retrieved"), "conversation.item.retrieved")["item"]
    # The only chunk sent, "That sounds hard.", is 0.3 s of audio (0.1 s a word): 0.25 s of it is two words.
    assert item["content"][0]["transcript"] == "That sounds"
    turns = client.get(f"/api/sessions/{session_id}/history").json()["turns"]
    assert turns[1]["role"] == "assistant" and turns[1]["text"] == "That sounds" and turns[1]["interrupted"]


def test_response_cancel(client: TestClient, fakes: FakeModels) -> None:
    """response.cancel stops the running reply (cancelled, client_cancelled); with none running it is
    response_cancel_not_active."""
    fakes.llm.hold_after = 4  # "That sounds hard." is released (a clause, once checked), then it waits
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        ws.send_json({"type": "response.cancel", "event_id": "evt_nothing"})
        error = first(until(ws, "error"), "error")["error"]
        assert error["code"] == "response_cancel_not_active" and error["event_id"] == "evt_nothing"
        speak(ws)
        until(ws, "response.output_audio_transcript.delta")
        ws.send_json({"type": "response.cancel"})
        done = until(ws, "response.done")[-1]["response"]
    assert done["status"] == "cancelled" and done["status_details"]["reason"] == "client_cancelled"


def test_session_resumes_by_query_parameter(tmp_path: Path) -> None:
    """?session_id= resumes the caller's stored session (resumed true, same id) or names a new one; another
    key's session gets an error session_not_found and a close (its existence stays private)."""
    settings = make_settings(tmp_path, auth__api_keys=["k-1", "k-2"])
    fakes = FakeModels()
    own, other = {"Authorization": "Bearer k-1"}, {"Authorization": "Bearer k-2"}
    with TestClient(create_app(settings, models=fakes.service(settings))) as client:
        session_id = client.post("/api/sessions", json={}, headers=own).json()["id"]
        with client.websocket_connect(f"/v1/realtime?session_id={session_id}", headers=own) as ws:
            assert ws.receive_json()["session"]["claritymentor"] == {"session_id": session_id, "resumed": True}
        with client.websocket_connect("/v1/realtime?session_id=my-new-session", headers=own) as ws:
            mentor = ws.receive_json()["session"]["claritymentor"]
            assert mentor == {"session_id": "my-new-session", "resumed": False}
        with client.websocket_connect(f"/v1/realtime?session_id={session_id}", headers=other) as ws:
            error = ws.receive_json()
            assert error["type"] == "error" and error["error"]["code"] == "session_not_found"
            assert ws.receive()["type"] == "websocket.close"


def test_text_only_output_synthesizes_nothing(client: TestClient, fakes: FakeModels) -> None:
    """output_modalities ["text"]: the reply streams as output_text deltas, no audio events, no synthesis."""
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        ws.send_json({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
        until(ws, "session.updated")
        ws.send_json(
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi."}]},
            }
        )
        ws.send_json({"type": "response.create"})
        got = until(ws, "response.done")
    assert "".join(e["delta"] for e in got if e["type"] == "response.output_text.delta") == fakes.llm.reply
    assert first(got, "response.output_text.done")["text"] == fakes.llm.reply
    assert not [e for e in got if "audio" in e["type"]] and not fakes.tts.texts
    assert got[-1]["response"]["output"][0]["content"][0] == {
        "type": "output_text",
        "text": fakes.llm.reply,
        "transcript": None,
    }


def test_instructions_naming_a_persona_choose_it(client: TestClient, fakes: FakeModels) -> None:
    """session.update instructions that name a persona ("persona: study-coach") make it the session's persona: the
    next reply's prompt starts with that persona's system prompt; free-text instructions keep the default."""
    personas = load_personas(MentorSettings())
    base = load_mentor_prompt(MentorSettings())
    coach = personas.get("study-coach").prompt(base).system_prompt
    default = personas.default.prompt(base).system_prompt
    assert coach != default
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "I cannot focus."}]}
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        ws.send_json({"type": "session.update", "session": {"type": "realtime", "instructions": "Be kind."}})
        until(ws, "session.updated")
        ws.send_json({"type": "conversation.item.create", "item": item})
        ws.send_json({"type": "response.create"})
        until(ws, "response.done")
        ws.send_json(
            {"type": "session.update", "session": {"type": "realtime", "instructions": "persona: study-coach"}}
        )
        until(ws, "session.updated")
        ws.send_json({"type": "conversation.item.create", "item": item})
        ws.send_json({"type": "response.create"})
        until(ws, "response.done")
    assert fakes.llm.prompts[0][0].content == default
    assert fakes.llm.prompts[-1][0].content == coach
