"""Two server processes sharing one PostgreSQL behind a real HAProxy (deploy/haproxy.cfg.in), all on 127.0.0.1:
a session continues on another replica, a token issued by one is valid on the other, kill -9 of the replica
serving a conversation loses no acknowledged turn (the client reconnects through the balancer and goes on),
and SIGTERM turns a replica's readiness false first so the balancer moves new connections away while its
running turn finishes.

Replicas run ``tests.deploy.replica_server`` (the real server, engines that sleep instead of computing).
``slow``: it starts PostgreSQL, HAProxy and server processes (a few seconds each)."""

from __future__ import annotations

import itertools
import json
import random
import signal
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from tests.deploy.cluster import Balancer, Replica, free_port, http_get
from tests.hardening.harness import wait_for
from tests.hardening.live import recv_event, recv_until, text_turn, ws_connect

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

API_KEY = "replica-test-key"
SEED = 20261130
KILL_ROUNDS = 4


@pytest.fixture
def cluster(pg_url: str, tmp_path: Path) -> Iterator[tuple[Balancer, dict[str, Replica]]]:
    """replica1 and replica2 (started at the same moment: they migrate the new database under its lock) with a
    shared API key and token secret, behind HAProxy once both are ready."""
    env = {
        "CM_DATABASE__URL": pg_url,
        "CM_AUTH__API_KEYS": json.dumps([API_KEY]),
        "CM_AUTH__JWT_SECRET": "one-secret-for-every-replica",
        "CM_SERVER__LOG_LEVEL": "WARNING",
        "CM_SERVER__READINESS_GRACE_S": "2",
        "REPLICA_LLM_FIRST_S": "0.05",
        "REPLICA_LLM_WORD_S": "0.03",
    }
    replicas = {
        f"replica{i}": Replica(f"replica{i}", free_port(), env, log=tmp_path / f"replica{i}.log") for i in (1, 2)
    }
    starters = [threading.Thread(target=r.start) for r in replicas.values()]
    balancer = Balancer(tmp_path, list(replicas.values()))
    try:
        for t in starters:
            t.start()
        for t in starters:
            t.join(90)
        balancer.start()
        yield balancer, replicas
    finally:
        balancer.stop()
        for replica in replicas.values():
            replica.stop()


def _connect(url: str, query: str = "") -> tuple[ClientConnection, str]:
    """A WebSocket through ``url`` with the API key; returns it and the replica that answered (X-Replica)."""
    ws = ws_connect(f"{url}?{query or f'api_key={API_KEY}'}")
    assert ws.response is not None
    return ws, ws.response.headers.get("X-Replica", "")


def _resume(ws: ClientConnection, session_id: str) -> None:
    recv_event(ws)  # the fresh session offered on connect
    ws.send(json.dumps({"type": "session.start", "session_id": session_id}))
    assert recv_event(ws)["resumed"] is True


def _history(port: int, session_id: str, token: str | None = None) -> list[dict[str, Any]]:
    auth = {"Authorization": f"Bearer {token}"} if token else {"X-API-Key": API_KEY}
    status, body = http_get(port, f"/api/sessions/{session_id}/history", headers=auth)
    assert status == 200, body
    turns: list[dict[str, Any]] = body["turns"]
    return turns


def test_session_continues_on_another_replica_and_tokens_cross(
    cluster: tuple[Balancer, dict[str, Replica]],
) -> None:
    """A token issued through the balancer is accepted by both replicas directly (shared auth.jwt_secret). A
    session started on one replica (two turns) is resumed through the balancer on the other one while the first
    connection is still open (leastconn sends it there), goes on with its history, and the stored history is
    the same from both replicas."""
    balancer, replicas = cluster
    request = urllib.request.Request(
        f"http://127.0.0.1:{balancer.port}/api/tokens", method="POST", headers={"X-API-Key": API_KEY}
    )
    with urllib.request.urlopen(request) as response:
        token = json.load(response)["token"]
        issuer = response.headers["X-Replica"]
    assert issuer in replicas
    for replica in replicas.values():
        status, _ = http_get(replica.port, "/api/sessions", headers={"Authorization": f"Bearer {token}"})
        assert status == 200, replica.name

    first, first_replica = _connect(balancer.ws_url, f"token={token}")
    with first:
        session_id = recv_event(first)["session_id"]
        for text in ("I have an exam on Monday.", "I keep putting off studying."):
            assert "error" not in [e["type"] for e in text_turn(first, text)]
        second, second_replica = _connect(balancer.ws_url, f"token={token}")
        with second:
            assert {first_replica, second_replica} == set(replicas), "leastconn should pick the idle replica"
            _resume(second, session_id)
            events = text_turn(second, "What should I do first?")
            assert "error" not in [e["type"] for e in events]
    histories = [_history(r.port, session_id, token) for r in replicas.values()]
    assert histories[0] == histories[1]
    assert [(t["role"], t["text"]) for t in histories[0] if t["role"] == "user"] == [
        ("user", "I have an exam on Monday."),
        ("user", "I keep putting off studying."),
        ("user", "What should I do first?"),
    ]
    assert [t["role"] for t in histories[0]] == ["user", "assistant"] * 3


