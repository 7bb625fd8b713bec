"""Per-connection endpointing: VAD decisions on fixed 16 kHz frames -> typed turn events.

States: idle (waiting for speech) and in speech. A connection owns one TurnDetector; it is not thread-safe
and cheap (a VAD call and a few integer updates per frame), so it runs on the event loop.

Memory is bounded: the frames kept since the last turn ended are a ring buffer of at most ``max_turn_s``,
which also holds the pre-roll, the utterance in progress and the audio that ``commit()`` sends.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from itertools import islice
from typing import Literal

import numpy as np

from backend.config import VADSettings
from backend.engines.protocols import VoiceActivityDetector

StopReason = Literal["silence", "max_length", "commit"]


@dataclass(frozen=True)
class SpeechStarted:
    """Speech began ``offset_s`` seconds into the stream (first voiced frame of the start window), ``ago_s``
    seconds of audio before the frame that declared it."""

    offset_s: float
    ago_s: float = 0.0
    type: Literal["speech_started"] = "speech_started"


@dataclass(frozen=True)
class SpeechSustained:
    """Voiced audio of this utterance reached ``barge_in_ms``; sent once per utterance (barge-in)."""

    duration_s: float
    type: Literal["speech_sustained"] = "speech_sustained"


@dataclass(frozen=True)
class SpeechStopped:
    """An utterance ended: PCM16 16 kHz audio including pre-roll and trailing hangover."""

    audio: bytes = field(repr=False)
    duration_s: float
    reason: StopReason
    voiced_frames: int = 0
    silence_s: float = 0.0  # the trailing silence that ended it (the hangover or a shorter expected end)
    type: Literal["speech_stopped"] = "speech_stopped"


@dataclass(frozen=True)
class SpeechPaused:
    """Silence of ``pause_ms`` inside an utterance: it may be ending. Carries the utterance so far, so the
    pipeline can transcribe it speculatively while the hangover runs. ``voiced_frames`` identifies the point:
    if the SpeechStopped that follows has the same count, no speech came after the pause."""

    audio: bytes = field(repr=False)
    voiced_frames: int
    type: Literal["speech_paused"] = "speech_paused"


@dataclass(frozen=True)
class SpeechResumed:
    """Speech came back after a SpeechPaused: the utterance goes on, so work started at the pause is stale."""

    type: Literal["speech_resumed"] = "speech_resumed"


@dataclass(frozen=True)
class SpeechDiscarded:
    """A burst after SpeechStarted had too little voiced audio (click, cough): no turn follows."""

    duration_s: float
    voiced_s: float
    type: Literal["speech_discarded"] = "speech_discarded"


TurnEvent = SpeechStarted | SpeechSustained | SpeechPaused | SpeechResumed | SpeechStopped | SpeechDiscarded


def _rms(frame: bytes) -> float:
    samples = np.frombuffer(frame, dtype="<i2").astype(np.float32)
    return float(np.sqrt(np.mean(samples * samples)))


def _frames(ms: float, frame_ms: int) -> int:
    return max(1, math.ceil(ms / frame_ms))


class TurnDetector:
    """Feed it frames of exactly ``settings.frame_ms`` at ``sample_rate``; it returns turn events.

    - SpeechStarted once ``start_ms`` of a short window (start_ms / 0.75) is voiced.
    - SpeechSustained once voiced audio reaches ``barge_in_ms``.
    - SpeechStopped(reason="silence") after ``hangover_ms`` of consecutive unvoiced frames, or
      SpeechDiscarded when the utterance had less than ``min_speech_ms`` of voiced audio.
    - SpeechStopped(reason="max_length") when the utterance reaches ``max_turn_s``; detection goes on and
      continued speech starts a new utterance (no audio is lost: it stays in the ring buffer).
    - ``commit()`` ends the turn now with everything kept since the last turn ended.
    """

    def __init__(
        self,
        vad: VoiceActivityDetector,
        settings: VADSettings,
        max_turn_s: float,
        sample_rate: int = 16000,
    ) -> None:
        self._vad = vad
        self.sample_rate = sample_rate
        self.frame_ms = settings.frame_ms
        self.frame_bytes = sample_rate * settings.frame_ms // 1000 * 2
        self._frame_s = settings.frame_ms / 1000.0
        self._start_frames = _frames(settings.start_ms, self.frame_ms)
        self._window_frames = max(self._start_frames, math.ceil(self._start_frames / 0.75))
        self._hangover_frames = _frames(settings.hangover_ms, self.frame_ms)
        self._pause_frames = _frames(settings.pause_ms, self.frame_ms)
        self._preroll_frames = math.ceil(settings.preroll_ms / self.frame_ms)
        self._min_voiced_frames = math.ceil(settings.min_speech_ms / self.frame_ms)
        self._barge_in_frames = _frames(settings.barge_in_ms, self.frame_ms)
        self._max_frames = max(self._window_frames + 1, int(max_turn_s * 1000) // self.frame_ms)
        self._history: deque[bytes] = deque(maxlen=self._max_frames)  # frames since the last turn ended
        self._flags: deque[bool] = deque(maxlen=self._window_frames)  # recent VAD flags while idle
        self._levels: deque[float] = deque(maxlen=self._window_frames)  # and those frames' RMS (0 if unvoiced)
        db = settings.silence_below_peak_db
        self._quiet_ratio = None if db is None else 10 ** (-db / 20)  # of the peak: quieter is silence
        self._peak = 0.0  # RMS of the loudest voiced frame of the utterance
        self._clock = 0  # frames seen since creation; never reset
        self._utt_start: int | None = None  # stream index of the utterance's first frame (pre-roll included)
        self._speech_start = 0  # stream index of the first voiced frame
        self._voiced = 0  # voiced frames in the utterance
        self._silence_run = 0  # consecutive unvoiced frames at its end
        self._sustained_sent = False
        self._end_after: int | None = None  # a shorter hangover for this pause (expect_end), in frames

    # --- public -----------------------------------------------------------------------------------------

    @property
    def in_speech(self) -> bool:
        return self._utt_start is not None

    @property
    def pausing(self) -> bool:
        """In speech, but the latest frame was not voiced (a pause that may end the utterance)."""
        return self._utt_start is not None and self._silence_run > 0

    @property
    def utterance_seconds(self) -> float:
        """Length of the utterance so far (pre-roll included); 0 when not in speech."""
        return 0.0 if self._utt_start is None else (self._clock - self._utt_start) * self._frame_s

    def push_frame(self, frame: bytes) -> list[TurnEvent]:
        """Judge one frame and advance the state machine. Raises ValueError on a wrong-sized frame."""
        if len(frame) != self.frame_bytes:
            raise ValueError(f"frame must be {self.frame_bytes} bytes, got {len(frame)}")
        voiced = self._vad.is_speech(frame, self.sample_rate)
        level = _rms(frame) if voiced and self._quiet_ratio is not None else 0.0  # only voiced frames' count
        self._history.append(frame)
        index = self._clock
        self._clock += 1
        if self._utt_start is None:
            return self._idle_frame(index, voiced, level)
        if voiced and self._quiet_ratio is not None:
            if level < self._peak * self._quiet_ratio:
                voiced = False  # the VAD's trailing call on quiet after the words
            else:
                self._peak = max(self._peak, level)
        return self._speech_frame(index, voiced)

    def expect_end(self, voiced_frames: int, hangover_ms: float) -> list[TurnEvent]:
        """The words up to the pause at ``voiced_frames`` read as a finished turn: end the utterance after
        ``hangover_ms`` of silence instead of the full hangover, unless speech comes back first. Returns the
        SpeechStopped at once when that much silence has passed already; nothing changes when the utterance has
        moved on since that pause."""
        if self._utt_start is None or self._voiced != voiced_frames or self._silence_run == 0:
            return []
        self._end_after = _frames(hangover_ms, self.frame_ms)
        if self._silence_run >= self._end_after:
            return [self._finish("silence")]
        return []

    def buffer_frame(self, frame: bytes) -> None:
        """Keep a frame for ``commit()`` without judging it (turn detection off: the client ends turns)."""
        if len(frame) != self.frame_bytes:
            raise ValueError(f"frame must be {self.frame_bytes} bytes, got {len(frame)}")
        self._history.append(frame)
        self._clock += 1

    def commit(self) -> list[TurnEvent]:
        """Push-to-talk end of turn: SpeechStopped(reason="commit") with all audio kept since the last turn
        ended (at most ``max_turn_s``), whether or not the VAD fired; nothing when no audio came."""
        if not self._history:
            self._clear_speech()
            return []
        audio = b"".join(self._history)
        self._end_turn()
        return [SpeechStopped(audio=audio, duration_s=self._seconds(audio), reason="commit")]

    def current_audio(self) -> bytes:
        """The utterance so far (pre-roll included); empty when not in speech."""
        if self._utt_start is None:
            return b""
        return b"".join(islice(self._history, self._utt_start - self._first_index(), None))

    def reset(self) -> None:
        """Forget all buffered audio and any utterance in progress; the stream clock keeps running."""
        self._end_turn()

    # --- state machine ----------------------------------------------------------------------------------

    def _idle_frame(self, index: int, voiced: bool, level: float) -> list[TurnEvent]:
        self._flags.append(voiced)
        self._levels.append(level)
        voiced_count = sum(self._flags)
        if voiced_count < self._start_frames:
            return []
        window_start = index - len(self._flags) + 1
        speech_start = window_start + list(self._flags).index(True)
        self._speech_start = speech_start
        self._utt_start = max(speech_start - self._preroll_frames, self._first_index())
        self._voiced = voiced_count
        self._silence_run = 0
        self._peak = max(lvl for lvl, flag in zip(self._levels, self._flags, strict=True) if flag)
        self._flags.clear()
        self._levels.clear()
        ago_s = round((index + 1 - speech_start) * self._frame_s, 3)
        events: list[TurnEvent] = [SpeechStarted(offset_s=round(speech_start * self._frame_s, 3), ago_s=ago_s)]
        events.extend(self._maybe_sustained(index))
        return events

    def _speech_frame(self, index: int, voiced: bool) -> list[TurnEvent]:
        assert self._utt_start is not None
        events: list[TurnEvent] = []
        if voiced:
            if self._pause_frames <= self._silence_run and self._voiced >= self._min_voiced_frames:
                events.append(SpeechResumed())
            self._voiced += 1
            self._silence_run = 0
            self._end_after = None
        else:
            self._silence_run += 1
        events.extend(self._maybe_sustained(index))
        if self._silence_run == self._pause_frames < self._hangover_frames and self._voiced >= self._min_voiced_frames:
            events.append(SpeechPaused(audio=self.current_audio(), voiced_frames=self._voiced))
        hangover = min(self._hangover_frames, self._end_after or self._hangover_frames)
        if self._silence_run >= hangover:
            events.append(self._finish("silence"))
        elif index + 1 - self._utt_start >= self._max_frames:
            events.append(self._finish("max_length"))
        return events

    def _maybe_sustained(self, index: int) -> list[TurnEvent]:
        if self._sustained_sent or self._voiced < self._barge_in_frames:
            return []
        self._sustained_sent = True
        return [SpeechSustained(duration_s=round((index + 1 - self._speech_start) * self._frame_s, 3))]

    def _finish(self, reason: StopReason) -> TurnEvent:
        audio = self.current_audio()
        if self._voiced < self._min_voiced_frames:
            voiced_s = self._voiced * self._frame_s
            self._clear_speech()  # not a turn: the audio stays in the ring for a later commit
            return SpeechDiscarded(duration_s=self._seconds(audio), voiced_s=round(voiced_s, 3))
        voiced, silence_s = self._voiced, round(self._silence_run * self._frame_s, 3)
        self._end_turn()
        return SpeechStopped(
            audio=audio, duration_s=self._seconds(audio), reason=reason, voiced_frames=voiced, silence_s=silence_s
        )

    # --- helpers ----------------------------------------------------------------------------------------

    def _clear_speech(self) -> None:
        self._utt_start = None
        self._speech_start = 0
        self._voiced = 0
        self._silence_run = 0
        self._sustained_sent = False
        self._end_after = None
        self._peak = 0.0
        self._flags.clear()
        self._levels.clear()

    def _end_turn(self) -> None:
        self._history.clear()
        self._clear_speech()

    def _first_index(self) -> int:
        return self._clock - len(self._history)

    def _seconds(self, audio: bytes) -> float:
        return round(len(audio) / 2 / self.sample_rate, 3)
