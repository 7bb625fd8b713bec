"""A client that disconnects mid-answer or mid-utterance, on a real uvicorn: generation stops, and the stored
history says exactly what happened (partial reply marked interrupted; the user's cut-off speech kept)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.fakes import FakeModels, silence_pcm, tone_pcm
from tests.hardening.harness import serve, wait_for
from tests.hardening.live import recv_event, recv_until, ws_connect

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]


def test_disconnect_mid_answer_stops_generation_and_stores_what_was_sent(tmp_path: Path, fakes: FakeModels) -> None:
    """Closing the socket while the LLM generates sets the stop event (FakeLLM.stopped), frees the
    connection, and stores the assistant turn with interrupted=True and the text whose audio was sent."""
    fakes.llm.hold_after = 5  # "That sounds hard. You are" then waits
    with serve(make_settings(tmp_path), fakes) as served:
        with ws_connect(served.url) as ws:
            session_id = recv_event(ws)["session_id"]
            ws.send(json.dumps({"type": "text", "text": "help me"}))
            recv_until(ws, "audio.start")
            assert isinstance(ws.recv(timeout=5), bytes)  # the first sentence's audio has been sent
        assert fakes.llm.stopped.wait(5), "the generation was not stopped"
        wait_for(lambda: not served.services.connections, 5, "the handler to be released")
        history = served.services.store.sync.history(session_id)
    assert [(t.role, t.interrupted) for t in history] == [("user", False), ("assistant", True)]
    assert history[0].text == "help me"
    assert history[1].text == "That sounds hard."


def test_disconnect_mid_utterance_stores_the_user_turn(tmp_path: Path, fakes: FakeModels) -> None:
    """Speech that started but never ended when the socket closed is transcribed and stored as a user turn
    (marked interrupted): nothing the user said is lost."""
    with serve(make_settings(tmp_path), fakes) as served:
        with ws_connect(served.url) as ws:
            session_id = recv_event(ws)["session_id"]
            pcm = silence_pcm(0.3) + tone_pcm(1.0)  # no trailing silence: the utterance is still open
            for i in range(0, len(pcm), 640):
                ws.send(pcm[i : i + 640])
            recv_until(ws, "speech_started")
        wait_for(lambda: not served.services.connections, 5, "the handler to be released")
        history = served.services.store.sync.history(session_id)
    assert [(t.role, t.text, t.interrupted) for t in history] == [("user", fakes.stt.transcript, True)]
    assert fakes.stt.calls and 0.9 <= fakes.stt.calls[0] <= 1.5
    assert not fakes.llm.prompts  # it was stored, not answered


def test_disconnect_with_queued_turns_stores_them_unanswered(tmp_path: Path, fakes: FakeModels) -> None:
    """Text turns queued behind a running turn are stored as interrupted user turns when the client leaves."""
    fakes.llm.hold_after = 4  # the first clause, "That sounds hard.", goes out; then the LLM waits
    with serve(make_settings(tmp_path), fakes) as served:
        with ws_connect(served.url) as ws:
            session_id = recv_event(ws)["session_id"]
            for text in ("first", "second", "third"):
                ws.send(json.dumps({"type": "text", "text": text}))
            recv_until(ws, "response.delta")
        wait_for(lambda: not served.services.connections, 5, "the handler to be released")
        history = served.services.store.sync.history(session_id)
    users = [(t.text, t.interrupted) for t in history if t.role == "user"]
    assert users == [("first", False), ("second", True), ("third", True)]
    assert [t.interrupted for t in history if t.role == "assistant"] == [True]
