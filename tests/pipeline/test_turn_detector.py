"""TurnDetector state machine with a scripted energy-threshold VAD on synthetic tone and silence."""

from __future__ import annotations

import numpy as np
import pytest

from backend.config import VADSettings
from backend.pipeline.turn_detector import (
    SpeechDiscarded,
    SpeechPaused,
    SpeechStarted,
    SpeechStopped,
    SpeechSustained,
    TurnDetector,
    TurnEvent,
)

pytestmark = pytest.mark.fast

RATE = 16000
FRAME_MS = 30
FRAME_SAMPLES = RATE * FRAME_MS // 1000


class EnergyVad:
    """Fake VAD: a frame is speech when its RMS exceeds a threshold. Counts its calls."""

    def __init__(self, threshold: float = 500.0) -> None:
        self.threshold = threshold
        self.calls = 0

    def is_speech(self, frame: bytes, sample_rate: int) -> bool:
        self.calls += 1
        x = np.frombuffer(frame, dtype="<i2").astype(np.float64)
        return float(np.sqrt(np.mean(x**2))) > self.threshold


def tone(ms: int, start_sample: int = 0) -> list[bytes]:
    """Frames of a loud 300 Hz tone; sample values encode nothing, so pre-roll is checked by content."""
    n = ms // FRAME_MS * FRAME_SAMPLES
    t = np.arange(start_sample, start_sample + n) / RATE
    pcm = (8000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()
    return [pcm[i : i + FRAME_SAMPLES * 2] for i in range(0, len(pcm), FRAME_SAMPLES * 2)]


def silence(ms: int, marker: int = 1) -> list[bytes]:
    """Quiet frames filled with a small constant ``marker`` (below the VAD threshold) to tag their origin."""
    frame = np.full(FRAME_SAMPLES, marker, dtype="<i2").tobytes()
    return [frame] * (ms // FRAME_MS)


def settings(**overrides: int | None) -> VADSettings:
    base: dict[str, int | None] = {
        "frame_ms": FRAME_MS,
        "start_ms": 90,
        "hangover_ms": 300,
        "preroll_ms": 150,
        "min_speech_ms": 240,
        "barge_in_ms": 300,
    }
    base.update(overrides)
    return VADSettings(**base)


def feed(det: TurnDetector, frames: list[bytes]) -> list[TurnEvent]:
    events: list[TurnEvent] = []
    for f in frames:
        events += det.push_frame(f)
    return events


def kinds(events: list[TurnEvent]) -> list[str]:
    """Event types, leaving out the advisory speech_paused / speech_resumed (tested on their own)."""
    return [e.type for e in events if e.type not in ("speech_paused", "speech_resumed")]


def test_start_and_stop_with_preroll_and_hangover() -> None:
    """Tone between silences gives started, sustained, stopped; audio = pre-roll + speech + hangover."""
    det = TurnDetector(EnergyVad(), settings(), max_turn_s=30)
    lead = silence(600, marker=7)
    speech = tone(900)
    trail = silence(600, marker=3)
    events = feed(det, lead + speech + trail)
    assert kinds(events) == ["speech_started", "speech_sustained", "speech_stopped"]
    started, sustained, stopped = (e for e in events if e.type != "speech_paused")
    assert isinstance(started, SpeechStarted) and started.offset_s == pytest.approx(0.6)
    assert started.ago_s == pytest.approx(0.09)  # declared on the third voiced frame
    assert isinstance(sustained, SpeechSustained) and sustained.duration_s == pytest.approx(0.3)
    assert isinstance(stopped, SpeechStopped) and stopped.reason == "silence"
    expected = b"".join(lead[-5:] + speech + trail[:10])  # 150 ms pre-roll, 300 ms hangover
    assert stopped.audio == expected
    assert stopped.duration_s == pytest.approx(0.15 + 0.9 + 0.3)
    assert stopped.silence_s == pytest.approx(0.3)
    assert not det.in_speech


def test_current_audio_while_speaking() -> None:
    """current_audio() returns the utterance so far (pre-roll included) and is empty when idle."""
    det = TurnDetector(EnergyVad(), settings(), max_turn_s=30)
    feed(det, silence(300))
    assert det.current_audio() == b"" and not det.in_speech
    speech = tone(300)
    feed(det, speech)
    assert det.in_speech
    assert det.current_audio() == b"".join(silence(150) + speech)


def test_short_burst_is_discarded() -> None:
    """A 150 ms burst (below min_speech_ms) starts speech but ends with SpeechDiscarded, no SpeechStopped."""
    det = TurnDetector(EnergyVad(), settings(), max_turn_s=30)
    events = feed(det, silence(300) + tone(150) + silence(600))
    assert kinds(events) == ["speech_started", "speech_discarded"]
    discarded = events[1]
    assert isinstance(discarded, SpeechDiscarded) and discarded.voiced_s == pytest.approx(0.15)
    assert not det.in_speech
    events = feed(det, tone(600) + silence(600))  # detection goes on afterwards
    assert kinds(events) == ["speech_started", "speech_sustained", "speech_stopped"]


def test_isolated_voiced_frames_do_not_start_speech() -> None:
    """Alternating single voiced frames never fill the start window (3 voiced of 4)."""
    det = TurnDetector(EnergyVad(), settings(), max_turn_s=30)
    frames: list[bytes] = []
    for _ in range(20):
        frames += tone(30) + silence(60)
    assert feed(det, frames) == []


def test_max_length_cuts_and_detection_continues() -> None:
    """Speech longer than max_turn_s is cut at exactly max_turn_s and the rest becomes the next utterance."""
    det = TurnDetector(EnergyVad(), settings(preroll_ms=0), max_turn_s=1.5)
    speech = tone(2400)
    events = feed(det, speech + silence(600))
    assert kinds(events) == [
        "speech_started",
        "speech_sustained",
        "speech_stopped",
        "speech_started",
        "speech_sustained",
        "speech_stopped",
    ]
    first, second = (e for e in events if isinstance(e, SpeechStopped))
    assert first.reason == "max_length" and first.duration_s == pytest.approx(1.5)
    assert second.reason == "silence"
    assert first.audio + second.audio == b"".join(speech + silence(300))  # nothing lost, nothing repeated


def test_commit_without_vad_speech() -> None:
    """commit() sends everything since the last turn even when the VAD never fired; then nothing is left."""
    det = TurnDetector(EnergyVad(threshold=1e9), settings(), max_turn_s=30)
    frames = tone(600)
    assert feed(det, frames) == []
    events = det.commit()
    assert len(events) == 1 and isinstance(events[0], SpeechStopped)
    assert events[0].reason == "commit" and events[0].audio == b"".join(frames)
    assert det.commit() == []


def test_commit_during_vad_speech_includes_audio_since_last_turn() -> None:
    """commit() mid-utterance ends it with all audio since the previous turn ended, then goes idle."""
    det = TurnDetector(EnergyVad(), settings(), max_turn_s=30)
    feed(det, tone(600) + silence(300))  # a first turn ends after the 300 ms hangover
    frames = silence(450) + tone(450)
    feed(det, frames)
    assert det.in_speech
    (stopped,) = det.commit()
    assert isinstance(stopped, SpeechStopped) and stopped.audio == b"".join(frames)
    assert not det.in_speech and det.current_audio() == b""


def test_commit_buffer_is_bounded_by_max_turn() -> None:
    """Without a turn end, commit() keeps only the last max_turn_s of audio (bounded memory)."""
    det = TurnDetector(EnergyVad(threshold=1e9), settings(), max_turn_s=0.9)
    frames = silence(3000, marker=5) + tone(900)
    feed(det, frames)
    (stopped,) = det.commit()
    assert isinstance(stopped, SpeechStopped) and stopped.audio == b"".join(frames[-30:])


def test_sustained_only_once_per_utterance() -> None:
    """A long utterance with short pauses (below hangover) emits SpeechSustained exactly once."""
    det = TurnDetector(EnergyVad(), settings(), max_turn_s=30)
    frames = (tone(600) + silence(150)) * 4 + silence(600)
    events = feed(det, frames)
    assert kinds(events) == ["speech_started", "speech_sustained", "speech_stopped"]


def test_reset_drops_utterance() -> None:
    """reset() mid-utterance forgets the audio: no stop event follows and commit has nothing."""
    det = TurnDetector(EnergyVad(), settings(), max_turn_s=30)
    feed(det, tone(300))
    assert det.in_speech
    det.reset()
    assert not det.in_speech
    assert feed(det, silence(600)) == []
    assert det.commit()[0].duration_s == pytest.approx(0.6)  # only the silence after the reset


def test_wrong_frame_size_raises() -> None:
    """A frame of the wrong size is a caller bug and raises ValueError."""
    det = TurnDetector(EnergyVad(), settings(), max_turn_s=30)
    with pytest.raises(ValueError, match="960"):
        det.push_frame(b"\x00" * 100)


@pytest.mark.parametrize("frame_ms", [10, 20])
def test_other_frame_sizes(frame_ms: int) -> None:
    """10 and 20 ms frames work the same way (durations in ms, not frames)."""
    det = TurnDetector(EnergyVad(), settings(frame_ms=frame_ms, preroll_ms=300), max_turn_s=30)
    n = RATE * frame_ms // 1000 * 2
    pcm = b"".join(silence(600) + tone(900) + silence(600))
    events = feed(det, [pcm[i : i + n] for i in range(0, len(pcm), n)])
    assert kinds(events) == ["speech_started", "speech_sustained", "speech_stopped"]
    stopped = events[-1]
    assert isinstance(stopped, SpeechStopped)
    assert stopped.duration_s == pytest.approx(0.3 + 0.9 + 0.3)


def test_pause_is_announced_once_with_the_audio_so_far() -> None:
    """pause_ms of silence inside speech emits SpeechPaused with the utterance so far; when no speech follows,
    the SpeechStopped after the hangover has the same voiced-frame count (so a speculative transcript is valid)."""
    det = TurnDetector(EnergyVad(), settings(pause_ms=180), max_turn_s=30)
    events = feed(det, silence(300) + tone(900) + silence(600))
    paused = [e for e in events if isinstance(e, SpeechPaused)]
    stopped = [e for e in events if isinstance(e, SpeechStopped)]
    assert len(paused) == 1 and len(stopped) == 1
    assert paused[0].voiced_frames == stopped[0].voiced_frames
    assert stopped[0].audio.startswith(paused[0].audio)


def test_speech_after_a_pause_changes_the_voiced_count() -> None:
    """If the user goes on after a pause, the final SpeechStopped no longer matches the earlier SpeechPaused."""
    det = TurnDetector(EnergyVad(), settings(pause_ms=180), max_turn_s=30)
    events = feed(det, silence(300) + tone(600) + silence(240) + tone(600) + silence(600))
    paused = [e for e in events if isinstance(e, SpeechPaused)]
    stopped = [e for e in events if isinstance(e, SpeechStopped)]
    assert len(paused) == 2 and len(stopped) == 1
    assert paused[0].voiced_frames != stopped[0].voiced_frames == paused[1].voiced_frames
    kinds_in_order = [e.type for e in events]
    first_pause = kinds_in_order.index("speech_paused")
    assert kinds_in_order[first_pause + 1] == "speech_resumed"
    assert kinds_in_order.count("speech_resumed") == 1


def _paused(det: TurnDetector, frames: list[bytes]) -> SpeechPaused:
    return next(e for e in feed(det, frames) if isinstance(e, SpeechPaused))


def test_expect_end_confirms_a_finished_turn_after_the_shorter_hangover() -> None:
    """A turn read as finished at its pause ends after the shorter hangover (here 150 of 300 ms)."""
    det = TurnDetector(EnergyVad(), settings(pause_ms=90), max_turn_s=30)
    paused = _paused(det, silence(300) + tone(900) + silence(90))
    assert det.expect_end(paused.voiced_frames, 150) == []  # 90 ms of silence so far: not yet
    events = feed(det, silence(60))
    stopped = [e for e in events if isinstance(e, SpeechStopped)]
    assert len(stopped) == 1 and stopped[0].voiced_frames == paused.voiced_frames
    assert stopped[0].silence_s == pytest.approx(0.15)  # the silence that ended it, for the wire's audio_end_ms
    assert stopped[0].duration_s == pytest.approx(0.15 + 0.9 + 0.15)


def test_expect_end_after_enough_silence_stops_at_once() -> None:
    det = TurnDetector(EnergyVad(), settings(pause_ms=90), max_turn_s=30)
    paused = _paused(det, silence(300) + tone(900) + silence(90))
    feed(det, silence(120))  # 210 ms of silence: the reading came late
    events = det.expect_end(paused.voiced_frames, 150)
    assert [e.type for e in events] == ["speech_stopped"] and not det.in_speech


def test_expect_end_is_forgotten_when_speech_comes_back_or_the_pause_is_old() -> None:
    det = TurnDetector(EnergyVad(), settings(pause_ms=90), max_turn_s=30)
    paused = _paused(det, silence(300) + tone(900) + silence(90))
    assert det.expect_end(paused.voiced_frames, 120) == []
    feed(det, tone(300))  # the person goes on: the full hangover again
    assert det.expect_end(paused.voiced_frames, 120) == []  # a reading of the old pause changes nothing
    events = feed(det, silence(270))
    assert not any(isinstance(e, SpeechStopped) for e in events)
    assert [e.type for e in feed(det, silence(30))] == ["speech_stopped"]


class TrailingVad(EnergyVad):
    """Like webrtcvad: after loud frames it keeps calling the next ``tail`` frames voiced, however quiet."""

    def __init__(self, tail: int = 4) -> None:
        super().__init__()
        self.tail = tail
        self._left = 0

    def is_speech(self, frame: bytes, sample_rate: int) -> bool:
        if super().is_speech(frame, sample_rate):
            self._left = self.tail
            return True
        self._left -= 1
        return self._left >= 0


def quiet(ms: int, rms: float) -> list[bytes]:
    """Frames of noise at about ``rms`` (a 1 kHz tone: above the fake VAD's call only when rms > 500)."""
    n = ms // FRAME_MS * FRAME_SAMPLES
    pcm = (rms * np.sqrt(2) * np.sin(2 * np.pi * 1000 * np.arange(n) / RATE)).astype("<i2").tobytes()
    return [pcm[i : i + FRAME_SAMPLES * 2] for i in range(0, len(pcm), FRAME_SAMPLES * 2)]


def _stop_frame(det: TurnDetector, frames: list[bytes]) -> int:
    """Index of the frame that ended the utterance."""
    for index, frame in enumerate(frames):
        if any(isinstance(e, SpeechStopped) for e in det.push_frame(frame)):
            return index
    raise AssertionError("the utterance did not end")


def test_quiet_after_the_words_is_silence_though_the_vad_calls_it_voiced() -> None:
    """The hangover counts from the last loud frame, not from the end of the VAD's trailing calls."""
    frames = silence(300) + tone(600) + silence(900, marker=0)
    gated = TurnDetector(TrailingVad(tail=4), settings(), max_turn_s=30)
    vad_alone = TurnDetector(TrailingVad(tail=4), settings(silence_below_peak_db=None), max_turn_s=30)
    end_of_tone = (300 + 600) // FRAME_MS
    assert _stop_frame(gated, frames) == end_of_tone + 300 // FRAME_MS - 1
    assert _stop_frame(vad_alone, frames) == end_of_tone + 4 + 300 // FRAME_MS - 1


def test_the_pause_comes_at_the_last_loud_frame_too() -> None:
    det = TurnDetector(TrailingVad(tail=4), settings(pause_ms=150), max_turn_s=30)
    events = feed(det, silence(300) + tone(600) + silence(150, marker=0))
    assert [e.type for e in events].count("speech_paused") == 1


@pytest.mark.parametrize(("noise_rms", "gated"), [(40.0, True), (150.0, False)])
def test_only_noise_well_under_the_voice_is_silence(noise_rms: float, gated: bool) -> None:
    """The tone peaks at about RMS 5,700: 40 is 43 dB under it (silence), 150 is 32 dB under (the VAD decides)."""
    frames = silence(300) + tone(600) + quiet(900, noise_rms)
    det = TurnDetector(TrailingVad(tail=4), settings(), max_turn_s=30)
    extra = 0 if gated else 4
    assert _stop_frame(det, frames) == (300 + 600) // FRAME_MS + extra + 300 // FRAME_MS - 1


def test_a_quiet_voice_sets_its_own_level() -> None:
    """The level is the utterance's own: a soft speaker's words are not cut by a loud earlier one."""
    det = TurnDetector(EnergyVad(threshold=100), settings(), max_turn_s=30)
    feed(det, silence(300) + tone(600) + silence(300))  # a loud utterance ends
    soft = [np.frombuffer(f, dtype="<i2").astype(np.float64) * 0.05 for f in tone(600)]
    events = feed(det, silence(300) + [s.astype("<i2").tobytes() for s in soft] + silence(300))
    stopped = [e for e in events if isinstance(e, SpeechStopped)]
    assert len(stopped) == 1 and stopped[0].voiced_frames == 600 // FRAME_MS
