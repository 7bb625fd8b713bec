"""The page at / in real headless Chromium, talking to the real server through a fake microphone (a WAV)."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright

from scripts.common.wer import word_error_rate
from tests.browser.conftest import CHROMIUM, LiveServer, chromium_args, espeak_wav, needs_chromium, padded_wav

pytestmark = [pytest.mark.browser, needs_chromium]

SENTENCE = "I have been feeling stressed about my exams this week"
QUESTION = "What can I do to stop worrying about my exams?"
SECOND = "I keep waking up at night and feel tired"
PCM_BYTES_PER_S = 32000  # 16 kHz, 16-bit, mono
TURN_TIMEOUT_MS = 180_000  # real models on two shared CPU cores


@contextmanager
def browser_page(server: LiveServer, wav: Path) -> Iterator[tuple[Page, list[str]]]:
    """A fresh Chromium whose microphone plays ``wav`` once, on the page; yields it and its console errors."""
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=chromium_args(wav))
        try:
            page = browser.new_page(viewport={"width": 1180, "height": 860})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.goto(server.url)
            page.wait_for_function("window.__cm && window.__cm.connection === 'open' && window.__cm.sessionId")
            yield page, errors
        finally:
            browser.close()


def start_hands_free(page: Page, server: LiveServer) -> None:
    page.check("#mode-hands-free")
    server.tally.reset()
    page.click("#start")
    page.wait_for_function("window.__cm.micOpenedAt !== null")


def counters(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(
        "() => ({...window.__cm, elapsedMs: performance.now() - window.__cm.micOpenedAt})"
    )
    return result


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@dataclass
class HandsFreeTurn:
    """What one spoken turn through the page left behind: page counters, page texts, server evidence."""

    cm: dict[str, Any]
    texts: dict[str, str]
    server_bytes: int
    server_rms: float
    history: dict[str, Any]
    current_session_marked: bool
    errors: list[str]


@pytest.fixture(scope="module")
def hands_free_turn(live_server: LiveServer, speech_dir: Path, artifacts_dir: Path) -> HandsFreeTurn:
    """Speak SENTENCE into the page in hands-free mode and wait for the whole reply to play; screenshot it."""
    wav = padded_wav(espeak_wav(SENTENCE, speech_dir / "s.wav"), speech_dir / "hands_free.wav", 0.5, 2.0)
    with browser_page(live_server, wav) as (page, errors):
        start_hands_free(page, live_server)
        page.wait_for_function("window.__cm.events.includes('transcript')", timeout=TURN_TIMEOUT_MS)
        page.wait_for_function("window.__cm.events.includes('metrics')", timeout=TURN_TIMEOUT_MS)
        page.wait_for_function("window.__cm.playbackEnded >= 1", timeout=TURN_TIMEOUT_MS)
        cm = counters(page)
        server_bytes, server_rms = live_server.tally.byte_count, live_server.tally.rms
        page.wait_for_function("window.__cm.state === 'listening'")
        texts = {name: page.inner_text(f"#{name}").strip() for name in ("transcript", "emotion", "reply", "latency")}
        history = get_json(f"{live_server.url}/api/sessions/{cm['sessionId']}/history")
        marked = page.locator(f"#sessions [data-session-id='{cm['sessionId']}'] button[aria-current='true']")
        marked.wait_for()
        page.screenshot(path=str(artifacts_dir / "hands_free.png"), full_page=True)  # README's: test_browser_mentor
        return HandsFreeTurn(cm, texts, server_bytes, server_rms, history, marked.count() == 1, list(errors))


def test_the_page_shows_what_was_heard_while_the_person_speaks(hands_free_turn: HandsFreeTurn) -> None:
    """Partial transcripts (transcript.delta) reached the page before the final transcript and were shown in the
    transcript line; the last one already holds words of the sentence."""
    cm = hands_free_turn.cm
    events: list[str] = cm["events"]
    assert "transcript.delta" in events, events
    assert events.index("transcript.delta") < events.index("transcript")
    shown: list[str] = cm["partialsShown"]
    assert shown and set(shown[-1].lower().split()) & set(SENTENCE.lower().split()), shown


def test_the_microphone_streams_real_time_speech_to_the_server(hands_free_turn: HandsFreeTurn) -> None:
    """The page captured the fake mic through its worklet and streamed 20 ms PCM16 frames at 32 kB/s (wall time),
    and the server received them, with speech energy in them."""
    cm = hands_free_turn.cm
    expected = cm["elapsedMs"] / 1000 * PCM_BYTES_PER_S
    assert 0.85 * expected <= cm["bytesSent"] <= 1.05 * expected, (cm["bytesSent"], expected)
    assert cm["bytesSent"] % 640 == 0
    assert hands_free_turn.server_bytes >= cm["bytesSent"] - 0.5 * PCM_BYTES_PER_S
    assert hands_free_turn.server_rms > 100, hands_free_turn.server_rms
    assert cm["maxRms"] > 0.02


def test_the_page_shows_transcript_emotion_reply_and_latency(hands_free_turn: HandsFreeTurn) -> None:
    """The turn is on the page: the transcript of the spoken sentence (WER <= 0.3), an emotion with its
    confidence, the mentor's reply, and the latency from the end of speech to the first reply audio."""
    texts = hands_free_turn.texts
    assert word_error_rate(SENTENCE, texts["transcript"]) <= 0.3, texts["transcript"]
    assert re.fullmatch(r"[a-z_]+ · \d{1,3}%", texts["emotion"]), texts["emotion"]
    assert len(texts["reply"].split()) >= 3, texts["reply"]
    assert re.fullmatch(r"\d+\.\d\d s to first audio", texts["latency"]), texts["latency"]
    assert 0 < hands_free_turn.cm["latency"] < 60
    assert not hands_free_turn.errors, hands_free_turn.errors


