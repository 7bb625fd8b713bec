"""Helpers to drive /ws/voice through Starlette's TestClient."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from starlette.testclient import WebSocketTestSession


@dataclass
class Received:
    events: list[dict[str, Any]] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    order: list[str] = field(default_factory=list)  # event types, "<audio>" for binary, in arrival order

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def first(self, event_type: str) -> dict[str, Any]:
        return next(e for e in self.events if e["type"] == event_type)

    def statuses(self) -> list[str]:
        return [e["message"] for e in self.events if e["type"] == "status"]


def receive_until(ws: WebSocketTestSession, stop_type: str, into: Received | None = None) -> Received:
    """Read messages until an event of ``stop_type`` arrives (inclusive)."""
    got = into or Received()
    while True:
        message = ws.receive()
        if message["type"] == "websocket.close":
            raise AssertionError(f"socket closed before {stop_type!r}: {message}")
        if message.get("bytes") is not None:
            got.audio.extend(message["bytes"])
            if not got.order or got.order[-1] != "<audio>":
                got.order.append("<audio>")
            continue
        event = json.loads(message["text"])
        got.events.append(event)
        got.order.append(event["type"])
        if event["type"] == stop_type:
            return got
