"""PhraseAudio: the opening clauses' speech, synthesized once per text and voice style, bounded."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from backend.engines.protocols import VoiceStyle
from backend.pipeline.phrase_audio import PhraseAudio
from tests.fakes import FakeTTS
from tests.pipeline.recording import run_async

pytestmark = pytest.mark.fast

CALM = VoiceStyle(rate=150, pitch=42)
BRIGHT = VoiceStyle(rate=180, pitch=56)


def _phrases(tts: FakeTTS, max_entries: int = 512) -> PhraseAudio:
    return PhraseAudio(tts.synthesize, ThreadPoolExecutor(1), max_entries=max_entries)


def test_a_phrase_is_synthesized_once_per_style() -> None:
    tts = FakeTTS()
    phrases = _phrases(tts)

    async def go() -> None:
        first = await phrases.speech("I'm sorry,", CALM)
        again = await phrases.speech("I'm sorry,", CALM)
        assert again is first
        other = await phrases.speech("I'm sorry,", BRIGHT)
        assert other is not first

    run_async(go())
    assert tts.texts == ["I'm sorry,", "I'm sorry,"] and tts.styles == [CALM, BRIGHT]


def test_warm_synthesizes_ahead_and_the_least_recently_used_goes_first() -> None:
    tts = FakeTTS()
    phrases = _phrases(tts, max_entries=2)

    async def go() -> None:
        assert await phrases.warm([("Okay,", CALM), ("Right,", CALM)]) == 2
        await phrases.speech("Okay,", CALM)  # used: "Right," is now the oldest
        await phrases.speech("I see,", CALM)  # a third: "Right," goes
        await phrases.speech("Okay,", CALM)
        await phrases.speech("Right,", CALM)

    run_async(go())
    assert tts.texts == ["Okay,", "Right,", "I see,", "Right,"]
    assert len(phrases) == 2


def test_empty_speech_is_not_kept() -> None:
    tts = FakeTTS()
    phrases = _phrases(tts)
    run_async(phrases.speech("", CALM))
    assert len(phrases) == 0
