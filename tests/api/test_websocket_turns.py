"""/ws/voice turn logic with fake models: event order, streaming, barge-in, resume, sequential mode."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.engines.protocols import ChatMessage
from backend.main import create_app
from tests.api.wsutil import Received, receive_until
from tests.conftest import make_settings
from tests.fakes import FakeModels, silence_pcm, tone_pcm

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

SEED_ORDER = [
    "Processing...",
    "Transcribing...",
    "transcript",
    "Detecting emotion...",
    "emotion",
    "Generating response...",
    "response",
    "Synthesizing speech...",
    "<audio>",
]


def _seed_positions(got: Received) -> list[int]:
    """Index in arrival order of each seed message (status messages by text, others by type)."""
    labels = [e.get("message", e["type"]) if e["type"] == "status" else e["type"] for e in got.events]
    flat: list[str] = []
    i = 0
    for item in got.order:
        if item == "<audio>":
            flat.append("<audio>")
        else:
            flat.append(labels[i])
            i += 1
    return [flat.index(name) for name in SEED_ORDER]


def _speak(ws, seconds: float = 1.0) -> None:  # type: ignore[no-untyped-def]
    for chunk in (silence_pcm(0.3), tone_pcm(seconds), silence_pcm(0.8)):
        for i in range(0, len(chunk), 640):
            ws.send_bytes(chunk[i : i + 640])


def test_voice_turn_sends_seed_messages_in_order(client: TestClient, fakes: FakeModels) -> None:
    """A spoken utterance (VAD-endpointed) yields the seed product's messages in order, plus streaming events."""
    with client.websocket_connect("/ws/voice") as ws:
        session = ws.receive_json()
        assert session["type"] == "session" and session["protocol"] == "1"
        _speak(ws)
        got = receive_until(ws, "metrics")
    types = got.types()
    assert types[:2] == ["speech_started", "speech_stopped"]
    # Streaming keeps the seed order up to `response`, and `Synthesizing speech...` before the audio; the first
    # audio may come before `response` (docs/PROTOCOL.md), which only has to precede `audio.end`.
    positions = _seed_positions(got)
    assert positions[:7] == sorted(positions[:7]), got.order
    assert positions[5] < positions[7] < positions[8], got.order
    assert got.order.index("response") < got.order.index("audio.end"), got.order
    assert got.first("transcript")["text"] == fakes.stt.transcript
    assert got.first("emotion")["data"]["label"] == "sad"
    assert "response.delta" in types and "audio.start" in types and "audio.end" in types
    assert got.first("response")["text"] == fakes.llm.reply
    assert len(got.audio) == got.first("audio.end")["bytes"] > 0
    # The first sentence was synthesized on its own: streaming, not one synthesis of the whole reply.
    assert fakes.tts.texts[0] == "That sounds hard."
    assert fakes.stt.calls and 1.0 <= fakes.stt.calls[0] <= 2.5
    # The turn started at the pause, during the hangover, and was confirmed: one transcription.
    assert len(fakes.stt.calls) == 1
    assert got.first("metrics")["early_start"] is True


def test_first_audio_leaves_before_the_reply_is_finished(client: TestClient, fakes: FakeModels) -> None:
    """Streaming: audio of the first sentence is sent while the LLM is still generating."""
    fakes.llm.hold_after = 4  # blocks after "That sounds hard. You"
    with client.websocket_connect("/ws/voice") as ws:
        ws.receive_json()
        ws.send_json({"type": "text", "text": "hello"})
        got = receive_until(ws, "audio.start")
        first_audio = ws.receive_bytes()
        assert first_audio
        assert "response" not in got.types()
        fakes.llm.release.set()
        receive_until(ws, "metrics", got)
    assert got.first("response")["text"] == fakes.llm.reply


def test_speech_after_a_pause_is_transcribed_again(tmp_path: Path) -> None:
    """Speculative STT alone (early start off): when the user goes on after a short pause, that pause's
    transcript is discarded; the one used covers the whole utterance."""
    settings = make_settings(tmp_path, pipeline__early_start=False)
    fakes = FakeModels()
    with (
        TestClient(create_app(settings, models=fakes.service(settings))) as client,
        client.websocket_connect("/ws/voice") as ws,
    ):
        ws.receive_json()
        for chunk in (silence_pcm(0.3), tone_pcm(0.6), silence_pcm(0.39), tone_pcm(0.6), silence_pcm(0.8)):
            for i in range(0, len(chunk), 640):
                ws.send_bytes(chunk[i : i + 640])
        got = receive_until(ws, "metrics")
    assert len(fakes.stt.calls) == 2  # one at the mid-utterance pause (discarded), one at the final pause
    assert fakes.stt.calls[0] < 1.35 < 1.6 <= fakes.stt.calls[1]
    metrics = got.first("metrics")
    assert metrics["speculative_stt"] is True and metrics["early_start"] is False


