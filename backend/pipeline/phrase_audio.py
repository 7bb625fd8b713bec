"""Speech of the opening clauses, synthesized once and kept: a reply's first sound then needs no synthesis.

The clauses are a fixed set (config/openers.yaml) and a voice style per emotion, so the few dozen pairs the
default persona uses are synthesized at startup (``warm``); others (a persona's own voice) are kept the first time
they are spoken. Bounded: the least recently used pair goes first. Shared by every connection; event loop only.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Executor

from backend.core.async_bridge import run_blocking
from backend.engines.protocols import SynthesizedSpeech, VoiceStyle

logger = logging.getLogger(__name__)


class PhraseAudio:
    """Speech by (text, voice style), synthesized in ``executor`` when not kept yet."""

    def __init__(
        self,
        synthesize: Callable[[str, VoiceStyle], SynthesizedSpeech],
        executor: Executor,
        max_entries: int = 512,
    ) -> None:
        self._synthesize = synthesize
        self._executor = executor
        self._max_entries = max_entries
        self._kept: OrderedDict[tuple[str, VoiceStyle], SynthesizedSpeech] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    async def speech(self, text: str, style: VoiceStyle) -> SynthesizedSpeech:
        """The speech of ``text`` in ``style``: kept, or synthesized now and kept."""
        key = (text, style)
        kept = self._kept.get(key)
        if kept is not None:
            self._kept.move_to_end(key)
            return kept
        speech = await run_blocking(self._executor, self._synthesize, text, style)
        if speech.pcm:
            self._kept[key] = speech
            while len(self._kept) > self._max_entries:
                self._kept.popitem(last=False)
        return speech

    async def warm(self, phrases: Iterable[tuple[str, VoiceStyle]]) -> int:
        """Synthesize ``phrases`` ahead of use, one at a time (a turn's synthesis can run in between); returns
        how many are kept."""
        for text, style in phrases:
            await self.speech(text, style)
        logger.debug("phrase audio warmed", extra={"phrases": len(self._kept)})
        return len(self._kept)
