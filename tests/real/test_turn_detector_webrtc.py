"""The real WebRTC VAD and TurnDetector on espeak-ng speech (needs the espeak-ng binary; no weights)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.config import VADSettings
from backend.core.audio_utils import PcmFramer
from backend.engines.vad.webrtc import load as load_vad
from backend.pipeline.turn_detector import SpeechPaused, SpeechStopped, TurnDetector, TurnEvent
from scripts.common.espeak import espeak_available, speak_pcm

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


def _trimmed(text: str) -> bytes:
    """espeak's speech without its own trailing quiet (30 ms frames under RMS 300 at the end)."""
    pcm = speak_pcm(text)
    frames = np.frombuffer(pcm[: len(pcm) // 960 * 960], dtype="<i2").astype(np.float64).reshape(-1, 480)
    loud = np.flatnonzero(np.sqrt(np.mean(frames**2, axis=1)) > 300)
    return pcm[: (int(loud[-1]) + 1) * 960]


def _noise(seconds: float, rms: float) -> bytes:
    rng = np.random.default_rng(7)
    return (rng.normal(0.0, rms, int(seconds * 16000)).clip(-32768, 32767)).astype("<i2").tobytes()


def _pause_after_speech_s(speech: bytes, after: bytes, **settings: object) -> float | None:
    """Seconds from the end of ``speech`` to the SpeechPaused that follows it (None: no pause was heard)."""
    vad = VADSettings.model_validate(settings)
    det = TurnDetector(load_vad(vad).new_detector(), vad, max_turn_s=30)
    framer = PcmFramer(16000, frame_ms=vad.frame_ms)
    lead = _noise(0.6, 1.0)
    pushed = 0
    for frame in framer.push(lead + speech + after):
        pushed += len(frame)
        if any(isinstance(e, SpeechPaused) for e in det.push_frame(frame)):
            return (pushed - len(lead) - len(speech)) / 32000
    return None


def test_quiet_after_the_last_word_is_silence_at_once() -> None:
    """webrtcvad calls about 0.1 s of quiet after the words voiced (and faint hiss voiced throughout); 40 dB under
    the voice it is silence, so the pause, and so the end of speech, comes that much sooner. Louder noise is left
    to the VAD."""
    speech = _trimmed("I finally finished the report for my manager.")
    near_silence = _noise(1.0, 5.0)
    gated = _pause_after_speech_s(speech, near_silence)
    vad_alone = _pause_after_speech_s(speech, near_silence, silence_below_peak_db=None)
    assert gated is not None and gated <= 0.15 + 0.03  # the pause itself, to the frame
    assert vad_alone is not None and vad_alone >= gated + 0.06
    hiss = _noise(1.0, 20.0)  # about 50 dB under espeak's loudest frames: the VAD alone never hears a pause
    hiss_gated = _pause_after_speech_s(speech, hiss)
    assert hiss_gated is not None and hiss_gated <= 0.18
    assert _pause_after_speech_s(speech, hiss, silence_below_peak_db=None) is None
    noise = _noise(1.0, 400.0)  # about 26 dB under: the VAD decides, as before
    assert _pause_after_speech_s(speech, noise) == _pause_after_speech_s(speech, noise, silence_below_peak_db=None)
