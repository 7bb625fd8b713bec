"""One connection's conversation: the front the wires talk to. It builds one connection's parts and routes the
wire's calls and the turn detector's events between them; each job lives in a module named for it:
session_binding (the session and its storage), utterance (framing, turn detection, partial transcripts),
turn_policy and early_start (what starts at a pause), turn_queue (turns one at a time in arrival order, held
input, what is stored on disconnect), barge_in (interrupt, cancel, truncate). The models are shared through the
TurnPipeline.
"""

from __future__ import annotations

import time

from backend.config import Settings
from backend.core.audio_utils import PcmFramer, validate_sample_rate
from backend.core.exceptions import ClarityError, InvalidInputError
from backend.pipeline import events
from backend.pipeline.barge_in import BargeIn
from backend.pipeline.early_start import EarlyStart
from backend.pipeline.output_queue import OutputQueue
from backend.pipeline.session_binding import SessionBinding, SessionContext, new_id
from backend.pipeline.turn_detector import (
    SpeechDiscarded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    SpeechSustained,
)
from backend.pipeline.turn_pipeline import TurnPipeline
from backend.pipeline.turn_policy import TurnPolicy, choose
from backend.pipeline.turn_queue import TurnQueue
from backend.pipeline.turn_taking import TurnTaking
from backend.pipeline.turn_types import TurnInput
from backend.pipeline.utterance import Utterance, spoken_turn
from backend.store.async_store import AsyncSessionStore


