"""Real pyttsx3 + espeak-ng synthesis: audio, durations, styles, thread safety and load errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from backend.config import TTSSettings
from backend.core.exceptions import ModelLoadError
from backend.engines.protocols import VoiceStyle
from backend.engines.tts.espeak import EspeakSynthesizer
from backend.engines.tts.espeak import load as load_tts
from backend.mentor.voice_style import voice_style_for

pytestmark = pytest.mark.real

SHORT = "I hear you."
LONG = "That sounds really hard, and it makes sense that you feel tired after such a long week."


@pytest.fixture(scope="module")
def tts() -> Iterator[EspeakSynthesizer]:
    synth = load_tts(TTSSettings())
    assert isinstance(synth, EspeakSynthesizer)
    assert load_tts(TTSSettings()) is synth, "pyttsx3 has one engine per process: one shared synthesizer"
    yield synth


def test_sentence_gives_audio_at_the_sample_rate(tts: EspeakSynthesizer) -> None:
    """A sentence becomes non-empty PCM16 at the engine's rate (22050 Hz for espeak-ng), quickly."""
    speech = tts.synthesize(LONG, VoiceStyle())
    assert tts.sample_rate == 22050 == speech.sample_rate
    assert len(speech.pcm) % 2 == 0
    assert 2.0 < speech.seconds < 10.0
    assert tts.last_synthesis_s < speech.seconds  # faster than real time


def test_longer_text_gives_longer_audio(tts: EspeakSynthesizer) -> None:
    """Duration grows with the text."""
    assert tts.synthesize(LONG, VoiceStyle()).seconds > 2 * tts.synthesize(SHORT, VoiceStyle()).seconds


def test_styles_change_the_voice(tts: EspeakSynthesizer) -> None:
    """A slower rate gives longer audio and the sad style is slower than the neutral one (per call)."""
    slow = tts.synthesize(LONG, VoiceStyle(rate=110)).seconds
    fast = tts.synthesize(LONG, VoiceStyle(rate=250)).seconds
    assert slow > 1.5 * fast
    settings = TTSSettings()
    sad = tts.synthesize(LONG, voice_style_for("sad", settings)).seconds
    neutral = tts.synthesize(LONG, voice_style_for("neutral", settings)).seconds
    assert sad > 1.05 * neutral


def test_empty_text_gives_empty_speech(tts: EspeakSynthesizer) -> None:
    """Empty or whitespace text returns no audio and does not disturb the engine."""
    assert tts.synthesize("", VoiceStyle()).pcm == b""
    assert tts.synthesize("  \n ", VoiceStyle()).pcm == b""
    assert tts.synthesize(SHORT, VoiceStyle()).seconds > 0.3


def test_synthesis_from_many_threads(tts: EspeakSynthesizer) -> None:
    """Four threads synthesizing at once all get the same audio they would get alone."""
    expected = tts.synthesize(LONG, VoiceStyle()).seconds
    results: list[float] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(tts.synthesize(LONG, VoiceStyle()).seconds)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert len(results) == 4
    assert all(abs(r - expected) < 0.1 for r in results)


def test_unknown_voice_raises_model_load_error() -> None:
    """A voice espeak-ng does not know fails loading with a ModelLoadError naming the engine."""
    with pytest.raises(ModelLoadError, match="text-to-speech engine 'espeak' failed to load"):
        load_tts(TTSSettings(voice="no-such-voice-xyz"))


def test_a_voice_that_failed_to_load_does_not_break_the_others() -> None:
    """pyttsx3 has one engine per process: after another voice failed to load there, the default voice (loaded
    before and after) still speaks."""
    load_tts(TTSSettings())
    with pytest.raises(ModelLoadError):
        load_tts(TTSSettings(voice="no-such-voice-xyz"))
    speech = load_tts(TTSSettings()).synthesize("Still speaking after that.", VoiceStyle())
    assert speech.sample_rate > 0 and len(speech.pcm) > 1000
