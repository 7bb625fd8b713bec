"""Fast tests of the mentor's voice per emotion and of silence trimming (no TTS engine)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.config import TTSSettings
from backend.engines.protocols import EMOTIONS
from backend.engines.tts.espeak import trim_silence
from backend.mentor.voice_style import voice_style_for

pytestmark = pytest.mark.fast

BASE = TTSSettings(rate=170, pitch=50, volume=1.0)


def test_neutral_uses_the_base_voice() -> None:
    """Neutral (and any unknown label) speaks with the configured rate, pitch and volume."""
    for label in ("neutral", "no-such-emotion"):
        style = voice_style_for(label, BASE)
        assert (style.rate, style.pitch, style.volume) == (170, 50, 1.0)


def test_sad_anxious_angry_are_slower_and_lower_than_neutral() -> None:
    """Heavy emotions get a slower, lower voice; sad is also softer."""
    neutral = voice_style_for("neutral", BASE)
    for label in ("sad", "anxious", "angry"):
        style = voice_style_for(label, BASE)
        assert style.rate < neutral.rate, label
        assert style.pitch < neutral.pitch, label
    assert voice_style_for("sad", BASE).volume < neutral.volume
    assert voice_style_for("angry", BASE).pitch < voice_style_for("anxious", BASE).pitch


def test_happy_and_surprised_are_brighter() -> None:
    """Happy is faster and higher than neutral; surprised is higher but calmer than happy."""
    neutral = voice_style_for("neutral", BASE)
    happy = voice_style_for("happy", BASE)
    surprised = voice_style_for("surprised", BASE)
    assert happy.rate > neutral.rate and happy.pitch > neutral.pitch
    assert surprised.pitch > neutral.pitch
    assert happy.rate >= surprised.rate >= neutral.rate


def test_styles_follow_the_settings_and_stay_in_range() -> None:
    """The base comes from TTSSettings and every style stays within espeak's limits."""
    for settings in (TTSSettings(rate=80, pitch=0, volume=0.1), TTSSettings(rate=450, pitch=99, volume=2.0)):
        for label in EMOTIONS:
            style = voice_style_for(label, settings)
            assert 80 <= style.rate <= 450
            assert 0 <= style.pitch <= 99
            assert 0.0 <= style.volume <= 2.0
    assert voice_style_for("neutral", TTSSettings(rate=200)).rate == 200


def test_trim_silence_keeps_50_ms_each_side() -> None:
    """Leading and trailing silence beyond 50 ms is removed; the sound itself is kept whole."""
    rate = 22050
    tone = (np.sin(np.arange(rate // 2) * 0.1) * 10000).astype("<i2")
    pcm = np.concatenate([np.zeros(rate, "<i2"), tone, np.zeros(rate, "<i2")]).tobytes()
    out = np.frombuffer(trim_silence(pcm, rate), dtype="<i2")
    keep = int(0.05 * rate)
    assert abs(out.size - (tone.size + 2 * keep)) <= 2
    assert np.abs(out).max() == np.abs(tone).max()


def test_trim_silence_of_pure_silence_is_empty() -> None:
    """Audio with no sound at all trims to nothing (no click of silence is sent)."""
    assert trim_silence(bytes(4000), 16000) == b""
    assert trim_silence(b"", 16000) == b""