class Conversation:
    def __init__(
        self,
        *,
        pipeline: TurnPipeline,
        store: AsyncSessionStore,
        settings: Settings,
        out: OutputQueue,
        session: SessionContext,
        output_sample_rate: int,
    ) -> None:
        self.pipeline = pipeline
        self.services = pipeline.services
        self.store = store
        self.settings = settings
        self.out = out
        self.binding = SessionBinding(pipeline.services, session, key=self, interrupt=self.interrupt)
        self.output_sample_rate = output_sample_rate
        self.input_rate = 16000
        self._odd_length_reported = False
        self.turn_taking = TurnTaking()  # /ws/voice: the defaults; wires whose client drives turns configure()
        self._utterance = Utterance.open(settings, pipeline.models.new_vad(), self.services, self.emit)
        self._turns = TurnQueue(
            pipeline=pipeline,
            store=store,
            binding=self.binding,
            output=self,
            report_error=self.report_error,
            min_speech_ms=settings.vad.min_speech_ms,
            before_turn=self._utterance.drop_provisional,  # a queued turn goes first; the speech after it re-runs
        )
        self._barge_in = BargeIn(
            turns=self._turns,
            out=out,
            store=store,
            metrics=pipeline.metrics,
            emit_control=self.emit_control,
            output_sample_rate=output_sample_rate,
        )
        self._policy: TurnPolicy = choose(
            settings,
            self._utterance,
            self.services,
            lambda fallback: EarlyStart(
                settings=settings,
                turns=self._turns,
                utterance=self._utterance,
                turn_taking=lambda: self.turn_taking,
                feed=self._on_turn_event,
                fallback=fallback,
            ),
        )

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        self._turns.start()
        self.binding.register()

    async def close(self) -> None:
        """Disconnect: stop the turns and store what the user said that no turn answered (turn_queue.close),
        speech in progress included."""
        self.binding.unregister()
        self._utterance.drop_provisional()  # its speech is still in the detector and is stored below
        self._utterance.partials.reset()
        await self._turns.close(lambda: self._utterance.in_progress(self.session.session_id))

    @property
    def session(self) -> SessionContext:
        return self.binding.session

    @property
    def busy(self) -> bool:
        return self._turns.busy

    def session_ready(self) -> events.SessionReady:
        return self.binding.ready(self.input_rate, self.output_sample_rate, self.settings.pipeline.mode)

    # --- TurnOutput --------------------------------------------------------------------------------------

    async def emit(self, event: events.PipelineEvent) -> None:
        await self.out.put(event, timeout=self.settings.limits.send_timeout_s)

    async def flush(self) -> None:
        await self.out.wait_empty()

    def emit_control(self, event: events.PipelineEvent) -> None:
        """Queue at once, never waiting: small events that must arrive (errors, interrupted)."""
        self.out.put_nowait(event)

    def report_error(self, exc: ClarityError) -> None:
        self.pipeline.metrics.errors.labels(code=exc.code).inc()
        self.emit_control(events.ErrorOccurred(exc.code, exc.message, exc.retryable))

    def mark_sending(self, item: events.PipelineEvent) -> None:
        """Called by the sender as an item leaves: records which reply chunks the client was sent."""
        self._barge_in.mark_sending(item)

    # --- input -------------------------------------------------------------------------------------------

    async def on_audio(self, data: bytes) -> None:
        if len(data) % 2 and not self._odd_length_reported:
            self._odd_length_reported = True
            self.report_error(
                InvalidInputError(
                    f"binary message of odd length ({len(data)} bytes): PCM16 samples are 2 bytes; "
                    "the odd byte is carried over to the next message",
                    code="invalid_audio",
                )
            )
        detector = self._utterance.detector
        for frame in self._utterance.framer.push(data):
            if not self.turn_taking.detect_turns:
                detector.buffer_frame(frame)
                continue
            for event in detector.push_frame(frame):
                await self._on_turn_event(event)
        self._utterance.preview()

    async def commit(self) -> None:
        """End of utterance now (push-to-talk): the audio since the last turn becomes a turn."""
        committed = self._utterance.detector.commit()
        if not committed:
            raise InvalidInputError("input.commit with no audio since the last turn", code="no_audio")
        for turn_event in committed:
            await self._on_turn_event(turn_event)

    async def cancel(self) -> None:
        """Stop the reply now, as a barge-in would; an error event if none is running."""
        if not await self.interrupt():
            self.report_error(ClarityError("there is no reply to cancel", code="nothing_to_cancel"))

    async def add_text(self, text: str, *, hold: bool = False, turn_id: str | None = None) -> str:
        """A typed user message: a turn like a spoken one, from the transcript on; with ``hold`` it waits for
        ``respond()``. Returns its turn id."""
        if len(text) > self.settings.limits.max_text_chars:
            raise InvalidInputError(
                f"text is longer than {self.settings.limits.max_text_chars} characters",
                code="text_too_long",
            )
        turn = TurnInput(turn_id or new_id(), self.session.session_id, time.perf_counter(), text=text)
        await self._turns.put(turn, self.turn_taking, hold=hold)
        return turn.turn_id

    async def start_session(
        self,
        session_id: str | None,
        sample_rate: int | None,
        *,
        persona: str | None = None,
        user_id: str | None = None,
        safety_locale: str | None = None,
    ) -> None:
        """Resume ``session_id`` (when given; an unknown id creates that session) and/or declare the input sample
        rate; ``persona`` switches the session's persona (stored with it), ``user_id`` names the app's user of a
        new session (memory across sessions), ``safety_locale`` whose crisis numbers it gets (stored with it).
        Answers SessionReady."""
        self.services.personas.check(persona)  # UnknownPersonaError before anything changes
        if sample_rate is not None and sample_rate != self.input_rate:
            self.input_rate = validate_sample_rate(sample_rate)
            self._utterance.framer = PcmFramer(self.input_rate, self.settings.vad.frame_ms)
        await self.binding.start(
            session_id, persona=persona, user_id=user_id, safety_locale=safety_locale, busy=self.busy
        )
        await self.emit(self.session_ready())

    async def set_persona(self, persona: str | None) -> None:
        """Make ``persona`` (an id; None: the default) this session's persona from the next turn on, stored with
        the session. UnknownPersonaError for an unknown id. Wires whose clients send free-text instructions
        (OpenAI Realtime ``session.instructions``) resolve them with ``PipelineServices.personas.from_instructions``."""
        await self.binding.set_persona(persona)

    async def _on_turn_event(self, event: object) -> None:
        utterance = self._utterance
        if isinstance(event, SpeechStarted):
            utterance.id = new_id()
            await self.emit(events.SpeechStarted(utterance.id, ago_s=event.ago_s))
        elif isinstance(event, SpeechSustained):
            if self.turn_taking.barge_in and self._turns.replying:
                await self.interrupt()
        elif isinstance(event, SpeechPaused):
            self._policy.paused(event)
        elif isinstance(event, SpeechResumed):
            utterance.drop_provisional()
        elif isinstance(event, SpeechDiscarded):
            utterance_id = utterance.ended()
            if utterance_id is not None:
                await self.emit(events.SpeechStopped(utterance_id, duration_s=0.0, discarded=True))
        elif isinstance(event, SpeechStopped):
            turn_id = utterance.ended() or new_id()
            if await self._policy.stopped(event):
                return  # the turn started at the pause was the real one
            transcript = utterance.take_speculation(event.voiced_frames)  # reused if nothing followed the pause
            committed, duration_s = event.reason == "commit", round(event.duration_s, 3)
            await self.emit(events.SpeechStopped(turn_id, duration_s, committed=committed, silence_s=event.silence_s))
            await self._turns.put(spoken_turn(turn_id, self.session.session_id, event, transcript), self.turn_taking)

    # --- barge-in and client-driven turns (wires whose client commits audio, asks for replies, corrects them)

    async def interrupt(self) -> bool:
        """Barge-in or cancel: stop the reply now, drop its queued audio, tell the client. True if one ran."""
        return await self._barge_in.interrupt()

    def configure(self, turn_taking: TurnTaking) -> None:
        """Change how turns are taken. Turning detection on or off forgets the audio buffered so far."""
        if turn_taking.detect_turns != self.turn_taking.detect_turns:
            self.clear_input()
        self.turn_taking = turn_taking

    async def respond(self) -> list[str]:
        """Answer the held input now (see turn_taking.merge_held); returns the ids of the turns queued."""
        return await self._turns.respond()

    def clear_input(self) -> None:
        """Forget the audio not yet part of a turn (and any turn started early from it)."""
        self._utterance.clear(PcmFramer(self.input_rate, self.settings.vad.frame_ms))

    async def truncate(self, turn_id: str, audio_end_s: float) -> str:
        """The listener heard only the first ``audio_end_s`` seconds of this reply: stop it if it is still
        running, and store the words heard as the assistant turn (interrupted). Returns that text."""
        return await self._barge_in.truncate(turn_id, audio_end_s)
