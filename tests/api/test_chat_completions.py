"""/v1/chat/completions and /v1/models with fake models: the OpenAI shapes, streaming, errors and keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.main import create_app
from tests.conftest import make_settings
from tests.fakes import FakeModels

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

BODY = {"model": "claritymentor", "messages": [{"role": "user", "content": "I failed my exam."}]}


def test_completion_is_the_mentor_turn_with_emotion_and_usage(client: TestClient, fakes: FakeModels) -> None:
    """A plain completion: the mentor's reply, finish_reason stop, usage, and the emotion of the last user
    message (detected and put into the prompt as on the voice path); earlier turns become history, system
    messages are ignored, nothing is stored."""
    body = {
        "model": "claritymentor",
        "messages": [
            {"role": "system", "content": "You are a pirate."},
            {"role": "user", "content": "Hello."},
            {"role": "assistant", "content": "Hi, how are you?"},
            {"role": "user", "content": [{"type": "text", "text": "I failed my exam."}]},
        ],
    }
    data = client.post("/v1/chat/completions", json=body).json()
    assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-")
    assert data["choices"][0]["message"] == {"role": "assistant", "content": fakes.llm.reply}
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"]["completion_tokens"] > 0
    assert data["usage"]["total_tokens"] == data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"]
    assert data["claritymentor"]["emotion"]["label"] == "sad"
    assert fakes.emotion.calls == [("I failed my exam.", False)]
    prompt = " ".join(m.content for m in fakes.llm.prompts[0])
    assert "Hi, how are you?" in prompt and "pirate" not in prompt
    assert client.get("/api/sessions").json()["sessions"] == []


def test_streamed_completion_with_usage(client: TestClient, fakes: FakeModels) -> None:
    """stream=true: SSE chunks (role first, content deltas, finish_reason stop), the usage chunk when asked, [DONE]."""
    body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[0]["claritymentor"]["emotion"]["label"] == "sad"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == fakes.llm.reply
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({**BODY, "model": "gpt-4o"}, 404, "model_not_found"),
        ({"model": "claritymentor", "messages": []}, 400, "invalid_value"),
        ({"model": "claritymentor"}, 400, "invalid_value"),
        ({"model": "claritymentor", "messages": [{"role": "assistant", "content": "hi"}]}, 400, "invalid_value"),
        ({**BODY, "n": 2}, 400, "unsupported_value"),
        ({"model": "claritymentor", "messages": [{"role": "user", "content": "x" * 3000}]}, 400, "text_too_long"),
        ("{not json", 400, "invalid_json"),
    ],
)
def test_bad_requests_get_the_openai_error_shape(client: TestClient, body: object, status: int, code: str) -> None:
    """Unknown model, bad body or bad JSON: {"error": {message, type, param, code}} with the OpenAI status."""
    if isinstance(body, str):
        response = client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    else:
        response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error" and error["message"]
    assert "param" in error


def test_models_and_keys(tmp_path: Path) -> None:
    """/v1/models lists the mentor; with keys configured, no key is 401 invalid_api_key in the OpenAI shape
    and a Bearer key works (chat completions too)."""
    settings = make_settings(tmp_path, auth__api_keys=["k-1"])
    fakes = FakeModels()
    with TestClient(create_app(settings, models=fakes.service(settings))) as client:
        refused = client.get("/v1/models")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
        assert client.post("/v1/chat/completions", json=BODY).status_code == 401
        auth = {"Authorization": "Bearer k-1"}
        models = client.get("/v1/models", headers=auth).json()
        assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["claritymentor"]
        assert client.get("/v1/models/claritymentor", headers=auth).json()["id"] == "claritymentor"
        assert client.get("/v1/models/gpt-4o", headers=auth).status_code == 404
        assert client.post("/v1/chat/completions", json=BODY, headers=auth).status_code == 200