def test_the_reply_audio_plays_to_its_end(hands_free_turn: HandsFreeTurn) -> None:
    """Every reply chunk the page received was scheduled and reached its `ended` event, nothing was cut off."""
    cm = hands_free_turn.cm
    assert cm["playbackEnded"] == 1
    assert cm["audioChunksPlayed"] >= 1 and cm["audioChunksPlayed"] == cm["audioChunksReceived"]
    assert cm["playbackStopped"] == 0 and cm["interrupted"] == 0


def test_the_server_stored_the_turn_in_the_session_the_page_shows(hands_free_turn: HandsFreeTurn) -> None:
    """The session the page shows holds the spoken turn and the reply, and the sidebar marks it as current."""
    user, assistant = hands_free_turn.history["turns"][:2]
    assert user["role"] == "user" and word_error_rate(SENTENCE, user["text"]) <= 0.3, user
    assert user["duration_s"] > 1.5
    assert assistant["role"] == "assistant" and assistant["text"]
    assert hands_free_turn.current_session_marked


def test_barge_in_from_the_page_stops_playback_and_transcribes_the_new_utterance(
    live_server: LiveServer, speech_dir: Path, artifacts_dir: Path
) -> None:
    """Speaking while the reply plays: the page stops its audio at once, the server sends `interrupted`, and the
    spoken utterance becomes the next turn's transcript.

    The question is typed, and the microphone (whose WAV starts playing when getUserMedia opens it) is started
    once the reply is audibly playing: on two shared CPU cores the reply's start varies by seconds from run to
    run, so a fixed pause in one WAV sometimes lands before the reply has begun.
    """
    wav = padded_wav(espeak_wav(SECOND, speech_dir / "second.wav"), speech_dir / "second_pad.wav", 0.3, 2.0)
    with browser_page(live_server, wav) as (page, errors):
        page.fill("#text-input", QUESTION)
        page.press("#text-input", "Enter")
        page.wait_for_function("window.__cm.playbackStarted >= 1", timeout=TURN_TIMEOUT_MS)
        start_hands_free(page, live_server)
        page.wait_for_function("window.__cm.interrupted >= 1", timeout=TURN_TIMEOUT_MS)
        cm = counters(page)
        assert cm["playbackStopped"] >= 1 and not cm["playing"]  # the page dropped the reply's audio
        assert cm["playbackEnded"] == 0
        assert cm["events"].index("speech_started") < cm["events"].index("interrupted")
        page.wait_for_function(
            "document.querySelectorAll('#conversation .turn.user').length >= 2", timeout=TURN_TIMEOUT_MS
        )
        users = page.locator("#conversation .turn.user .text").all_inner_texts()
        assert users[0] == QUESTION
        assert word_error_rate(SECOND, users[1]) <= 0.3, users
        page.wait_for_selector("#conversation .turn.mentor.interrupted")
        page.screenshot(path=str(artifacts_dir / "barge_in.png"), full_page=True)
        assert not errors, errors
