"""The app's own WebSocket message cap (backend/api/ws_size_limit.py), in process: a text message is measured
in UTF-8 bytes as on the wire, and one over the cap closes 1009 without reaching the handler."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from backend.api.ws_size_limit import message_size

pytestmark = pytest.mark.fast


def test_message_size_counts_utf8_bytes() -> None:
    """Text counts as its UTF-8 encoding (é is two bytes), bytes as their length, an empty message as 0."""
    assert message_size({"type": "websocket.receive", "text": "é" * 10}) == 20
    assert message_size({"type": "websocket.receive", "bytes": b"abc"}) == 3
    assert message_size({"type": "websocket.receive"}) == 0


def test_a_text_event_over_the_cap_closes_1009(client: TestClient) -> None:
    """A JSON text event one byte over limits.ws_max_message_bytes: close 1009, not an error event."""
    limit = client.app.state.settings.limits.ws_max_message_bytes  # type: ignore[attr-defined]
    text = json.dumps({"type": "text", "text": ""})
    oversized = text[:-2] + "x" * (limit + 1 - len(text)) + text[-2:]
    with client.websocket_connect("/ws/voice") as ws:
        assert ws.receive_json()["type"] == "session"
        ws.send_text(oversized)
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                ws.receive_json()
    assert closed.value.code == 1009
