"""Protocol and capacity limits of /ws/voice on a real uvicorn (built by backend.main.build_server).

Message size (1009), no permessage-deflate, idle timeout (1001), connection cap (1013), the bounded wait for
a turn slot (error server_busy), and long speech cut into turns at max_turn_s. Each limit also under uvicorn with
its own defaults (``plain``: as ``uvicorn backend.main:app`` runs the app), where the app itself closes an
oversized message 1009 (backend/api/ws_size_limit.py).
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import make_settings
from tests.fakes import FakeModels, silence_pcm, tone_pcm
from tests.hardening.harness import serve, wait_for
from tests.hardening.live import recv_event, recv_until, text_turn, ws_connect

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

both_servers = pytest.mark.parametrize("plain", [False, True], ids=["server", "plain-uvicorn"])


def _closed_with(ws: object, timeout: float = 10.0) -> tuple[int, str, list[dict[str, object]]]:
    """Read until the server closes; returns (close code, reason, events received before the close)."""
    events: list[dict[str, object]] = []
    try:
        while True:
            message = ws.recv(timeout=timeout)  # type: ignore[attr-defined]
            if isinstance(message, str):
                events.append(json.loads(message))
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "no close frame from the server"
        return closed.rcvd.code, closed.rcvd.reason, events


@both_servers
def test_oversized_message_closes_1009_and_server_stays_up(tmp_path: Path, plain: bool) -> None:
    """A binary message one byte over limits.ws_max_message_bytes gets close 1009; a new client still works."""
    settings = make_settings(tmp_path)
    limit = settings.limits.ws_max_message_bytes
    with serve(settings, plain=plain) as served:
        with ws_connect(served.url) as ws:
            recv_event(ws)
            ws.send(b"\x00" * limit)  # exactly at the limit: accepted (silence, no turn)
            ws.send(b"\x00" * (limit + 1))
            code, _, _ = _closed_with(ws)
        assert code == 1009
        with ws_connect(served.url) as ws:
            assert recv_event(ws)["type"] == "session"
            assert text_turn(ws, "still there?")[-1]["type"] == "metrics"


def test_permessage_deflate_is_not_negotiated(tmp_path: Path) -> None:
    """A client offering permessage-deflate gets no extension in the handshake response (no compression bomb)."""
    with serve(make_settings(tmp_path)) as served:
        with connect(served.url, compression="deflate", open_timeout=10) as ws:
            assert ws.response is not None
            assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
            assert recv_event(ws)["type"] == "session"


def test_under_plain_uvicorn_a_compressed_oversized_message_still_closes_1009(tmp_path: Path) -> None:
    """Plain uvicorn negotiates permessage-deflate (it cannot be turned off from the app): a 2 MiB message that
    compresses to a few KiB is still refused once inflated (close 1009), and the server keeps serving."""
    with serve(make_settings(tmp_path), plain=True) as served:
        with connect(served.url, compression="deflate", open_timeout=10, max_size=None) as ws:
            assert ws.response is not None
            assert "permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
            assert recv_event(ws)["type"] == "session"
            ws.send(b"\x00" * (2 * 2**20))
            code, _, _ = _closed_with(ws)
        assert code == 1009
        with ws_connect(served.url) as ws:
            assert recv_event(ws)["type"] == "session"


@both_servers
def test_idle_client_is_closed_even_while_pinging(tmp_path: Path, plain: bool) -> None:
    """A client that sends no message for idle_timeout_s is closed 1001 "idle timeout" after an error event;
    its keepalive pings (answered by the library) do not count as activity."""
    settings = make_settings(tmp_path, limits__idle_timeout_s=0.6)
    with serve(settings, plain=plain) as served:
        with ws_connect(served.url, ping_interval=0.1, ping_timeout=5) as ws:
            recv_event(ws)
            code, reason, events = _closed_with(ws)
        assert (code, reason) == (1001, "idle timeout")
        assert events[-1]["type"] == "error" and events[-1]["code"] == "idle_timeout"
        wait_for(lambda: not served.services.connections, 5, "the handler to be released")


@both_servers
def test_a_turn_running_longer_than_the_idle_timeout_is_not_idle(
    tmp_path: Path, fakes: FakeModels, plain: bool
) -> None:
    """A client waiting on a turn that runs longer than the idle timeout (held: its first sentence arrives, then
    over twice idle_timeout_s of quiet) is not closed, and the turn then completes."""
    settings = make_settings(tmp_path, limits__idle_timeout_s=0.3)
    fakes.llm.hold_after = 4  # the first clause, "That sounds hard.", goes out; then the LLM waits
    with serve(settings, fakes, plain=plain) as served:
        with ws_connect(served.url) as ws:
            recv_event(ws)
            ws.send(json.dumps({"type": "text", "text": "hello"}))
            recv_until(ws, "response.delta")
            quiet = False
            while not quiet:  # a close here would raise ConnectionClosed; more quiet only proves more
                try:
                    ws.recv(timeout=0.7)
                except TimeoutError:
                    quiet = True
            fakes.llm.release.set()
            assert recv_until(ws, "metrics")[-1]["type"] == "metrics"


@both_servers
def test_a_client_sending_audio_is_not_idle(tmp_path: Path, plain: bool) -> None:
    """Audio frames keep a connection alive: 100 ms of silence every ~100 ms for 2.5 idle timeouts gets no
    close (each gap is a tenth of idle_timeout_s, room for a busy machine)."""
    settings = make_settings(tmp_path, limits__idle_timeout_s=1.0)
    with serve(settings, plain=plain) as served:
        with ws_connect(served.url) as ws:
            recv_event(ws)
            for _ in range(25):
                ws.send(silence_pcm(0.1))
                with pytest.raises(TimeoutError):
                    ws.recv(timeout=0.1)


@both_servers
def test_connection_cap_refuses_with_1013(tmp_path: Path, plain: bool) -> None:
    """Past limits.max_connections a new client is closed 1013 "server at capacity" after an error event;
    once a slot frees, a new client gets in."""
    settings = make_settings(tmp_path, limits__max_connections=3)
    with serve(settings, plain=plain) as served, ExitStack() as stack:
        open_ = [stack.enter_context(ws_connect(served.url)) for _ in range(3)]
        for ws in open_:
            recv_event(ws)
        with ws_connect(served.url) as extra:
            code, reason, events = _closed_with(extra)
        assert (code, reason) == (1013, "server at capacity")
        assert events and events[0]["code"] == "server_at_capacity" and events[0]["retryable"] is True
        open_[0].close()
        wait_for(lambda: len(served.services.connections) == 2, 5, "a slot to free")
        with ws_connect(served.url) as ws:
            assert recv_event(ws)["type"] == "session"


@both_servers
def test_turn_slots_busy_gives_server_busy_not_a_hang(tmp_path: Path, fakes: FakeModels, plain: bool) -> None:
    """With every turn slot taken (max_active_turns), a new turn waits limits.turn_wait_s and then gets a
    retryable server_busy error; the held turn then completes normally."""
    settings = make_settings(tmp_path, limits__max_active_turns=1, limits__turn_wait_s=0.4)
    fakes.llm.hold_after = 4  # the first clause, "That sounds hard.", goes out; then the LLM waits
    with serve(settings, fakes, plain=plain) as served:
        with ws_connect(served.url) as a, ws_connect(served.url) as b:
            recv_event(a), recv_event(b)
            a.send(json.dumps({"type": "text", "text": "first"}))
            recv_until(a, "response.delta")
            b.send(json.dumps({"type": "text", "text": "second"}))
            error = recv_until(b, "error", timeout=5)[-1]
            assert error["code"] == "server_busy" and error["retryable"] is True
            fakes.llm.release.set()
            assert recv_until(a, "metrics")[-1]["type"] == "metrics"
            assert text_turn(b, "third")[-1]["type"] == "metrics"  # a slot is free again


@both_servers
def test_continuous_speech_is_cut_into_turns_at_max_turn_s(tmp_path: Path, fakes: FakeModels, plain: bool) -> None:
    """2.6 s of uninterrupted speech with max_turn_s=1.0 becomes several turns, none longer than the limit."""
    settings = make_settings(tmp_path, limits__max_turn_s=1.0)
    with serve(settings, fakes, plain=plain) as served:
        with ws_connect(served.url) as ws:
            recv_event(ws)
            pcm = tone_pcm(2.6) + silence_pcm(0.8)
            for i in range(0, len(pcm), 640):
                ws.send(pcm[i : i + 640])
            stops: list[float] = []
            while len(stops) < 3:
                event = recv_event(ws)
                if event["type"] == "speech_stopped":
                    stops.append(event["duration_s"])
    assert all(d <= 1.0 + 1e-6 for d in stops[:2]), stops
    assert stops[0] == pytest.approx(1.0, abs=0.05)
    wait_for(lambda: len(fakes.stt.calls) >= 2, 5, "two transcriptions")
    assert max(fakes.stt.calls) <= 1.0 + 1e-6
