"""The replica test on real models: two ``python -m backend.main`` processes on one PostgreSQL behind HAProxy.
replica1 runs every embedded model in process (the transformers LLM with the LoRA merged); replica2 runs the
same speech, emotion and voice models with ``CM_CONFIG_FILE=deploy/replica.yaml``: its LLM is llama.cpp's
server with the mentor LoRA (both replicas with an in-process LLM would fit in memory too; this way the remote
engine is exercised behind the balancer as deployed).

A spoken conversation starts on one replica and continues on the other with its history; a token from one
is valid on the other; kill -9 of the replica serving the conversation: the client reconnects through the
balancer with its session id, goes on, and no acknowledged turn is lost.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from backend.config import REPO_ROOT
from scripts.common.espeak import espeak_available, speak_pcm
from tests.deploy.cluster import Balancer, Replica, free_port, http_get
from tests.hardening.live import recv_event, ws_connect
from tests.llamacpp_server import MODEL_NAME, LlamaCppServer, available, llamacpp_server

pytestmark = [
    pytest.mark.real,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed"),
    pytest.mark.skipif(not available(), reason="xllamacpp is not installed (scripts/setup.sh --dev)"),
]

API_KEY = "real-replica-key"
FRAME = 640
UTTERANCES = (
    "I have been feeling really stressed about my exams this week",
    "I keep putting off studying until late at night",
    "What could I try tomorrow morning",
)


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppServer]:
    with llamacpp_server(tmp_path_factory.mktemp("llamacpp") / "server.log") as server:
        yield server


@pytest.fixture
def cluster(pg_url: str, tmp_path: Path, llama: LlamaCppServer) -> Iterator[tuple[Balancer, dict[str, Replica]]]:
    config = yaml.safe_load((REPO_ROOT / "deploy" / "replica.yaml").read_text())
    config["llm"].update(base_url=llama.base_url, model=MODEL_NAME, extra_body={"repeat_penalty": 1.15})
    config["server"]["host"] = "127.0.0.1"
    remote_yaml = tmp_path / "replica.yaml"
    remote_yaml.write_text(yaml.safe_dump(config))
    common = {
        "CM_DATABASE__URL": pg_url,
        "CM_AUTH__API_KEYS": json.dumps([API_KEY]),
        "CM_AUTH__JWT_SECRET": "one-secret-for-every-replica",
        "CM_SERVER__LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    replicas = {
        "replica1": Replica("replica1", free_port(), common, "backend.main", log=tmp_path / "replica1.log"),
        "replica2": Replica(
            "replica2",
            free_port(),
            {**common, "CM_CONFIG_FILE": str(remote_yaml)},
            "backend.main",
            log=tmp_path / "replica2.log",
        ),
    }
    balancer = Balancer(tmp_path, list(replicas.values()))
    try:
        for replica in replicas.values():  # one after the other: model loading takes both cores
            replica.start(timeout=600)
        balancer.start()
        yield balancer, replicas
    finally:
        balancer.stop()
        for replica in replicas.values():
            replica.stop()


def _speak(ws: ClientConnection, text: str) -> None:
    audio = speak_pcm(text, voice="en-us", rate=160) + b"\x00\x00" * 16000
    start = time.perf_counter()
    for i, offset in enumerate(range(0, len(audio), FRAME)):
        ws.send(audio[offset : offset + FRAME])
        delay = start + (i + 1) * 0.02 - time.perf_counter()
        if delay > 0:
            time.sleep(delay)  # pacing the fake microphone, not waiting for the server


def _until(ws: ClientConnection, event_type: str, timeout: float = 180.0) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        message = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(message, str):
            events.append(json.loads(message))
            assert events[-1]["type"] != "error", events[-1]
            if events[-1]["type"] == event_type:
                return events


def _connect(balancer: Balancer, token: str) -> tuple[ClientConnection, str]:
    ws = ws_connect(f"{balancer.ws_url}?token={token}")
    assert ws.response is not None
    return ws, ws.response.headers.get("X-Replica", "")


def test_real_replicas_share_sessions_tokens_and_survive_kill_9(
    cluster: tuple[Balancer, dict[str, Replica]],
) -> None:
    """Spoken turns: one on the replica that answered first, the next on the other (resumed with the session
    id, its prompt built from the history in PostgreSQL); a token issued through the balancer works on both replicas;
    then the replica serving the conversation is killed with SIGKILL during a reply and the client reconnects
    through the balancer with its session id and completes a turn. Every acknowledged turn is stored."""
    balancer, replicas = cluster
    request = urllib.request.Request(
        f"http://127.0.0.1:{balancer.port}/api/tokens", method="POST", headers={"X-API-Key": API_KEY}
    )
    with urllib.request.urlopen(request) as response:
        token = json.load(response)["token"]
    for replica in replicas.values():
        assert http_get(replica.port, "/api/sessions", headers={"Authorization": f"Bearer {token}"})[0] == 200

    acknowledged: list[str] = []
    first, first_name = _connect(balancer, token)
    with first:
        session_id = recv_event(first)["session_id"]
        _speak(first, UTTERANCES[0])
        events = _until(first, "metrics")
        acknowledged.append(next(e["text"] for e in events if e["type"] == "transcript"))
        second, second_name = _connect(balancer, token)
        assert {first_name, second_name} == set(replicas)
        with second:
            recv_event(second)
            second.send(json.dumps({"type": "session.start", "session_id": session_id}))
            assert recv_event(second)["resumed"] is True
            _speak(second, UTTERANCES[1])
            events = _until(second, "metrics")
            acknowledged.append(next(e["text"] for e in events if e["type"] == "transcript"))

    # kill -9 of the replica serving the conversation, in the middle of a reply
    ws, victim_name = _connect(balancer, token)
    with ws:
        recv_event(ws)
        ws.send(json.dumps({"type": "session.start", "session_id": session_id}))
        assert recv_event(ws)["resumed"] is True
        ws.send(json.dumps({"type": "text", "text": "Tell me one small step for tonight."}))
        _until(ws, "response.delta")
        replicas[victim_name].signal(signal.SIGKILL)
        with pytest.raises((ConnectionClosed, OSError, TimeoutError)):
            _until(ws, "metrics", timeout=30)
    assert replicas[victim_name].wait(timeout=10) == -signal.SIGKILL
    survivor, survivor_name = _connect(balancer, token)  # HAProxy retries the dead replica's refusal elsewhere
    assert survivor_name != victim_name
    with survivor:
        recv_event(survivor)
        survivor.send(json.dumps({"type": "session.start", "session_id": session_id}))
        assert recv_event(survivor)["resumed"] is True
        _speak(survivor, UTTERANCES[2])
        events = _until(survivor, "metrics")
        acknowledged.append(next(e["text"] for e in events if e["type"] == "transcript"))
    # Until HAProxy's health checks mark the killed replica down, a request routed to it may get 503: ask again.
    deadline = time.monotonic() + 30
    while True:
        status, body = http_get(
            balancer.port, f"/api/sessions/{session_id}/history", headers={"Authorization": f"Bearer {token}"}
        )
        if status != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.5)  # polling the balancer's health checks, which we cannot wait on otherwise
    assert status == 200, body
    users = [t["text"] for t in body["turns"] if t["role"] == "user"]
    print(f"real replicas: {len(acknowledged)} acknowledged spoken turns, {len(body['turns'])} stored rows")
    assert [text for text in acknowledged if text not in users] == []
    replies = [t for t in body["turns"] if t["role"] == "assistant" and not t["interrupted"]]
    assert len(replies) >= len(acknowledged)
