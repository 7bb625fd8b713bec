"""Input byte-rate limit on a real uvicorn: sustained input far above real time is closed 1008 after an
``error`` event ``rate_limited``; a real-time client, including one catching up after a hiccup, never is.

Runs in real time (a few seconds per test), hence ``slow``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from backend.api.limits import ByteRateLimiter
from tests.conftest import make_settings
from tests.fakes import silence_pcm
from tests.hardening.harness import serve
from tests.hardening.live import recv_event, ws_connect

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

REAL_TIME = 32000  # bytes/s of 16 kHz PCM16
FRAME = silence_pcm(0.02)  # 640 B


def _settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    return make_settings(tmp_path, limits__max_bytes_per_s=3 * REAL_TIME, limits__rate_window_s=1.5)


def _stream(ws, speed: float, seconds: float) -> None:  # type: ignore[no-untyped-def]
    """Send 20 ms frames at ``speed`` times real time for ``seconds`` of wall time."""
    start = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * speed / 0.02) + 1
        while sent < due:
            ws.send(FRAME)
            sent += 1
        time.sleep(0.005)


def test_sliding_window_counts_only_the_last_window() -> None:
    """The limiter allows the window's budget, refuses past it, and forgets bytes older than the window."""
    now = [0.0]
    limiter = ByteRateLimiter(1000, 2.0, clock=lambda: now[0])
    assert limiter.add(1500)  # most of the budget at once: a burst is fine
    now[0] = 1.0
    assert limiter.add(500)  # exactly the budget
    assert not limiter.add(1)
    now[0] = 2.2  # the burst at t=0 left the window
    assert limiter.total == 501
    assert limiter.add(1499) and not limiter.add(1)


def test_five_times_real_time_is_closed_1008(tmp_path: Path) -> None:
    """A client sending 5x real time is told rate_limited and closed 1008 within a few seconds."""
    with serve(_settings(tmp_path)) as served:
        with ws_connect(served.url) as ws:
            start = time.monotonic()
            with pytest.raises(ConnectionClosed) as closed:
                _stream(ws, 5.0, 6.0)
                ws.recv(timeout=5)
            took = time.monotonic() - start
            events = []
            while True:  # events sent before the close frame stay readable
                try:
                    events.append(json.loads(ws.recv(timeout=0.1)))
                except (ConnectionClosed, TimeoutError):
                    break
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "rate limit exceeded")
    assert took < 4.0, took
    assert events[0]["type"] == "session" and events[-1]["code"] == "rate_limited"  # the error, then the close


def test_real_time_client_with_a_catch_up_burst_is_not_limited(tmp_path: Path) -> None:
    """Real-time audio for 4 s, with a 0.5 s stall whose audio then arrives at once, stays connected."""
    with serve(_settings(tmp_path)) as served:
        with ws_connect(served.url) as ws:
            recv_event(ws)
            _stream(ws, 1.0, 1.5)
            time.sleep(0.5)  # a network hiccup...
            for _ in range(25):  # ...then its 0.5 s of audio in one burst
                ws.send(FRAME)
            _stream(ws, 1.0, 2.0)
            ws.send(json.dumps({"type": "text", "text": "still connected?"}))
            event = recv_event(ws)
            while event["type"] != "metrics":
                assert event["type"] != "error", event
                event = recv_event(ws)
