"""What has been heard so far, while the person is still speaking (``pipeline.partial_transcript_ms``).

Every ``interval`` of speech the utterance so far is transcribed in the STT pool (one transcription at a time
per connection; a slow one is never queued behind another) and a ``TranscriptPartial`` is emitted when the words
changed. It only informs the client: the turn's transcript is still made from the whole utterance. Under load a
preview is skipped (``allowed`` says no: another preview is running, or several replies are being generated),
since the speech-to-text it costs would be taken from the replies others are listening to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from backend.engines.protocols import Transcription
from backend.pipeline.events import PipelineEvent, TranscriptPartial

logger = logging.getLogger(__name__)

Transcribe = Callable[[bytes], Awaitable[Transcription]]
Emit = Callable[[PipelineEvent], Awaitable[None]]


class PartialTranscripts:
    def __init__(
        self, transcribe: Transcribe, emit: Emit, interval_s: float, allowed: Callable[[], bool] = lambda: True
    ) -> None:
        self._transcribe = transcribe
        self._allowed = allowed
        self._emit = emit
        self.interval_s = interval_s
        self._utterance: str | None = None
        self._due_s = interval_s
        self._text = ""
        self._task: asyncio.Task[None] | None = None

    def due(self, utterance_id: str | None, seconds: float) -> bool:
        """Whether a partial transcription should start now for ``seconds`` of utterance ``utterance_id``."""
        if self.interval_s <= 0 or utterance_id is None:
            return False
        if utterance_id != self._utterance:
            self.reset()
            self._utterance = utterance_id
        if seconds < self._due_s or not (self._task is None or self._task.done()):
            return False
        if not self._allowed():  # skipped under load: the next try comes an interval later
            self._due_s = seconds + self.interval_s
            return False
        return True

    def start(self, utterance_id: str, audio: bytes, seconds: float) -> None:
        """Transcribe ``audio`` (the utterance so far) in the background; call when ``due``."""
        self._due_s = seconds + self.interval_s
        self._task = asyncio.create_task(self._run(utterance_id, audio), name=f"partial-{utterance_id}")

    def reset(self) -> None:
        """The utterance ended (or was discarded): nothing more is emitted for it."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task, self._utterance, self._text, self._due_s = None, None, "", self.interval_s

    async def _run(self, utterance_id: str, audio: bytes) -> None:
        try:
            text = (await self._transcribe(audio)).text.strip()
        except asyncio.CancelledError:
            raise
        except Exception:  # only a lost preview: the turn transcribes the whole utterance itself
            logger.warning("partial transcription failed", exc_info=True)
            return
        if text and text != self._text and utterance_id == self._utterance:
            self._text = text
            with contextlib.suppress(Exception):  # a full or closed output drops a preview, never the turn
                await self._emit(TranscriptPartial(utterance_id, text))
