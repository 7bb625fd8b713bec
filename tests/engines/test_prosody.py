"""Prosody features and the voice estimate on synthetic signals: robust to degenerate input, and arousal
moves the right way."""

from __future__ import annotations

import numpy as np
import pytest

from backend.engines.emotion.prosody import extract_prosody, voice_estimate
from backend.engines.protocols import EMOTIONS

pytestmark = pytest.mark.fast

SR = 16_000


def tone(seconds: float, freq: float, amp: float, mod_hz: float = 0.0, vibrato: float = 0.0) -> np.ndarray:
    """A sine at ``freq`` with optional syllable-like amplitude bursts (``mod_hz``) and pitch vibrato (Hz)."""
    t = np.arange(int(seconds * SR)) / SR
    f = freq + vibrato * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(f) / SR
    env = np.ones_like(t) if mod_hz == 0 else np.clip(np.sin(2 * np.pi * mod_hz * t), 0.05, None)
    return (amp * env * np.sin(phase)).astype(np.float32)


@pytest.mark.parametrize(
    "audio",
    [
        np.zeros(0, dtype=np.float32),
        np.zeros(10, dtype=np.float32),
        np.ones(10, dtype=np.float32),
        np.zeros(SR * 2, dtype=np.float32),
        np.clip(tone(1.0, 150, 5.0), -1, 1),  # heavily clipped
        tone(1.0, 150, 5.0),  # out of range, unclipped
        np.full(SR, np.nan, dtype=np.float32),
        np.array([np.inf, -np.inf] * 4000, dtype=np.float32),
    ],
    ids=["empty", "10-samples", "10-ones", "silence", "clipped", "overrange", "nan", "inf"],
)
def test_degenerate_audio_never_raises(audio: np.ndarray) -> None:
    """Empty, tiny, silent, clipped and non-finite audio give finite in-range features, a valid estimate."""
    f = extract_prosody(audio)
    values = [f.duration_s, f.rms_db, f.pitch_hz, f.pitch_std_hz, f.voiced_ratio, f.speaking_rate]
    assert all(np.isfinite(v) for v in values)
    assert 0.0 <= f.arousal <= 1.0
    assert 0.0 <= f.voiced_ratio <= 1.0
    assert 0.0 <= f.pause_ratio <= 1.0
    est = voice_estimate(f)
    assert sum(est.scores.values()) == pytest.approx(1.0)


def test_silence_has_no_voice_and_zero_arousal() -> None:
    """Two seconds of silence: nothing voiced, arousal 0, and a flat (uniform) voice estimate."""
    f = extract_prosody(np.zeros(SR * 2, dtype=np.float32))
    assert f.voiced_ratio == 0.0
    assert f.arousal == 0.0
    est = voice_estimate(f)
    assert max(est.scores.values()) == pytest.approx(1 / len(EMOTIONS))


def test_pitch_of_a_tone_is_measured() -> None:
    """A steady 150 Hz tone is voiced with pitch within 3 Hz and almost no pitch spread."""
    f = extract_prosody(tone(1.0, 150, 0.3))
    assert f.pitch_hz == pytest.approx(150, abs=3)
    assert f.pitch_std_hz < 3
    assert f.voiced_ratio > 0.8


def test_loud_fast_modulated_tone_is_more_aroused_than_quiet_steady_tone() -> None:
    """Loudness, syllable rate and pitch movement all raise arousal; high arousal leans away from sad."""
    calm = extract_prosody(tone(3.0, 100, 0.02, mod_hz=1.5))
    excited = extract_prosody(tone(3.0, 220, 0.5, mod_hz=3.0, vibrato=40))
    assert excited.arousal > calm.arousal + 0.3
    assert excited.speaking_rate > calm.speaking_rate
    assert excited.rms_db > calm.rms_db
    calm_est, excited_est = voice_estimate(calm), voice_estimate(excited)
    assert calm_est.scores["sad"] > excited_est.scores["sad"]
    assert excited_est.scores["angry"] > calm_est.scores["angry"]


def test_speaking_rate_counts_bursts() -> None:
    """Bursts at 2 per second (sine at 2 Hz, positive half) come out near 2 peaks per second."""
    f = extract_prosody(tone(4.0, 150, 0.3, mod_hz=2.0))
    assert f.speaking_rate == pytest.approx(2.0, abs=0.5)


def test_voice_estimate_confidence_is_modest() -> None:
    """Prosody is weak evidence: no voice estimate is more confident than 0.4."""
    for a in np.linspace(0, 1, 11):
        base = extract_prosody(tone(1.0, 150, 0.3))
        f = type(base)(**{**base.__dict__, "arousal": float(a)})
        assert voice_estimate(f).confidence <= 0.4
