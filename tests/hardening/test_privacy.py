"""Privacy: no transcript or reply text in any log record at INFO and above (message or extra fields), and
deleting a session removes every one of its turns from the database."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backend.config import Settings
from backend.main import create_app
from tests.conftest import make_settings
from tests.fakes import FakeModels, silence_pcm, tone_pcm
from tests.hardening.live import Live, live_server, recv_event, recv_until, text_turn, ws_connect

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

SPOKEN = "my aunt Philomena keeps purple ferrets in Reykjavik"
TYPED = "the quartermaster hid seventeen marmalade jars"
TYPED_REST = "Barnabus whispered about the cobalt lighthouse"
REPLY = "Ferrets and lighthouses aside, the zeppelin mechanic Ottoline is proud of you."
MARKERS = ("Philomena", "ferrets", "quartermaster", "marmalade", "Barnabus", "lighthouse", "zeppelin", "Ottoline")
_RESERVED = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}
_NAMED_LOGGERS = ("uvicorn", "uvicorn.access", "uvicorn.error")  # they do not propagate to the root


class Capture(logging.Handler):
    """Keeps every record at INFO and above, as text: message plus every extra field."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        extras = {k: v for k, v in vars(record).items() if k not in _RESERVED}
        self.records.append((record.getMessage(), json.dumps(extras, default=str)))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Live, Settings, Capture]]:
    settings = make_settings(tmp_path)
    fakes = FakeModels()
    fakes.stt.transcript = SPOKEN
    fakes.llm.reply = REPLY
    capture = Capture()
    targets = [logging.getLogger(), *(logging.getLogger(n) for n in _NAMED_LOGGERS)]
    for target in targets:
        target.addHandler(capture)
    try:
        with live_server(create_app(settings, models=fakes.service(settings)), log_level="info") as live:
            yield live, settings, capture
    finally:
        for target in targets:
            target.removeHandler(capture)


def _speak(ws) -> None:  # type: ignore[no-untyped-def]
    for chunk in (silence_pcm(0.3), tone_pcm(1.0), silence_pcm(0.8)):
        for i in range(0, len(chunk), 640):
            ws.send(chunk[i : i + 640])


def _turn_rows(settings: Settings, session_id: str) -> tuple[int, int]:
    path = settings.database.url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        turns = db.execute("SELECT count(*) FROM turns WHERE session_id = ?", (session_id,)).fetchone()[0]
        sessions = db.execute("SELECT count(*) FROM sessions WHERE id = ?", (session_id,)).fetchone()[0]
    return int(turns), int(sessions)


def test_no_user_or_mentor_text_in_logs(served: tuple[Live, Settings, Capture]) -> None:
    """A voice turn, a WebSocket text turn and REST text chats (plain and streamed) with distinctive sentences
    log nothing of what was said or answered at INFO and above, while the logs themselves are not empty."""
    live, _, capture = served
    assert logging.getLogger().getEffectiveLevel() <= logging.INFO  # the capture would miss nothing
    with ws_connect(live.ws_url()) as ws:
        recv_event(ws)
        _speak(ws)
        voice = recv_until(ws, "metrics", 15)
        typed = text_turn(ws, TYPED)
    assert any(e["type"] == "transcript" and e["text"] == SPOKEN for e in voice)
    assert any(e["type"] == "response" and e["text"] == REPLY for e in typed)
    chat = httpx.post(f"{live.http}/api/text-chat", json={"text": TYPED_REST}, timeout=15)
    assert chat.json()["response"] == REPLY
    with httpx.stream("POST", f"{live.http}/api/text-chat/stream", json={"text": TYPED_REST}, timeout=15) as sse:
        assert "event: done" in "".join(sse.iter_text())
    assert len(capture.records) >= 5  # turns were logged (ids, timings), just not their text
    leaks = [(m, x) for m, x in capture.records if any(w.lower() in (m + x).lower() for w in MARKERS)]
    assert leaks == []


def test_delete_removes_every_turn_row(served: tuple[Live, Settings, Capture]) -> None:
    """A session with voice and text turns (WebSocket) and REST turns: after DELETE the database holds no
    turn and no session row for it, and a second DELETE is 404."""
    live, settings, _ = served
    with ws_connect(live.ws_url()) as ws:
        session_id = recv_event(ws)["session_id"]
        _speak(ws)
        recv_until(ws, "metrics", 15)
        text_turn(ws, TYPED)
    reply = httpx.post(f"{live.http}/api/text-chat", json={"text": TYPED_REST, "session_id": session_id}, timeout=15)
    assert reply.status_code == 200
    assert _turn_rows(settings, session_id) == (6, 1)
    assert httpx.delete(f"{live.http}/api/sessions/{session_id}", timeout=10).status_code == 204
    assert _turn_rows(settings, session_id) == (0, 0)
    assert httpx.delete(f"{live.http}/api/sessions/{session_id}", timeout=10).status_code == 404
