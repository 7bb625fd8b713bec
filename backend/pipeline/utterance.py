"""The speech not yet part of a turn: everything ``Conversation.clear_input`` forgets together.

The framer cuts the client's audio into VAD frames, the turn detector finds the utterance in them, partial
transcripts preview it; a turn policy (pipeline/turn_policy.py) may have started work on it at a pause: a
transcription (``speculation``) or a whole provisional turn (pipeline/early_start.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backend.core.audio_utils import PcmFramer
from backend.engines.protocols import Transcription
from backend.pipeline.partial_transcripts import PartialTranscripts
from backend.pipeline.turn_detector import TurnDetector

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

    def clear(self, framer: PcmFramer) -> None:
        """Forget it all (and any turn started early from it); ``framer``: a fresh one."""
        self.drop_provisional()
        self.partials.reset()
        self.speculation = None
        self.id = None
        self.detector.reset()
        self.framer = framer
