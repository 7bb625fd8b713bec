"""Helpers to drive /v1/realtime through Starlette's TestClient."""

from __future__ import annotations

import base64
from typing import Any

from starlette.testclient import WebSocketTestSession

from tests.fakes import silence_pcm, tone_pcm

RATE = 24000


def b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode()


def append(ws: WebSocketTestSession, pcm: bytes, chunk: int = 4800) -> None:
    for i in range(0, len(pcm), chunk):
        ws.send_json({"type": "input_audio_buffer.append", "audio": b64(pcm[i : i + chunk])})


def speak(ws: WebSocketTestSession, seconds: float = 1.0, rate: int = RATE) -> None:
    """An utterance the fake VAD hears (a tone), with silence around it for the hangover."""
    append(ws, silence_pcm(0.3, rate) + tone_pcm(seconds, rate) + silence_pcm(0.8, rate), chunk=rate // 10 * 2)


def until(ws: WebSocketTestSession, event_type: str, into: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Events up to and including the first of ``event_type``; an unexpected error event fails at once."""
    got = into if into is not None else []
    while True:
        event = ws.receive_json()
        got.append(event)
        if event["type"] == event_type:
            return got
        assert event["type"] != "error", event


def first(events: list[dict[str, Any]], event_type: str) -> dict[str, Any]:
    return next(e for e in events if e["type"] == event_type)


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]
