"""Bad input on /v1/realtime gets an OpenAI-shaped `error` event (with the offending event_id) and the
connection stays usable; auth applies at the handshake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from backend.main import create_app
from tests.api.rtutil import RATE, b64, until
from tests.conftest import make_settings
from tests.fakes import FakeModels, tone_pcm

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

TEXT = {
    "type": "conversation.item.create",
    "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "still there?"}]},
}


@pytest.mark.parametrize(
    ("event", "code"),
    [
        ('{"type": "input_audio_buffer.append", "audio": "not base64!", "event_id": "evt_1"}', "invalid_audio"),
        (
            json.dumps({"type": "input_audio_buffer.append", "audio": b64(tone_pcm(1.02, RATE)), "event_id": "evt_1"}),
            "audio_too_large",
        ),
        (
            json.dumps({"type": "input_audio_buffer.append", "audio": b64(b"\x00" * 3), "event_id": "evt_1"}),
            "invalid_audio",
        ),
        ('{"type": "dance", "event_id": "evt_1"}', "unknown_event"),
        ('{"type": "conversation.item.delete", "item_id": "x", "event_id": "evt_1"}', "unsupported_event"),
        ('{"type": "input_audio_buffer.commit", "event_id": "evt_1"}', "input_audio_buffer_commit_empty"),
        ('{"type": "response.create", "event_id": "evt_1"}', "no_input"),
        ('{"type": "response.create", "response": {"conversation": "none"}, "event_id": "evt_1"}', "unsupported_value"),
        ('{"type": "conversation.item.retrieve", "item_id": "item_nope", "event_id": "evt_1"}', "item_not_found"),
        (
            '{"type": "conversation.item.truncate", "item_id": "nope", "audio_end_ms": 5, "event_id": "evt_1"}',
            "item_not_found",
        ),
        (
            '{"type": "conversation.item.create", "item": {"type": "message", "role": "system", "content": []},'
            ' "event_id": "evt_1"}',
            "unsupported_value",
        ),
        (
            '{"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"format":'
            ' {"type": "audio/opus"}}}}, "event_id": "evt_1"}',
            "invalid_value",
        ),
        (
            '{"type": "session.update", "session": {"type": "realtime", "audio": {"output": {"format":'
            ' {"type": "audio/pcm", "rate": 12345}}}}, "event_id": "evt_1"}',
            "unsupported_audio_format",
        ),
        ('{"type": "input_audio_buffer.append", "event_id": "evt_1"}', "invalid_value"),
        ('{"event_id": "evt_1", "type": "response.cancel"}', "response_cancel_not_active"),
    ],
    ids=lambda value: value if len(value) < 30 else None,
)
def test_bad_event_gets_error_with_its_event_id_and_connection_stays_usable(
    client: TestClient, event: str, code: str
) -> None:
    """Each bad client event yields one `error` {type, code, message, param, event_id}; a text turn still works."""
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        ws.send_json(
            {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}}}
        )
        until(ws, "session.updated")
        ws.send_text(event)
        error = until(ws, "error")[-1]
        assert error["event_id"].startswith("event_")
        detail = error["error"]
        assert detail["code"] == code and detail["event_id"] == "evt_1" and detail["message"], detail
        assert detail["type"] == "invalid_request_error" and "param" in detail
        ws.send_json(TEXT)
        ws.send_json({"type": "response.create"})
        assert until(ws, "response.done")[-1]["response"]["status"] == "completed"


@pytest.mark.parametrize("frame", ["not json", "[1, 2]", "[" * 100 + "]" * 100])
def test_malformed_frames_get_invalid_json(client: TestClient, frame: str) -> None:
    """Text that is not a JSON object (or nests too deep) is invalid_json, not a crash."""
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        ws.send_text(frame)
        assert until(ws, "error")[-1]["error"]["code"] == "invalid_json"
        ws.send_bytes(b"\x00\x01")
        assert until(ws, "error")[-1]["error"]["code"] == "invalid_input"


def test_api_key_required_at_the_handshake_and_bearer_accepted(tmp_path: Path) -> None:
    """With auth.api_keys set, no key refuses the handshake; `Authorization: Bearer <key>` (what the SDKs
    send) gets in."""
    settings = make_settings(tmp_path, auth__api_keys=["k-1"])
    fakes = FakeModels()
    with TestClient(create_app(settings, models=fakes.service(settings))) as client:
        with pytest.raises(WebSocketDisconnect):
            with client.websocket_connect("/v1/realtime"):
                pass
        with client.websocket_connect("/v1/realtime", headers={"Authorization": "Bearer k-1"}) as ws:
            assert ws.receive_json()["type"] == "session.created"