def test_early_start_talked_over_sends_and_stores_nothing(client: TestClient, fakes: FakeModels) -> None:
    """A turn started early at a mid-utterance pause is cancelled when the user goes on: the client gets one
    transcript and one reply (for the whole utterance) and the history holds exactly one exchange."""
    with client.websocket_connect("/ws/voice") as ws:
        session_id = ws.receive_json()["session_id"]
        for chunk in (silence_pcm(0.3), tone_pcm(0.6), silence_pcm(0.39), tone_pcm(0.6), silence_pcm(0.8)):
            for i in range(0, len(chunk), 640):
                ws.send_bytes(chunk[i : i + 640])
        got = receive_until(ws, "metrics")
    assert got.types().count("transcript") == 1 and got.types().count("response") == 1
    assert got.types().count("speech_stopped") == 1
    assert fakes.stt.calls[-1] >= 1.5  # the confirmed turn covers both phrases
    assert got.first("metrics")["early_start"] is True
    history = client.get(f"/api/sessions/{session_id}/history").json()["turns"]
    assert [t["role"] for t in history] == ["user", "assistant"]


def test_early_start_error_is_reported_after_confirmation(client: TestClient, fakes: FakeModels) -> None:
    """A failure inside an early-started turn is held with its output and reported once the turn is real."""
    fakes.stt.transcript = ""
    with client.websocket_connect("/ws/voice") as ws:
        ws.receive_json()
        for chunk in (silence_pcm(0.3), tone_pcm(0.8), silence_pcm(0.8)):
            for i in range(0, len(chunk), 640):
                ws.send_bytes(chunk[i : i + 640])
        got = receive_until(ws, "error")
    assert got.first("error")["code"] == "no_speech"
    assert got.order.index("speech_stopped") < got.order.index("error")


def test_push_to_talk_commit_ends_the_turn(client: TestClient, fakes: FakeModels) -> None:
    """input.commit ends the utterance at once, without waiting for the VAD's trailing silence."""
    with client.websocket_connect("/ws/voice") as ws:
        ws.receive_json()
        ws.send_bytes(tone_pcm(0.6))
        ws.send_json({"type": "input.commit"})
        got = receive_until(ws, "metrics")
    assert "speech_stopped" in got.types()
    assert got.first("transcript")["text"] == fakes.stt.transcript


def test_barge_in_interrupts_and_stores_what_was_sent(client: TestClient, fakes: FakeModels) -> None:
    """Speech while the mentor answers stops the LLM, sends `interrupted`, and stores only the spoken part."""
    fakes.llm.hold_after = 4
    with client.websocket_connect("/ws/voice") as ws:
        session_id = ws.receive_json()["session_id"]
        ws.send_json({"type": "text", "text": "I had a rough day"})
        got = receive_until(ws, "audio.start")
        ws.receive_bytes()
        _speak(ws, seconds=0.8)
        receive_until(ws, "interrupted", got)
        interrupted = got.first("interrupted")
        assert interrupted["spoken_text"] == "That sounds hard."
        assert fakes.llm.stopped.wait(5), "the LLM generation was not stopped"
        # The barge-in utterance becomes the next turn; release the LLM so it can answer it.
        fakes.llm.release.set()
        receive_until(ws, "metrics", got)
    history = client.get(f"/api/sessions/{session_id}/history").json()["turns"]
    assistant = [t for t in history if t["role"] == "assistant"]
    assert assistant[0]["interrupted"] is True
    assert assistant[0]["text"] == "That sounds hard."
    assert [t["role"] for t in history] == ["user", "assistant", "user", "assistant"]


def test_response_cancel_stops_the_reply(client: TestClient, fakes: FakeModels) -> None:
    """response.cancel interrupts the current reply like a barge-in."""
    fakes.llm.hold_after = 4
    with client.websocket_connect("/ws/voice") as ws:
        ws.receive_json()
        ws.send_json({"type": "text", "text": "hi"})
        receive_until(ws, "audio.start")
        ws.send_json({"type": "response.cancel"})
        got = receive_until(ws, "interrupted")
    assert got.first("interrupted")["turn_id"]


