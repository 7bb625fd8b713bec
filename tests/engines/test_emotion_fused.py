"""Fusion of text and voice emotion in FusedEmotionDetector, with a scripted text classifier (no weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backend.config import EmotionSettings
from backend.core.exceptions import ModelLoadError
from backend.engines.emotion.fused import FusedEmotionDetector, fuse
from backend.engines.emotion.fused import load as load_emotion
from backend.engines.emotion.prosody import extract_prosody, voice_estimate
from backend.engines.protocols import EMOTIONS, EmotionEstimate

pytestmark = pytest.mark.fast

SR = 16_000


def estimate(label: str, confidence: float) -> EmotionEstimate:
    rest = (1 - confidence) / (len(EMOTIONS) - 1)
    return EmotionEstimate(label, confidence, {e: confidence if e == label else rest for e in EMOTIONS})


class ScriptedText:
    """Returns a fixed estimate and records the texts it was asked about."""

    def __init__(self, est: EmotionEstimate) -> None:
        self.est = est
        self.texts: list[str] = []

    def __call__(self, text: str) -> EmotionEstimate:
        self.texts.append(text)
        return self.est


def excited_voice(seconds: float = 2.0) -> np.ndarray:
    """Loud, fast-modulated tone with pitch movement: high arousal."""
    t = np.arange(int(seconds * SR)) / SR
    f = 220 + 40 * np.sin(2 * np.pi * 1.5 * t)
    env = np.clip(np.sin(2 * np.pi * 3.0 * t), 0.05, None)
    return (0.5 * env * np.sin(2 * np.pi * np.cumsum(f) / SR)).astype(np.float32)


def test_fuse_is_weighted_mean_summing_to_one() -> None:
    """Fused scores are text_weight * text + (1 - text_weight) * voice, and sum to 1."""
    text, voice = estimate("sad", 0.7), estimate("angry", 0.4)
    fused = fuse(text, voice, 0.75)
    assert sum(fused.values()) == pytest.approx(1.0)
    for e in EMOTIONS:
        assert fused[e] == pytest.approx(0.75 * text.scores[e] + 0.25 * voice.scores[e])


@pytest.mark.parametrize(("weight", "winner"), [(1.0, "sad"), (0.0, "angry")])
def test_fuse_weight_extremes_pick_one_source(weight: float, winner: str) -> None:
    """Weight 1 gives the text's scores exactly, weight 0 the voice's."""
    text, voice = estimate("sad", 0.7), estimate("angry", 0.4)
    fused = fuse(text, voice, weight)
    assert max(fused, key=lambda e: fused[e]) == winner
    source = text if weight == 1.0 else voice
    assert fused == pytest.approx(source.scores)


def test_detect_without_audio_is_text_only() -> None:
    """With audio None the result is the text estimate, with no voice estimate and no prosody."""
    text = ScriptedText(estimate("anxious", 0.6))
    result = FusedEmotionDetector(text, text_weight=0.75).detect("what if I fail")
    assert text.texts == ["what if I fail"]
    assert (result.label, result.voice, result.prosody) == ("anxious", None, None)
    assert result.scores == pytest.approx(text.est.scores)
    assert result.text is text.est


def test_detect_with_too_short_audio_is_text_only() -> None:
    """Audio shorter than the minimum is ignored: no prosody, text scores unchanged."""
    text = ScriptedText(estimate("happy", 0.6))
    result = FusedEmotionDetector(text).detect("yay", np.zeros(100, dtype=np.float32))
    assert result.voice is None and result.prosody is None
    assert result.scores == pytest.approx(text.est.scores)


def test_detect_with_silent_audio_keeps_prosody_but_not_voice() -> None:
    """Silent audio yields prosody (arousal 0) but no voice estimate, so the text decides alone."""
    text = ScriptedText(estimate("sad", 0.5))
    result = FusedEmotionDetector(text).detect("meh", np.zeros(SR, dtype=np.float32))
    assert result.prosody is not None and result.prosody.arousal == 0.0
    assert result.voice is None
    assert result.scores == pytest.approx(text.est.scores)


def test_detect_with_audio_fuses_voice_by_weight() -> None:
    """With voiced audio the fused scores follow the configured weight, and the dict form carries both."""
    text = ScriptedText(estimate("neutral", 0.4))
    audio = excited_voice()
    result = FusedEmotionDetector(text, text_weight=0.6).detect("I talked to my boss", audio)
    assert result.voice is not None and result.prosody is not None
    expected_voice = voice_estimate(extract_prosody(audio))
    for e in EMOTIONS:
        assert result.scores[e] == pytest.approx(0.6 * text.est.scores[e] + 0.4 * expected_voice.scores[e])
    assert sum(result.scores.values()) == pytest.approx(1.0)
    assert result.confidence == result.scores[result.label]
    assert result.scores["angry"] > text.est.scores["angry"]  # an aroused voice pulls towards angry
    d = result.to_dict()
    assert {"text", "voice", "prosody"} <= set(d)


def test_warmup_runs_text_and_audio() -> None:
    """warmup() calls the text model once and runs without error."""
    text = ScriptedText(estimate("neutral", 0.5))
    FusedEmotionDetector(text).warmup()
    assert len(text.texts) == 1


def test_load_failure_names_the_model(tmp_path: Path) -> None:
    """A missing examples file raises ModelLoadError naming model and file, before any weights load."""
    missing = tmp_path / "no_examples.yaml"
    settings = EmotionSettings(embedding_model="my-embedder", examples_path=missing)
    with pytest.raises(ModelLoadError, match="my-embedder") as info:
        load_emotion(settings.model_copy(update={"device": "cpu"}))
    assert str(missing) in info.value.message
