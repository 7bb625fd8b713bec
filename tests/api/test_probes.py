"""/livez, /readyz and the load metrics: what an orchestrator and a balancer see, including a remote LLM engine
that is down, a database that cannot be reached, and readiness turning false first on shutdown."""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.config import LLMSettings, Settings
from backend.engines.llm.openai import OpenAIChatModel, load
from backend.engines.model_service import ModelService
from backend.main import create_app
from backend.store.async_store import AsyncSessionStore
from backend.store.schema import make_engine
from backend.store.sessions import SessionStore
from tests.conftest import make_settings
from tests.fake_openai import dead_port, serve_fake_openai
from tests.fakes import FakeEmotion, FakeModels, FakeSTT, FakeTTS, FakeVADEngine
from tests.hardening.harness import serve, wait_for

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]


def _remote(base_url: str) -> OpenAIChatModel:
    return load(LLMSettings.model_validate({"backend": "openai", "model": "mentor", "base_url": base_url}))


def _service(settings: Settings, llm: OpenAIChatModel) -> ModelService:
    return ModelService.from_components(
        settings, stt=FakeSTT(), vad=FakeVADEngine(), emotion=FakeEmotion(), llm=llm, tts=FakeTTS()
    )


@pytest.fixture
def remote_client(tmp_path: Path) -> Iterator[tuple[TestClient, int]]:
    """An app whose LLM is the remote engine pointed at a port where nothing listens (yet)."""
    port = dead_port()
    settings = make_settings(tmp_path)
    app = create_app(settings, models=_service(settings, _remote(f"http://127.0.0.1:{port}/v1")))
    with TestClient(app) as client:
        yield client, port


def test_livez_and_readyz_when_everything_is_up(client: TestClient) -> None:
    """/livez answers ok; /readyz is 200 with every check ok (models loaded, database answers, not shutting
    down); both are open without a key."""
    assert client.get("/livez").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "checks": {"shutdown": "ok", "models": "ok", "database": "ok"}}


def test_readyz_is_503_while_shutting_down(client: TestClient) -> None:
    """Once shutdown has begun readiness is false and says why; liveness is unaffected."""
    client.app.state.shutting_down = True  # type: ignore[attr-defined]
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["shutdown"] == "shutting down"
    assert client.get("/livez").status_code == 200


def test_readyz_and_health_follow_the_remote_engine(remote_client: tuple[TestClient, int]) -> None:
    """With the LLM server down /readyz is 503 naming llm_engine and /api/health is degraded with
    reachable false; once a server answers on that port both recover (the probe is cached for a second)."""
    client, port = remote_client
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["llm_engine"].startswith("unreachable")
    health = client.get("/api/health").json()
    assert health["status"] == "degraded" and health["models"]["llm"]["reachable"] is False
    assert health["models"]["stt"]["reachable"] is None
    with serve_fake_openai(port=port):
        wait_for(lambda: client.get("/readyz").status_code == 200, 10, "readiness with the server up")
        health = client.get("/api/health").json()
        assert health["status"] == "ok" and health["models"]["llm"]["reachable"] is True


def test_readyz_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    """A PostgreSQL URL where nothing listens: /readyz is 503 with the database check failing (within the
    check timeout), while /livez still answers."""
    settings = make_settings(tmp_path)
    store = AsyncSessionStore(SessionStore(make_engine(f"postgresql+psycopg://u@127.0.0.1:{dead_port()}/db")))
    app = create_app(settings, models=FakeModels().service(settings), store=store)
    with TestClient(app) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("unreachable")
        assert client.get("/livez").status_code == 200
    store.close()


def test_load_metrics_count_waits_for_slots(client: TestClient) -> None:
    """/metrics exposes the load an autoscaler needs: open connections, active turns, turns waiting per queue
    and the time turns waited for a turn slot and an LLM slot."""
    assert client.post("/api/text-chat", json={"text": "hello"}).status_code == 200
    body = client.get("/metrics").text
    for name in ("claritymentor_ws_connections", "claritymentor_active_turns", "claritymentor_waiting_turns"):
        assert name in body, name
    counts = dict(re.findall(r'claritymentor_queue_wait_seconds_count\{queue="(\w+)"\} ([\d.]+)', body))
    assert float(counts["turn"]) == 1  # the one turn
    assert float(counts["llm"]) >= 1  # the turn's generation (warming the next prompt waits for a slot too)
    # the LLM's batch now: the fake LLM does not batch, and nothing is being decoded
    assert re.search(r"^claritymentor_llm_batch_size 0\.0$", body, re.M)


def _get(port: int, path: str) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_shutdown_turns_readiness_false_before_it_stops_accepting(tmp_path: Path) -> None:
    """With server.readiness_grace_s, a shutdown first answers /readyz 503 while still serving (the balancer
    or orchestrator notices and stops sending new connections), and only then closes the listener."""
    settings = make_settings(tmp_path, server__readiness_grace_s=1.5)
    with serve(settings) as served:
        assert _get(served.port, "/readyz")[0] == 200
        served.server.should_exit = True
        wait_for(lambda: _get(served.port, "/readyz")[0] == 503, 5, "readiness to turn false")
        status, body = _get(served.port, "/readyz")
        assert status == 503 and body["checks"] == {"shutdown": "shutting down", "models": "ok", "database": "ok"}
        assert _get(served.port, "/livez")[0] == 200  # still serving during the grace period

        def refused() -> bool:
            try:
                _get(served.port, "/livez")
            except OSError:
                return True
            return False

        assert wait_for(refused, 10, "the listener to close") >= 0.5
