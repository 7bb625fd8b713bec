"""The real WebRTC VAD and TurnDetector on espeak-ng speech (needs the espeak-ng binary; no weights)."""

from __future__ import annotations

import pytest

from backend.config import VADSettings
from backend.core.audio_utils import PcmFramer
from backend.engines.vad.webrtc import load as load_vad
from backend.pipeline.turn_detector import SpeechStopped, TurnDetector, TurnEvent
from scripts.speech_tools.espeak import espeak_available, speak_pcm

pytestmark = [
    pytest.mark.real,
    pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed"),
]

SILENCE_1S = b"\x00" * 32000


def _run(pcm: bytes, rate: int = 16000) -> list[TurnEvent]:
    settings = VADSettings.model_validate({})
    framer = PcmFramer(rate, frame_ms=settings.frame_ms)
    det = TurnDetector(load_vad(settings).new_detector(), settings, max_turn_s=30)
    events: list[TurnEvent] = []
    for frame in framer.push(pcm) + framer.flush():
        events += det.push_frame(frame)
    return events


def test_speak_pcm_gives_audio_at_requested_rate() -> None:
    """speak_pcm returns PCM16 whose length matches a spoken sentence at the requested rate."""
    pcm16 = speak_pcm("Hello there, how are you today?")
    pcm48 = speak_pcm("Hello there, how are you today?", sample_rate=48000)
    seconds = len(pcm16) / 32000
    assert 1.0 < seconds < 4.0
    assert len(pcm48) / 96000 == pytest.approx(seconds, abs=0.01)


def test_two_sentences_give_two_turns() -> None:
    """Speech, 1.5 s silence, speech, silence: two SpeechStopped(silence) each holding its sentence."""
    a = speak_pcm("I have been feeling stressed about my exams.")
    b = speak_pcm("Can you help me plan my week?", voice="en+f3")
    events = _run(SILENCE_1S + a + SILENCE_1S + SILENCE_1S[:16000] + b + SILENCE_1S)
    stops = [e for e in events if isinstance(e, SpeechStopped)]
    assert [e.type for e in events if e.type in ("speech_started", "speech_stopped")] == [
        "speech_started",
        "speech_stopped",
    ] * 2
    for stop, source in zip(stops, (a, b), strict=True):
        assert stop.reason == "silence"
        # the utterance covers the sentence plus at most pre-roll and hangover (and espeak's own pauses)
        assert len(source) / 32000 - 0.3 < stop.duration_s < len(source) / 32000 + 0.9


def test_48k_input_is_resampled_and_detected() -> None:
    """A client sending 48 kHz audio gets the same turn detection through the framer's resampler."""
    speech = speak_pcm("This is a test of the high sample rate path.", sample_rate=48000)
    silence = b"\x00" * 96000
    events = _run(silence + speech + silence, rate=48000)
    assert sum(isinstance(e, SpeechStopped) for e in events) == 1