def _converse(
    balancer: Balancer,
    session_id: str | None,
    round_no: int,
    completed: list[str],
    on_connected: Callable[[str], None],
) -> str:
    """Text turns through the balancer until the connection dies; appends each turn whose ``metrics`` arrived.
    ``on_connected`` gets the name of the replica serving the connection. Returns the session id."""
    ws, served_by = _connect(balancer.ws_url)
    on_connected(served_by)
    try:
        if session_id is None:
            session_id = recv_event(ws)["session_id"]
        else:
            _resume(ws, session_id)
        for k in range(10_000):
            text = f"round {round_no} turn {k}"
            ws.send(json.dumps({"type": "text", "text": text}))
            recv_until(ws, "metrics", timeout=20)
            completed.append(text)
    except (ConnectionClosed, OSError, TimeoutError):
        pass  # the replica was killed
    finally:
        ws.close()
    assert session_id is not None
    return session_id


@dataclass
class _KillWhenConnected:
    """Called with the name of the replica serving the conversation: SIGKILLs it ``delay_s`` later."""

    replicas: dict[str, Replica]
    delay_s: float
    killed: list[Replica] = field(default_factory=list)
    timer: threading.Timer | None = None

    def __call__(self, name: str) -> None:
        self.timer = threading.Timer(self.delay_s, self._kill, [self.replicas[name]])
        self.timer.start()

    def _kill(self, victim: Replica) -> None:
        self.killed.append(victim)
        victim.signal(signal.SIGKILL)

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()


def test_kill_9_of_the_serving_replica_loses_no_acknowledged_turn(
    cluster: tuple[Balancer, dict[str, Replica]],
) -> None:
    """Rounds of: converse through the balancer; SIGKILL the replica serving the conversation at a seeded random
    moment mid-conversation; reconnect through the balancer at once with the session id (HAProxy retries the
    refused connection on the survivor) and go on; the orchestrator restarts the killed replica. Afterwards
    every turn the client saw complete is stored with its reply, counted."""
    balancer, replicas = cluster
    rng = random.Random(SEED)
    completed: list[str] = []
    session_id: str | None = None
    for round_no in range(KILL_ROUNDS):
        killer = _KillWhenConnected(replicas, rng.uniform(0.5, 2.5))
        try:
            session_id = _converse(balancer, session_id, round_no, completed, killer)
        finally:
            killer.cancel()
        assert killer.killed, "the kill did not happen"
        victim = killer.killed[0]
        assert victim.wait(timeout=10) == -signal.SIGKILL
        victim.start()  # the orchestrator restarts it, on its port
        balancer.wait_states({victim.name: "UP"}, timeout=20)
    assert session_id is not None
    turns = _history(balancer.port, session_id)
    answered = {
        turn["text"]
        for turn, reply in itertools.pairwise(turns)
        if turn["role"] == "user" and reply["role"] == "assistant" and not reply["interrupted"]
    }
    lost = [text for text in completed if text not in answered]
    print(
        f"kill -9 through HAProxy: {KILL_ROUNDS} kills, {len(completed)} acknowledged turns, "
        f"{len(turns)} stored rows, lost {len(lost)}"
    )
    assert len(completed) >= KILL_ROUNDS
    assert lost == []


def test_sigterm_readiness_first_then_drain(cluster: tuple[Balancer, dict[str, Replica]]) -> None:
    """SIGTERM to the replica serving a turn: its /readyz turns 503 at once and HAProxy marks it DOWN while it
    still accepts (readiness_grace_s), so a new connection through the balancer goes to the other replica;
    the running turn completes, the old connection is then closed with 1012, and the process exits 0."""
    balancer, replicas = cluster
    ws, served_by = _connect(balancer.ws_url)
    other = next(name for name in replicas if name != served_by)
    with ws:
        recv_event(ws)
        ws.send(json.dumps({"type": "text", "text": "Tell me something calming."}))
        recv_until(ws, "response.delta")
        replicas[served_by].signal(signal.SIGTERM)
        wait_for(lambda: http_get(replicas[served_by].port, "/readyz")[0] == 503, 2, "readiness to turn false")
        balancer.wait_states({served_by: "DOWN", other: "UP"}, timeout=5)
        assert http_get(replicas[served_by].port, "/livez")[0] == 200  # still accepting during the grace
        fresh, fresh_replica = _connect(balancer.ws_url)
        fresh.close()
        assert fresh_replica == other
        events = recv_until(ws, "metrics", timeout=15)
        assert "error" not in [e["type"] for e in events]
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=20)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    assert replicas[served_by].wait(timeout=20) == 0
    wait_for(lambda: balancer.states().get(other) == "UP", 5, "the other replica to stay up")
