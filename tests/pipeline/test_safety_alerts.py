"""The operator's webhook on a flagged turn (backend/pipeline/safety_alerts.py) against a real local receiver
(uvicorn in a thread) and a dead one: what it receives, that the reply never waits for it, and the metric."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from backend.main import create_app
from backend.pipeline import safety_alerts
from tests.api.followups import services_of
from tests.conftest import make_settings
from tests.fakes import FakeModels
from tests.live_server import LiveServer

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

CRISIS = "I have been thinking about ending it all."


class Receiver:
    """A tiny webhook receiver: records each JSON body; with ``hold`` set, answers only once ``release`` is."""

    def __init__(self, tmp_path: Path) -> None:
        self.received: list[dict[str, Any]] = []
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.hold = False
        app = FastAPI()
        app.state.settings = make_settings(tmp_path)

        @app.post("/hook")
        async def hook(request: Request) -> dict[str, bool]:
            self.received.append(await request.json())
            self.arrived.set()
            if self.hold:
                await asyncio.to_thread(self.release.wait, 30)
            return {"ok": True}

        self.server = LiveServer(app)

    @property
    def url(self) -> str:
        return f"{self.server.http_url}/hook"


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    got = Receiver(tmp_path)
    got.server.start()
    try:
        yield got
    finally:
        got.release.set()
        got.server.stop()


def _app(tmp_path: Path, **overrides: object) -> TestClient:
    settings = make_settings(tmp_path, **overrides)
    return TestClient(create_app(settings, models=FakeModels().service(settings)))


def _idle(client: TestClient) -> None:
    assert client.portal is not None
    client.portal.call(services_of(client).shared.safety.alerts.idle)


def test_webhook_gets_session_category_and_level_without_the_words(tmp_path: Path, receiver: Receiver) -> None:
    with _app(tmp_path, safety__webhook_url=receiver.url) as client:
        body = client.post("/api/text-chat", json={"text": CRISIS}).json()
        assert body["safety"]["flagged"] is True
        _idle(client)
        client.post("/api/text-chat", json={"text": "I went to work today.", "session_id": "plain"})
        _idle(client)
        metrics = client.get("/metrics").text
    assert len(receiver.received) == 1  # an ordinary turn alerts no one
    alert = receiver.received[0]
    assert alert["event"] == "safety.flagged"
    assert alert["session_id"] == body["session_id"] and alert["turn_id"]
    assert alert["category"] == "suicide" and alert["level"] == "concern"
    assert "transcript" not in alert and CRISIS not in str(alert)
    assert 'claritymentor_safety_alerts_total{outcome="sent"} 1.0' in metrics


def test_webhook_includes_the_transcript_when_configured(tmp_path: Path, receiver: Receiver) -> None:
    with _app(tmp_path, safety__webhook_url=receiver.url, safety__webhook_include_transcript=True) as client:
        client.post("/api/text-chat", json={"text": CRISIS})
        _idle(client)
    assert receiver.received[0]["transcript"] == CRISIS


def test_the_reply_does_not_wait_for_the_webhook(tmp_path: Path, receiver: Receiver) -> None:
    """A receiver that has not answered yet: the reply is already back."""
    receiver.hold = True
    with _app(tmp_path, safety__webhook_url=receiver.url) as client:
        body = client.post("/api/text-chat", json={"text": CRISIS}).json()
        assert body["safety"]["flagged"] is True and "988" in body["response"]
        assert receiver.arrived.wait(30)
        assert not receiver.release.is_set()  # the receiver is still holding the alert
        receiver.release.set()
        _idle(client)
        assert 'claritymentor_safety_alerts_total{outcome="sent"} 1.0' in client.get("/metrics").text


def _unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_dead_receiver_breaks_nothing_and_is_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(safety_alerts, "RETRY_BASE_S", 0.01)
    url = f"http://127.0.0.1:{_unused_port()}/hook"
    with _app(tmp_path, safety__webhook_url=url, safety__webhook_retries=1) as client:
        body = client.post("/api/text-chat", json={"text": CRISIS}).json()
        assert body["safety"]["flagged"] is True and "988" in body["response"]
        later = client.post("/api/text-chat", json={"text": "I went to work today.", "session_id": body["session_id"]})
        assert later.status_code == 200 and later.json()["safety"]["mode"] is True
        _idle(client)
        metrics = client.get("/metrics").text
    assert 'claritymentor_safety_alerts_total{outcome="failed"} 1.0' in metrics
    assert 'outcome="sent"} 1.0' not in metrics
