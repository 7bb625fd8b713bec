"""Turn policies: what starts at a pause in speech, before the end of speech is known. Chosen once per
connection from the settings (``choose``):

- ``Sequential`` (pipeline.mode sequential, or nothing enabled): nothing starts before the end of speech.
- ``Speculative`` (pipeline.speculative_stt): the utterance so far is transcribed at the pause and the
  transcription reused if the user does not go on.
- ``EarlyStart`` (pipeline.early_start, pipeline/early_start.py): the whole turn runs from the pause, its output
  held until the end of speech is confirmed; the speculative policy when a turn is already running.

A new policy is one class with ``paused`` and ``stopped``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from backend.config import Settings
from backend.pipeline.services import PipelineServices
from backend.pipeline.turn_detector import SpeechPaused, SpeechStopped
from backend.pipeline.utterance import Utterance


class TurnPolicy(Protocol):
    def paused(self, event: SpeechPaused) -> None:
        """The user paused; the utterance may or may not go on."""
        ...

    async def stopped(self, event: SpeechStopped) -> bool:
        """The end of speech: True when the policy made the turn itself (a confirmed early start)."""
        ...


class Sequential:
    """The seed product's way: nothing starts before the end of speech."""

    def paused(self, event: SpeechPaused) -> None:
        return None

    async def stopped(self, event: SpeechStopped) -> bool:
        return False


class Speculative(Sequential):
    """Transcribe during the hangover; the turn reuses it if nothing was said after the pause."""

    def __init__(self, utterance: Utterance, services: PipelineServices) -> None:
        self._utterance, self._services = utterance, services

    def paused(self, event: SpeechPaused) -> None:
        self._utterance.speculation = (event.voiced_frames, self._services.transcribe_soon(event.audio))


def choose(
    settings: Settings,
    utterance: Utterance,
    services: PipelineServices,
    early_start: Callable[[TurnPolicy], TurnPolicy],
) -> TurnPolicy:
    """The connection's policy; ``early_start(fallback)`` builds the early-start one."""
    pipeline = settings.pipeline
    if pipeline.mode == "sequential":
        return Sequential()
    fallback: TurnPolicy = Speculative(utterance, services) if pipeline.speculative_stt else Sequential()
    return early_start(fallback) if pipeline.early_start else fallback
