"""What every connection's turns share, built once per process: the app makes one PipelineServices in its
lifespan and gives it to the API and to the TurnPipeline (the per-turn procedure, turn_pipeline.py).

Personas and opening clauses, the worker pools, the LLM scheduler and the turn slots, the generations running
now (for cancel), memory and insight follow-ups, the crisis protocol, and the phrases' speech kept for reuse.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from backend.config import Settings, resolve_path
from backend.core.async_bridge import run_blocking
from backend.core.audio_utils import pcm16_to_float32
from backend.core.exceptions import ModelLoadError
from backend.core.metrics import Metrics
from backend.engines.model_service import ModelService
from backend.engines.protocols import BatchedDecoding, Transcription
from backend.mentor.openers import load_openers
from backend.mentor.personas import Persona, PersonaCatalog, load_personas
from backend.mentor.prompt_builder import MentorPrompt, load_mentor_prompt, next_prompt_prefix
from backend.mentor.voice_style import voice_style_for
from backend.pipeline.follow_up import FollowUps
from backend.pipeline.llm_scheduler import LLMScheduler, Priority
from backend.pipeline.phrase_audio import PhraseAudio
from backend.pipeline.running_turns import RunningTurns
from backend.pipeline.safety_guard import SafetyGuard
from backend.pipeline.turn_types import Executors
from backend.store.async_store import AsyncSessionStore
from backend.store.records import HistoryTurn

logger = logging.getLogger(__name__)


class PipelineServices:
    def __init__(
        self,
        models: ModelService,
        store: AsyncSessionStore,
        settings: Settings,
        metrics: Metrics,
        mentor_prompt: MentorPrompt | None = None,
        personas: PersonaCatalog | None = None,
    ) -> None:
        self.models = models
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.mentor_prompt = mentor_prompt or load_mentor_prompt(settings.mentor)  # the base persona's prompt
        self.personas = personas or load_personas(settings.mentor)
        pipeline = settings.pipeline
        opens_replies = pipeline.opening_clause and pipeline.mode == "streaming"
        self.openers = load_openers(resolve_path(settings.mentor.openers_path)) if opens_replies else {}
        self.executors = Executors(settings)
        # The clauses' speech, kept (the TTS is looked up when first used: models may load after this).
        self.phrase_audio = (
            PhraseAudio(lambda text, style: self.models.tts.synthesize(text, style), self.executors.tts)
            if self.openers
            else None
        )
        self.llm_scheduler = LLMScheduler(
            settings.llm.max_concurrent, *metrics.queue("llm"), paused=metrics.paused_replies
        )
        metrics.llm_batch_size.set_function(self._llm_batch_size)
        self.turn_slots = metrics.slots("turn", max(1, settings.limits.max_active_turns))
        self.running = RunningTurns()  # generations by session, for POST /api/sessions/{id}/cancel
        self.follow_ups = FollowUps(models, store, settings, self.executors)  # memory + insights after a turn
        self.safety = SafetyGuard(models, settings, metrics, self.executors)  # the crisis protocol
        # The protocol's sentences' speech, made once (its calm voice is the default persona's at neutral).
        self.safety_audio = PhraseAudio(lambda text, style: self.models.tts.synthesize(text, style), self.executors.tts)
        self._background: set[asyncio.Future[None]] = set()
        self._previews = 0  # partial transcripts being made now

    def close(self) -> None:
        for task in self._background:
            task.cancel()
        self.follow_ups.close()
        self.executors.shutdown()

    def _llm_batch_size(self) -> float:
        """Read when /metrics is scraped: the LLM's batch now (0 before it loads, or for engines that do not batch)."""
        try:
            llm = self.models.llm
        except ModelLoadError:
            return 0.0
        return float(llm.decoding) if isinstance(llm, BatchedDecoding) else 0.0

    def _preview_done(self, _: asyncio.Future[Transcription]) -> None:
        self._previews -= 1

    def prompt_for(self, persona: Persona) -> MentorPrompt:
        """The prompt of ``persona`` (its system prompt and guidance over the base ones)."""
        return persona.prompt(self.mentor_prompt)

    def preview_allowed(self) -> bool:
        """Whether a partial transcript may start now: none is running (they share one thread) and at most one
        reply is being generated (with more, the cores go to the replies people are listening to)."""
        return self._previews == 0 and self.llm_scheduler.running <= 1

    def transcribe_soon(self, pcm: bytes, *, preview: bool = False) -> asyncio.Future[Transcription]:
        """Start transcribing in the STT pool now; the turn awaits the result later (speculative STT).
        ``preview``: a partial transcript, in its own one-thread pool so it never delays a turn's."""
        pool = self.executors.preview_stt if preview else self.executors.stt
        future = asyncio.ensure_future(run_blocking(pool, self.models.stt.transcribe, pcm16_to_float32(pcm)))
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # an unused one must not warn
        if preview:
            self._previews += 1
            future.add_done_callback(self._preview_done)
        return future

    # --- warming in the background ---------------------------------------------------------------------

    def warm_openers(self) -> asyncio.Future[int] | None:
        """Synthesize every opening clause in the default persona's voice for its emotion, in the background.
        Other personas' clauses are kept as they are first spoken (a slower voice, such as Piper, would keep the
        cores busy for long at startup with all of them)."""
        if self.phrase_audio is None:
            return None
        tts, voice = self.settings.tts, self.personas.default.voice
        phrases = [(text, voice_style_for(e, tts, voice)) for e, texts in self.openers.items() for text in texts]
        task = asyncio.ensure_future(self.phrase_audio.warm(phrases))
        task.add_done_callback(lambda f: f.cancelled() or f.exception())  # a failure only loses the speed-up
        return task

    def warm_safety(self) -> asyncio.Future[int] | None:
        """Synthesize the protocol's sentences for the default locale in the background, so a spoken crisis
        turn's first audio comes as soon as any reply's."""
        if not self.safety.enabled:
            return None
        style = voice_style_for("neutral", self.settings.tts, self.personas.default.voice)
        lines = self.safety.protocol.all_lines(None)
        task = asyncio.ensure_future(self.safety_audio.warm([(line.say, style) for line in lines]))
        task.add_done_callback(lambda f: f.cancelled() or f.exception())  # a failure only loses the speed-up
        return task

    def warm_next_turn(self, session_id: str | None, persona: str | None = None) -> asyncio.Future[None] | None:
        """Prefill the start of the session's next prompt in the background (llm.warm_between_turns).

        ``None`` warms what every new session starts with (the system prompt), so the first turn of a fresh
        session is as fast as a later one; the lifespan calls it once the models are loaded. ``persona`` is the
        session's persona id (None: the default)."""
        if not self.settings.llm.warm_between_turns:
            return None
        task = asyncio.ensure_future(self._warm_next_turn(session_id, persona))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _warm_next_turn(self, session_id: str | None, persona: str | None) -> None:
        llm, settings = self.models.llm, self.settings
        prompt = self.prompt_for(self.personas.get(persona))

        def warm(history: list[HistoryTurn]) -> int:
            prefix = next_prompt_prefix(
                prompt,
                history,
                count_tokens=llm.count_tokens,
                max_prompt_tokens=settings.llm.max_prompt_tokens,
            )
            return llm.warm_prefix(prefix)

        try:
            history = (
                await self.store.recent_history(session_id, settings.mentor.max_history_turns)
                if session_id is not None
                else []
            )
            async with self.llm_scheduler.generation(threading.Event(), pausable=False, priority=Priority.BACKGROUND):
                start = time.perf_counter()
                tokens = await run_blocking(self.executors.llm, warm, history)
            logger.debug(
                "next prompt prefix warmed",
                extra={"session_id": session_id, "tokens": tokens, "seconds": round(time.perf_counter() - start, 3)},
            )
        except asyncio.CancelledError:
            raise
        except Exception:  # only a lost speed-up: the next turn prefills it itself
            logger.warning("warming the next prompt failed", extra={"session_id": session_id}, exc_info=True)
