"""/ws/voice turns whose LLM is the remote engine (llm.backend: openai) on a scripted OpenAI-compatible server
and on our own /v1/chat/completions, with fakes for the other models: a spoken turn completes with the same
prompt the in-process engine gets, an interrupt closes the remote stream (the server stops generating), and a
dead engine gives a retryable error event instead of a hung turn."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.config import LLMSettings, Settings
from backend.engines.llm.openai import OpenAIChatModel, load
from backend.engines.model_service import ModelService
from backend.main import create_app
from tests.api.wsutil import receive_until
from tests.conftest import make_settings
from tests.fake_openai import REPLY, FakeOpenAI, dead_port, serve_fake_openai
from tests.fakes import FakeEmotion, FakeLLM, FakeModels, FakeSTT, FakeTTS, FakeVADEngine, silence_pcm, tone_pcm
from tests.live_server import LiveServer

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]


def _remote(base_url: str, **options: object) -> OpenAIChatModel:
    section = {"backend": "openai", "model": "mentor", "base_url": base_url, "retry_backoff_s": 0.05, **options}
    return load(LLMSettings.model_validate(section))


def _app(settings: Settings, llm: OpenAIChatModel | FakeLLM) -> TestClient:
    models = ModelService.from_components(
        settings, stt=FakeSTT(), vad=FakeVADEngine(), emotion=FakeEmotion(), llm=llm, tts=FakeTTS()
    )
    return TestClient(create_app(settings, models=models))


def _speak(ws, seconds: float = 1.0) -> None:  # type: ignore[no-untyped-def]
    for chunk in (silence_pcm(0.3), tone_pcm(seconds), silence_pcm(0.8)):
        for i in range(0, len(chunk), 640):
            ws.send_bytes(chunk[i : i + 640])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, llm__warm_between_turns=False)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    yield FakeOpenAI()


def test_spoken_turn_completes_with_the_in_process_prompt(settings: Settings, fake: FakeOpenAI) -> None:
    """Two spoken turns through /ws/voice on the remote engine: transcript, emotion, the streamed reply and its
    audio arrive; the messages sent to the server (system prompt, history window, emotion guidance, user
    message) are exactly those the in-process engine is given for the same conversation."""
    with serve_fake_openai(fake) as server, _app(settings, _remote(server.base_url)) as client:
        with client.websocket_connect("/ws/voice") as ws:
            session_id = ws.receive_json()["session_id"]
            for _ in range(2):
                _speak(ws)
                got = receive_until(ws, "metrics")
                assert got.first("response")["text"] == REPLY and len(got.audio) > 0
                assert "response.delta" in got.types() and "error" not in got.types()
    remote_prompts = fake.requests

    local = FakeLLM(reply=REPLY)
    settings.database.url = settings.database.url.replace("test.db", "local.db")
    with _app(settings, local) as client, client.websocket_connect("/ws/voice") as ws:
        ws.receive_json()
        for _ in range(2):
            _speak(ws)
            receive_until(ws, "metrics")
    assert session_id
    assert [r["messages"] for r in remote_prompts] == [
        [{"role": m.role, "content": m.content} for m in prompt] for prompt in local.prompts
    ]
    assert remote_prompts[1]["messages"][1]["role"] == "user"  # the first exchange is in the second prompt


def test_response_cancel_closes_the_remote_stream(settings: Settings) -> None:
    """response.cancel while the server is between tokens: the client gets `interrupted` and the server sees
    the stream closed, so it stops generating (no words sent after the hold)."""
    fake = FakeOpenAI(hold_after=4)
    with serve_fake_openai(fake) as server, _app(settings, _remote(server.base_url)) as client:
        with client.websocket_connect("/ws/voice") as ws:
            ws.receive_json()
            ws.send_json({"type": "text", "text": "I feel stuck."})
            assert fake.holding.wait(10)
            ws.send_json({"type": "response.cancel"})
            got = receive_until(ws, "interrupted")
            assert got.first("interrupted")["turn_id"]
            assert fake.disconnected.wait(5), "the remote generation was not stopped"
            assert fake.words_sent == 4


def test_dead_engine_gives_a_retryable_error_event_not_a_hang(settings: Settings) -> None:
    """No server on the engine's port: after the retries (well under the turn's budget) the client gets an
    `error` event llm_unavailable, retryable; the connection stays usable, and once a server answers on that
    port the next turn completes."""
    port = dead_port()
    llm = _remote(f"http://127.0.0.1:{port}/v1", connect_retries=2)
    with _app(settings, llm) as client, client.websocket_connect("/ws/voice") as ws:
        ws.receive_json()
        ws.send_json({"type": "text", "text": "Are you there?"})
        error = receive_until(ws, "error").first("error")
        assert error["code"] == "llm_unavailable" and error["retryable"] is True
        with serve_fake_openai(port=port):
            ws.send_json({"type": "text", "text": "Are you there now?"})
            assert receive_until(ws, "metrics").first("response")["text"] == REPLY


def test_our_own_chat_completions_endpoint_as_the_remote_engine(settings: Settings, tmp_path: Path) -> None:
    """The remote engine pointed at another ClarityMentor's /v1/chat/completions (model "claritymentor",
    fake models there): a spoken turn completes with that server's streamed reply, and response.cancel
    closes the stream, which cancels the turn on that server (its LLM sees the stop)."""
    upstream = FakeModels(llm=FakeLLM(hold_after=None))
    upstream_settings = make_settings(tmp_path / "upstream")
    app = create_app(upstream_settings, models=upstream.service(upstream_settings))
    with LiveServer(app) as live:
        llm = _remote(f"{live.http_url}/v1", model="claritymentor")
        with _app(settings, llm) as client, client.websocket_connect("/ws/voice") as ws:
            ws.receive_json()
            _speak(ws)
            got = receive_until(ws, "metrics")
            assert got.first("response")["text"] == upstream.llm.reply and len(got.audio) > 0
            assert upstream.llm.prompts[-1][-1].content == "I feel a bit lost at work lately"

            # The upstream sends text a checked clause at a time; two clauses let this side release the first.
            upstream.llm.hold_after = 10
            ws.send_json({"type": "text", "text": "And then?"})
            receive_until(ws, "response.delta")
            ws.send_json({"type": "response.cancel"})
            receive_until(ws, "interrupted")
            assert upstream.llm.stopped.wait(5), "the upstream turn was not cancelled"
