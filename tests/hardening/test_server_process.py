"""The server as a process (``tests.hardening.fake_server``: backend.main's build_server/run_server with fake
models and a real SQLite WAL file): SIGTERM drains running turns; kill -9 under a live conversation loses no
turn the client was told had completed.

``slow``: each test starts server processes (about 1-3 s each on this machine)."""

from __future__ import annotations

import itertools
import json
import random
import signal
import socket
import sqlite3
import threading
import urllib.request
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from backend.store.schema import make_engine
from backend.store.sessions import SessionStore
from tests.hardening.harness import Child, start_child, wait_for
from tests.hardening.live import recv_event, recv_until, ws_connect

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

SEED = 20260521
KILL_ROUNDS = 4


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return True
    return False


def test_sigterm_lets_the_running_turn_finish_refuses_new_connections_and_exits_0(tmp_path: Path) -> None:
    """SIGTERM during a reply: new connections are refused at once, the running turn completes (metrics
    arrives, assistant turn stored, not interrupted), then the socket closes 1012 and the process exits 0."""
    db = tmp_path / "drain.db"
    child = start_child(db, ("FAKE_LLM_WORD_DELAY_S", "0.2"))  # 15 words: about 3 s of generation
    try:
        with ws_connect(child.url) as ws:
            session_id = recv_event(ws)["session_id"]
            ws.send(json.dumps({"type": "text", "text": "one more thing"}))
            recv_until(ws, "response.delta")
            child.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: _refused(child.port), 2, "new connections to be refused")
            events = recv_until(ws, "metrics", timeout=15)
            assert "error" not in [e["type"] for e in events]
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv(timeout=15)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
        assert child.proc.wait(timeout=20) == 0
    finally:
        _stop(child)
    store = SessionStore(make_engine(f"sqlite:///{db}"))
    history = store.history(session_id)
    store.close()
    assert [(t.role, t.interrupted) for t in history] == [("user", False), ("assistant", False)]
    assert history[1].text == next(e["text"] for e in events if e["type"] == "response")


def _converse(child: Child, session_id: str | None, round_no: int, completed: list[str]) -> str | None:
    """Text turns until the server dies; appends the text of each turn whose ``metrics`` arrived."""
    try:
        with ws_connect(child.url) as ws:
            session = recv_event(ws)
            if session_id is not None:
                ws.send(json.dumps({"type": "session.start", "session_id": session_id}))
                assert recv_event(ws)["resumed"] is True
            session_id = session["session_id"] if session_id is None else session_id
            for k in range(1000):
                text = f"round {round_no} turn {k}"
                ws.send(json.dumps({"type": "text", "text": text}))
                recv_until(ws, "metrics", timeout=20)
                completed.append(text)
    except (ConnectionClosed, OSError):
        pass  # killed
    return session_id


def _stop(child: Child) -> None:
    if child.proc.poll() is None:
        child.proc.kill()
        child.proc.wait()
    if child.proc.stdout is not None:
        child.proc.stdout.close()


def test_kill_9_under_a_live_conversation_loses_no_completed_turn(tmp_path: Path) -> None:
    """SIGKILL at seeded random moments during a conversation, restart, resume, repeat: every turn the client
    saw complete is in GET /api/sessions/{id}/history (with its reply) and PRAGMA integrity_check is ok."""
    rng = random.Random(SEED)
    db = tmp_path / "kill9.db"
    completed: list[str] = []
    session_id: str | None = None
    for round_no in range(KILL_ROUNDS):
        child = start_child(db)
        killer = threading.Timer(rng.uniform(0.3, 1.5), child.proc.send_signal, [signal.SIGKILL])
        killer.start()
        try:
            session_id = _converse(child, session_id, round_no, completed) or session_id
            assert child.proc.wait(timeout=10) == -signal.SIGKILL
        finally:
            killer.cancel()
            _stop(child)
    assert session_id is not None and len(completed) >= KILL_ROUNDS
    child = start_child(db)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{child.port}/api/sessions/{session_id}/history") as resp:
            turns = json.load(resp)["turns"]
        child.proc.send_signal(signal.SIGTERM)
        assert child.proc.wait(timeout=20) == 0
    finally:
        _stop(child)
    answered = {
        turn["text"]
        for turn, reply in itertools.pairwise(turns)
        if turn["role"] == "user" and reply["role"] == "assistant" and not reply["interrupted"]
    }
    lost = [text for text in completed if text not in answered]
    print(f"kill -9: {KILL_ROUNDS} kills, {len(completed)} completed turns, {len(turns)} stored, lost {len(lost)}")
    assert lost == []
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