def test_session_resume_continues_history(tmp_path: Path) -> None:
    """A session id given in session.start resumes that conversation: its history reaches the prompt."""
    settings = make_settings(tmp_path)
    fakes = FakeModels()
    with TestClient(create_app(settings, models=fakes.service(settings))) as client:
        with client.websocket_connect("/ws/voice") as ws:
            session_id = ws.receive_json()["session_id"]
            ws.send_json({"type": "text", "text": "My dog is called Biscuit"})
            receive_until(ws, "metrics")
        with client.websocket_connect("/ws/voice") as ws:
            ws.receive_json()
            ws.send_json({"type": "session.start", "session_id": session_id})
            resumed = receive_until(ws, "session").first("session")
            assert resumed["resumed"] is True and resumed["session_id"] == session_id
            ws.send_json({"type": "text", "text": "What is my dog called?"})
            receive_until(ws, "metrics")
    last_prompt = fakes.llm.prompts[-1]
    assert any("Biscuit" in m.content for m in last_prompt if m.role == "user")
    assert last_prompt[-1].content == "What is my dog called?"


def test_sequential_mode_sends_whole_reply_then_speech(tmp_path: Path) -> None:
    """Sequential mode (the seed's way): full reply, then one synthesis, then audio."""
    settings = make_settings(tmp_path, pipeline__mode="sequential")
    fakes = FakeModels()
    with TestClient(create_app(settings, models=fakes.service(settings))) as client:
        with client.websocket_connect("/ws/voice") as ws:
            assert ws.receive_json()["mode"] == "sequential"
            ws.send_json({"type": "text", "text": "hello"})
            got = receive_until(ws, "metrics")
    order = got.order
    assert order.index("response") < order.index("audio.start") < order.index("<audio>")
    assert fakes.tts.texts == [fakes.llm.reply]


def test_sequential_voice_turn_sends_every_seed_message_in_order(tmp_path: Path) -> None:
    """Sequential mode keeps the seed product's whole order for a spoken turn, `response` before any audio."""
    settings = make_settings(tmp_path, pipeline__mode="sequential")
    fakes = FakeModels()
    with TestClient(create_app(settings, models=fakes.service(settings))) as client:
        with client.websocket_connect("/ws/voice") as ws:
            ws.receive_json()
            _speak(ws)
            got = receive_until(ws, "metrics")
    positions = _seed_positions(got)
    assert positions == sorted(positions), got.order


def test_two_connections_share_the_models(client: TestClient, fakes: FakeModels) -> None:
    """Several connections at once each get their own session and complete turns."""
    with client.websocket_connect("/ws/voice") as a, client.websocket_connect("/ws/voice") as b:
        sa, sb = a.receive_json()["session_id"], b.receive_json()["session_id"]
        a.send_json({"type": "text", "text": "one"})
        b.send_json({"type": "text", "text": "two"})
        receive_until(a, "metrics")
        receive_until(b, "metrics")
    assert sa != sb


@pytest.mark.parametrize("enabled", [True, False])
def test_the_next_prompt_start_is_warmed_between_turns(tmp_path: Path, enabled: bool) -> None:
    """At startup the system prompt is prefilled (what every fresh session starts with); after a turn, the next
    prompt's start (system prompt and history), which is exactly what the next turn's prompt begins with;
    llm.warm_between_turns=false turns both off."""
    settings = make_settings(tmp_path)
    settings.llm.warm_between_turns = enabled
    fakes = FakeModels()

    def after_first_turn(warmed: list[list[ChatMessage]]) -> bool:
        return any(len(w) > 1 and w[1].content == "My dog is called Biscuit" for w in warmed)

    with TestClient(create_app(settings, models=fakes.service(settings))) as client:
        with client.websocket_connect("/ws/voice") as ws:
            ws.receive_json()
            ws.send_json({"type": "text", "text": "My dog is called Biscuit"})
            receive_until(ws, "metrics")
            if enabled:
                assert fakes.llm.wait_warmed(after_first_turn)
            ws.send_json({"type": "text", "text": "What is my dog called?"})
            receive_until(ws, "metrics")
    if not enabled:
        assert fakes.llm.warmed == []
        return
    startup = fakes.llm.warmed[0]
    assert [m.role for m in startup] == ["system"]
    assert fakes.llm.prompts[0][0] == startup[0]
    first_warm = next(w for w in fakes.llm.warmed if after_first_turn([w]))
    next_prompt = fakes.llm.prompts[1]
    assert [m.role for m in first_warm] == ["system", "user", "assistant"]
    assert next_prompt[: len(first_warm)] == first_warm
    assert next_prompt[-1].content == "What is my dog called?"
