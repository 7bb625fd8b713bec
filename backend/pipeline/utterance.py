"""The speech not yet part of a turn: everything ``Conversation.clear_input`` forgets together.

The framer cuts the client's audio into VAD frames, the turn detector finds the utterance in them, partial
transcripts preview it; a turn policy (pipeline/turn_policy.py) may have started work on it at a pause: a
transcription (``speculation``) or a whole provisional turn (pipeline/early_start.py).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backend.config import Settings
from backend.core.audio_utils import PcmFramer
from backend.engines.protocols import Transcription, VoiceActivityDetector
from backend.pipeline.partial_transcripts import Emit, PartialTranscripts
from backend.pipeline.services import PipelineServices
from backend.pipeline.session_binding import new_id
from backend.pipeline.turn_detector import SpeechStopped, TurnDetector
from backend.pipeline.turn_types import TurnInput

if TYPE_CHECKING:  # early_start.py works on the utterance
    from backend.pipeline.early_start import Provisional


@dataclass
class Utterance:
    framer: PcmFramer
    detector: TurnDetector
    partials: PartialTranscripts
    id: str | None = None  # from SpeechStarted on: the id of the turn it becomes
    # A transcription started at a pause in speech, keyed by the voiced-frame count it covers.
    speculation: tuple[int, asyncio.Future[Transcription]] | None = None
    provisional: Provisional | None = None  # a turn started at a pause, its output held

    @classmethod
    def open(cls, settings: Settings, vad: VoiceActivityDetector, services: PipelineServices, emit: Emit) -> Utterance:
        """A connection's, at 16 kHz until the client declares its rate; partial transcripts go to ``emit``."""
        return cls(
            PcmFramer(16000, settings.vad.frame_ms),
            TurnDetector(vad, settings.vad, max_turn_s=settings.limits.max_turn_s),
            PartialTranscripts(
                lambda pcm: services.transcribe_soon(pcm, preview=True),
                emit,
                settings.pipeline.partial_transcript_ms / 1000,
                services.preview_allowed,
            ),
        )

    def drop_provisional(self) -> None:
        if self.provisional is not None:
            self.provisional.cancel()
            self.provisional = None

    def take_speculation(self, voiced_frames: int) -> asyncio.Future[Transcription] | None:
        """The transcription started at the last pause, if nothing was said after it."""
        speculation, self.speculation = self.speculation, None
        return speculation[1] if speculation is not None and speculation[0] == voiced_frames else None

    def preview(self) -> None:
        """Start a partial transcript of the speech so far when one is due."""
        if self.detector.pausing:
            return  # no preview at a pause: the turn may start now and needs the CPU
        seconds = self.detector.utterance_seconds
        if self.partials.due(self.id, seconds) and self.id is not None:
            self.partials.start(self.id, self.detector.current_audio(), seconds)

    def ended(self) -> str | None:
        """The utterance ended or was discarded: its id, and nothing more is previewed."""
        self.partials.reset()
        utterance_id, self.id = self.id, None
        return utterance_id

    def in_progress(self, session_id: str) -> TurnInput | None:
        """The speech still going on as a turn (what a disconnect stores), or None."""
        if not self.detector.in_speech:
            return None
        audio = self.detector.current_audio()
        return TurnInput(new_id(), session_id, time.perf_counter(), audio=audio, duration_s=len(audio) / 32000)

    def clear(self, framer: PcmFramer) -> None:
        """Forget it all (and any turn started early from it); ``framer``: a fresh one."""
        self.drop_provisional()
        self.partials.reset()
        self.speculation = None
        self.id = None
        self.detector.reset()
        self.framer = framer


def spoken_turn(
    turn_id: str, session_id: str, event: SpeechStopped, transcript: asyncio.Future[Transcription] | None
) -> TurnInput:
    """The turn of an utterance that ended ``event.silence_s`` ago."""
    lag = event.silence_s
    return TurnInput(
        turn_id,
        session_id,
        t0=time.perf_counter() - lag,
        audio=event.audio,
        transcript=transcript,
        duration_s=event.duration_s,
        marks={"speech_stopped": round(lag, 4)},
    )
