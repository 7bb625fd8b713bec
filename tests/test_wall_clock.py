"""Wall-clock checks: things that must not only happen but happen within a time limit.

They measure elapsed time, so a loaded or slow machine can fail them; hence the ``slow`` tier, outside the
fast tier that must pass anywhere. The fast tier proves the same behaviour by events and ordering
(tests/engines/test_llm_transformers.py, tests/api/test_rest.py); tests/engines/test_prosody.py has the
accuracy checks of the prosody features timed here."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from backend.engines.emotion.prosody import extract_prosody
from tests.engines.test_llm_transformers import MESSAGES, _chat, _generation_threads, tiny_parts
from tests.engines.test_prosody import tone
from tests.fakes import FakeModels

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def parts() -> tuple[Any, Any]:
    return tiny_parts()


# --- language model streaming (tests/engines/test_llm_transformers.py) ------------------------------------


def test_stop_event_ends_generation_quickly(parts: tuple[Any, Any]) -> None:
    """Setting stop after the first piece ends the stream well before max_new_tokens, within 0.5 s."""
    stop = threading.Event()
    chat = _chat(parts, 100_000)
    got = 0
    stopped_at = 0.0
    for _ in chat.stream(MESSAGES, stop):
        got += 1
        if got == 1:
            stop.set()
            stopped_at = time.perf_counter()
    assert got < 5
    assert time.perf_counter() - stopped_at < 0.5
    assert not _generation_threads()


def test_closing_the_generator_stops_and_joins_the_thread(parts: tuple[Any, Any]) -> None:
    """A consumer that stops iterating early (close()) ends generation and joins its thread at once."""
    stop = threading.Event()
    gen = _chat(parts, 100_000).stream(MESSAGES, stop)
    assert next(gen)
    assert _generation_threads()
    started = time.perf_counter()
    gen.close()
    assert time.perf_counter() - started < 0.5
    assert not _generation_threads()
    assert not stop.is_set()  # the caller's event is left alone; an internal one stopped generation


# --- prosody (tests/engines/test_prosody.py) ----------------------------------------------------------


def test_five_seconds_is_fast() -> None:
    """5 s of audio is analysed in under 50 ms (best of 5, to ride out a busy machine; about 10 ms on a quiet
    one, 32 ms seen at load 4: the emotion stage's budget is what matters, tens of milliseconds)."""
    audio = tone(5.0, 160, 0.3, mod_hz=4.0, vibrato=20)
    extract_prosody(audio)
    best = min(_timed(audio) for _ in range(5))
    assert best < 0.05


def _timed(audio: np.ndarray) -> float:
    start = time.perf_counter()
    extract_prosody(audio)
    return time.perf_counter() - start


# --- REST (tests/api/test_rest.py) --------------------------------------------------------------------


def test_event_loop_stays_responsive_while_generating(client: TestClient, fakes: FakeModels) -> None:
    """While the LLM blocks in its worker thread, /api/health still answers quickly."""
    fakes.llm.hold_after = 2
    result: dict[str, object] = {}

    def chat() -> None:
        result["resp"] = client.post("/api/text-chat", json={"text": "hello"})

    worker = threading.Thread(target=chat)
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while not fakes.llm.prompts and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fakes.llm.prompts, "generation did not start"
        start = time.perf_counter()
        assert client.get("/api/health").status_code == 200
        assert time.perf_counter() - start < 0.5
    finally:
        fakes.llm.release.set()
        worker.join(10)
    assert result["resp"].status_code == 200  # type: ignore[attr-defined]
