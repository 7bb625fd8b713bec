"""Hypothesis against /ws/voice on a real uvicorn: malformed control events and binary frames.

Oracle: the server's own parser (``parse_client_event``) says which error code a control frame must get; every
malformed frame gets exactly that ``error`` event, frames over the size limit get close 1009, invalid UTF-8 gets
close 1007, and nothing gets 1011 (server error) or a dropped connection. Afterwards the server still answers
/api/health and a normal text turn on a fresh connection.

Each fuzz test counts what it actually sent and had answered as expected, and asserts the count and the spread
(every error code, every event type, every kind of fatal frame), so a run that tries little or nothing fails."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from backend.api.voice_ws import parse_client_event
from backend.core.exceptions import ClarityError
from backend.main import create_app
from backend.protocol.v1 import CLIENT_EVENT_TYPES
from tests.conftest import make_settings
from tests.hardening.live import Live, live_server, recv_event, text_turn, ws_connect

pytestmark = [pytest.mark.fast, pytest.mark.timeout(120)]

LIMIT = 65536  # limits.ws_max_message_bytes (the default)
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
)


class Peer:
    """One connection that is re-opened whenever a case closes it on purpose."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self.ws: ClientConnection | None = None

    def get(self) -> ClientConnection:
        if self.ws is None:
            self.ws = ws_connect(self.live.ws_url())
            assert recv_event(self.ws)["type"] == "session"
        return self.ws

    def drop(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    app_settings = make_settings(tmp_path_factory.mktemp("wsfuzz"))
    app_settings.limits.max_bytes_per_s = 10**9  # fuzzing is not rate-limiting: keep the byte budget out of it
    from tests.fakes import FakeModels

    with live_server(create_app(app_settings, models=FakeModels().service(app_settings))) as server:
        yield server


@pytest.fixture(scope="module")
def peer(live: Live) -> Iterator[Peer]:
    p = Peer(live)
    yield p
    p.drop()


def _expected_code(text: str) -> str | None:
    """The error code the server's parser gives this frame; None if it is a valid event."""
    try:
        parse_client_event(text)
    except ClarityError as exc:
        return exc.code
    return None


def _await_error(ws: ClientConnection, code: str, timeout: float = 10.0) -> dict[str, Any]:
    """Read until the error with ``code``; other events may pass (a turn started by fuzzed audio), but
    an error with another code is a failure."""
    while True:
        event = recv_event(ws, timeout)
        if event["type"] == "error":
            assert event["code"] in (code, "invalid_audio"), event
            if event["code"] == code:
                return event


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
typed_events = st.builds(
    lambda t, extra: {"type": t, **extra},
    st.sampled_from([*CLIENT_EVENT_TYPES, "", "TEXT", "session", "input_commit", "audio"]),
    st.dictionaries(
        st.sampled_from(["text", "session_id", "sample_rate", "mentor", "extra", "type"]), json_values, max_size=3
    ),
)
control_frames = st.one_of(
    json_values.map(json.dumps),  # any JSON: arrays, scalars, objects without a type
    typed_events.map(json.dumps),  # known and near-miss types with wrong, missing or extra fields
    st.text(max_size=200),  # not JSON at all
    st.integers(1, 30_000).map(lambda n: "[" * n + "]" * n),  # deeply nested (recursion)
    st.integers(1, (LIMIT - 10) // 24).map(lambda n: '{"type":"text","text":' * n + '"x"' + "}" * n),
    st.integers(LIMIT // 2, LIMIT - 200).map(lambda n: json.dumps({"type": "text", "text": "a" * n})),
    st.integers(LIMIT // 2, LIMIT - 200).map(lambda n: json.dumps({"type": "session.start", "mentor": "m" * n})),
    st.integers(LIMIT // 2, LIMIT - 200).map(lambda n: json.dumps({"type": "x" * n})),
)


def test_malformed_control_frames_get_the_parsers_error(peer: Peer) -> None:
    """Each malformed text frame is answered by an ``error`` event with the code the parser gives it (too-long
    text: ``text_too_long``), on a connection that stays open. At least 100 frames are answered, with every
    error code, a malformed form of every client event type, and frames of over half the size limit among them."""
    answered: Counter[str] = Counter()  # error code -> frames answered with it
    malformed_types: set[str] = set()  # client event types whose malformed form got invalid_input
    big = 0  # frames over LIMIT // 2 bytes (still under the limit: an error event, not a close)

    @FUZZ
    @given(frame=control_frames)
    def fuzz(frame: str) -> None:
        nonlocal big
        code = _expected_code(frame)
        if code is None:
            event = parse_client_event(frame)
            text = getattr(event, "text", None)
            if not (isinstance(text, str) and len(text) > 2000):
                return  # a valid event (it would start a turn or switch sessions): not this test's business
            code = "text_too_long"
        ws = peer.get()
        ws.send(frame)
        _await_error(ws, code)
        answered[code] += 1
        if code == "invalid_input":
            malformed_types.add(json.loads(frame)["type"])
        big += len(frame.encode()) > LIMIT // 2

    for event_type in CLIENT_EVENT_TYPES:  # explicit cases: each type at least once with a field it forbids
        fuzz = example(frame=json.dumps({"type": event_type, "no_such_field": 1}))(fuzz)
    fuzz()
    print(f"\nWS control frames answered: {dict(answered)} types={sorted(malformed_types)} big={big}")
    assert answered.total() >= 100, answered
    assert set(answered) == {"invalid_json", "unknown_event", "invalid_input", "text_too_long"}, answered
    assert malformed_types == set(CLIENT_EVENT_TYPES)
    assert big >= 3


def test_binary_frames_never_break_the_connection(peer: Peer) -> None:
    """Random PCM bytes of any length up to the limit (odd lengths included) are taken as audio; the
    connection stays usable (a malformed control frame right after still gets its error). At least 100 frames
    are sent and followed by that error, odd lengths and frames of over half the limit among them."""
    lengths: list[int] = []

    @FUZZ
    @given(frame=st.binary(max_size=4000) | st.integers(0, LIMIT).map(lambda n: bytes(n)))
    def fuzz(frame: bytes) -> None:
        ws = peer.get()
        ws.send(frame)
        ws.send(json.dumps({"type": "no-such-event"}))
        _await_error(ws, "unknown_event")
        lengths.append(len(frame))

    fuzz()
    print(f"\nWS binary frames: {len(lengths)}, odd {sum(n % 2 for n in lengths)}, max {max(lengths, default=0)}")
    assert len(lengths) >= 100
    assert any(n % 2 for n in lengths) and any(n % 2 == 0 for n in lengths)
    assert any(n > LIMIT // 2 for n in lengths)


fatal_frames = st.one_of(
    st.binary(min_size=1, max_size=64).filter(lambda b: not _is_utf8(b)).map(lambda b: ("text-bytes", b)),
    st.integers(LIMIT + 1, 4 * LIMIT).map(lambda n: ("binary", bytes(n))),
    st.integers(LIMIT + 1, 4 * LIMIT).map(lambda n: ("text", "[" * n)),
)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_invalid_utf8_and_oversized_frames_get_a_documented_close(live: Live) -> None:
    """A text frame with invalid UTF-8 is closed with 1007; any frame over ws_max_message_bytes with 1009.
    At least 20 connections get their close, each of the three kinds of frame at least 3 times."""
    closes: Counter[str] = Counter()  # kind of frame -> connections closed with the documented code

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
    @given(case=fatal_frames)
    def fuzz(case: tuple[str, Any]) -> None:
        kind, payload = case
        with ws_connect(live.ws_url()) as ws:
            recv_event(ws)
            ws.send(payload, text=True) if kind == "text-bytes" else ws.send(payload)
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv(timeout=10)
        expected = 1007 if kind == "text-bytes" else 1009
        received = closed.value.rcvd
        assert received is not None and received.code == expected, (kind, closed.value)
        closes[kind] += 1

    fuzz()
    print(f"\nWS fatal frames closed: {dict(closes)}")
    assert closes.total() >= 20, closes
    assert set(closes) == {"text-bytes", "binary", "text"} and min(closes.values()) >= 3, closes


def test_server_survives_the_fuzzing(live: Live, peer: Peer) -> None:
    """After every fuzz case above: /api/health answers and a fresh connection completes a text turn."""
    peer.drop()
    assert httpx.get(f"{live.http}/api/health", timeout=10).status_code == 200
    with ws_connect(live.ws_url()) as ws:
        recv_event(ws)
        events = text_turn(ws, "Is the server still fine?")
    assert [e for e in events if e["type"] == "error"] == []
    assert any(e["type"] == "response" for e in events)
    assert live.server.started and not live.server.should_exit


def test_lone_surrogates_in_text_are_rejected(peer: Peer) -> None:
    """A text event whose JSON carries a lone surrogate (\\ud800: legal JSON, not encodable as UTF-8, so it
    could not be stored) is refused with invalid_input before any turn starts; the connection keeps working."""
    ws = peer.get()
    ws.send('{"type": "text", "text": "hello \\ud800 there"}')
    event = recv_event(ws, 15)
    assert event["type"] == "error" and event["code"] == "invalid_input", event
    ws.send(json.dumps({"type": "no-such-event"}))
    _await_error(ws, "unknown_event")
