"""One connection's conversation: audio framing, turn detection, the turn queue, barge-in and cancellation.

Each connection owns only small state (framer, turn detector, current turn task, output queue); the models
are shared through the TurnPipeline. Turns run one at a time in arrival order, so nothing the user said is
dropped while the mentor is still answering an earlier turn.
"""

from __future__ import annotations

import asyncio
import logging
import time

from backend.config import Settings
from backend.core.audio_utils import PcmFramer, validate_sample_rate
from backend.core.exceptions import ClarityError, InvalidInputError
from backend.engines.protocols import Transcription
from backend.pipeline import events
from backend.pipeline.early_start import Adopted, EarlyTurnHooks, Provisional
from backend.pipeline.gated_output import GatedOutput
from backend.pipeline.output_queue import OutputQueue
from backend.pipeline.partial_transcripts import PartialTranscripts
from backend.pipeline.session_binding import SessionBinding, SessionContext, new_id
from backend.pipeline.turn_detector import (
    SpeechDiscarded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    SpeechSustained,
    TurnDetector,
)
from backend.pipeline.turn_pipeline import TurnPipeline
from backend.pipeline.turn_taking import PlaybackLedger, TurnTaking, merge_held
from backend.pipeline.turn_types import TurnInput, TurnState
from backend.store.async_store import AsyncSessionStore

logger = logging.getLogger(__name__)


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
        self._framer = PcmFramer(self.input_rate, settings.vad.frame_ms)
        self._detector = TurnDetector(pipeline.models.new_vad(), settings.vad, max_turn_s=settings.limits.max_turn_s)
        self._turns: asyncio.Queue[TurnInput | Adopted] = asyncio.Queue()
        self._provisional: Provisional | None = None
        self._worker: asyncio.Task[None] | None = None
        self._active: tuple[asyncio.Task[None], TurnState] | None = None
        self._active_input: TurnInput | None = None
        self._utterance_id: str | None = None
        self._odd_length_reported = False
        # A transcription started at a pause in speech, keyed by the voiced-frame count it covers.
        self._speculation: tuple[int, asyncio.Future[Transcription]] | None = None
        self.turn_taking = TurnTaking()  # /ws/voice: the defaults; see "client-driven turns" below
        self._held: list[TurnInput] = []  # input waiting for respond() (turn_taking.respond off, or hold=True)
        self._ledger = PlaybackLedger()
        self._partials = PartialTranscripts(
            lambda pcm: self.services.transcribe_soon(pcm, preview=True),
            self.emit,
            settings.pipeline.partial_transcript_ms / 1000,
        )

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        self._worker = asyncio.create_task(self._work(), name="turn-worker")
        self.binding.register()

    async def close(self) -> None:
        """Disconnect: stop the worker, cancel the running turn (its partial reply is stored), then store what
        the user said that no turn answered, as interrupted user turns: queued turns, a turn cancelled before
        its reply began (its transcript may not be stored yet), and speech in progress (transcribed now)."""
        active, current = self._active, self._active_input
        self.binding.unregister()
        self._cancel_provisional()  # its speech is still in the detector and is stored below
        self._partials.reset()
        if self._worker is not None:  # first, so it cannot start the next queued turn
            self._worker.cancel()
            await asyncio.wait([self._worker])
        unanswered: list[TurnInput] = []
        if active is not None:
            active[0].cancel()
            await asyncio.wait([active[0]])
            if current is not None and not active[1].responding:
                unanswered.append(current)
        while not self._turns.empty():
            item = self._turns.get_nowait()
            unanswered.append(item.turn if isinstance(item, Adopted) else item)
        unanswered.extend(self._held)
        if self._detector.in_speech:
            audio = self._detector.current_audio()
            sid, now = self.session.session_id, time.perf_counter()
            unanswered.append(TurnInput(new_id(), sid, now, audio=audio, duration_s=len(audio) / 32000))
        for turn in unanswered:
            try:
                await self._store_unanswered(turn)
            except Exception:
                logger.exception("could not store an unanswered user turn")

    async def _store_unanswered(self, turn: TurnInput) -> None:
        text = (turn.text or "").strip()
        if turn.audio is not None:
            if len(turn.audio) < self.settings.vad.min_speech_ms * 32:  # PCM16 at 16 kHz: 32 bytes per ms
                return
            text = (await self.services.transcribe_soon(turn.audio)).text
            text = text.strip()
        if text:
            await self.binding.ensure_persisted()
            await self.store.add_turn(
                self.session.session_id, "user", text, duration_s=turn.duration_s, interrupted=True
            )

    @property
    def session(self) -> SessionContext:
        return self.binding.session

    @property
    def busy(self) -> bool:
        return self._active is not None or not self._turns.empty()

    def session_ready(self) -> events.SessionReady:
        return events.SessionReady(
            session_id=self.session.session_id,
            resumed=self.session.resumed,
            input_sample_rate=self.input_rate,
            output_sample_rate=self.output_sample_rate,
            mode=self.settings.pipeline.mode,
            persona=self.services.personas.get(self.session.persona).id,
        )

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
        if isinstance(item, events.ReplyAudioChunk) and self._active is not None:
            _, state = self._active
            if state.turn_id == item.turn_id:
                state.sent_chunks.add(item.chunk_index)
                self._ledger.record(state, item)

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
        for frame in self._framer.push(data):
            if not self.turn_taking.detect_turns:
                self._detector.buffer_frame(frame)
                continue
            for event in self._detector.push_frame(frame):
                await self._on_turn_event(event)
        seconds = self._detector.utterance_seconds
        if self._detector.pausing:
            return  # no preview at a pause: the turn may start now and needs the CPU
        if self._partials.due(self._utterance_id, seconds) and self._utterance_id is not None:
            self._partials.start(self._utterance_id, self._detector.current_audio(), seconds)

    async def commit(self) -> None:
        """End of utterance now (push-to-talk): the audio since the last turn becomes a turn."""
        committed = self._detector.commit()
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
        await self._queue_turn(turn, hold=hold)
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
            self._framer = PcmFramer(self.input_rate, self.settings.vad.frame_ms)
        if session_id is not None and session_id != self.session.session_id:
            if self.busy:
                raise InvalidInputError("cannot switch sessions during a turn", code="session_busy")
            await self.binding.switch(session_id, persona=persona, user_id=user_id)
        elif user_id is not None and not self.session.persisted:
            self.session.user_id = user_id
        if persona is not None:
            await self.set_persona(persona)
        if safety_locale is not None:
            await self.binding.set_safety_locale(safety_locale)
        await self.emit(self.session_ready())

    async def set_persona(self, persona: str | None) -> None:
        """Make ``persona`` (an id; None: the default) this session's persona from the next turn on, stored with
        the session. UnknownPersonaError for an unknown id. Wires whose clients send free-text instructions
        (OpenAI Realtime ``session.instructions``) resolve them with ``PipelineServices.personas.from_instructions``."""
        await self.binding.set_persona(persona)

    async def _on_turn_event(self, event: object) -> None:
        if isinstance(event, SpeechStarted):
            self._utterance_id = new_id()
            await self.emit(events.SpeechStarted(self._utterance_id, ago_s=event.ago_s))
        elif isinstance(event, SpeechSustained):
            if self.turn_taking.barge_in and self._active is not None and self._active[1].responding:
                await self.interrupt()
        elif isinstance(event, SpeechPaused):
            self._cancel_provisional()
            pipeline = self.settings.pipeline
            if pipeline.mode == "sequential":
                pass  # the seed product's way: nothing starts before the end of speech
            elif pipeline.early_start and self.turn_taking.respond and self._active is None and self._turns.empty():
                self._start_provisional(event)
            elif pipeline.speculative_stt:
                self._speculation = (event.voiced_frames, self.services.transcribe_soon(event.audio))
        elif isinstance(event, SpeechResumed):
            self._cancel_provisional()
        elif isinstance(event, SpeechDiscarded):
            self._partials.reset()
            if self._utterance_id is not None:
                await self.emit(events.SpeechStopped(self._utterance_id, duration_s=0.0, discarded=True))
            self._utterance_id = None
        elif isinstance(event, SpeechStopped):
            self._partials.reset()
            turn_id = self._utterance_id or new_id()
            self._utterance_id = None
            provisional, self._provisional = self._provisional, None
            if provisional is not None:
                if provisional.judge is not None and provisional.judge is not asyncio.current_task():
                    provisional.judge.cancel()
                if event.reason == "silence" and provisional.voiced_frames == event.voiced_frames:
                    await self._confirm(provisional, event)
                    return
                provisional.task.cancel()
            lag = event.silence_s
            speculation, self._speculation = self._speculation, None
            transcript = None
            if speculation is not None and speculation[0] == event.voiced_frames:
                transcript = speculation[1]  # nothing was said after the pause: reuse its transcription
            committed = event.reason == "commit"
            await self.emit(
                events.SpeechStopped(
                    turn_id, duration_s=round(event.duration_s, 3), committed=committed, silence_s=event.silence_s
                )
            )
            await self._queue_turn(
                TurnInput(
                    turn_id,
                    self.session.session_id,
                    t0=time.perf_counter() - lag,
                    audio=event.audio,
                    transcript=transcript,
                    duration_s=event.duration_s,
                    marks={"speech_stopped": round(lag, 4)},
                )
            )

    async def _queue_turn(self, turn: TurnInput, *, hold: bool = False) -> None:
        turn.speak = self.turn_taking.speak
        if hold or not self.turn_taking.respond:
            self._held.append(turn)
            return
        await self._turns.put(turn)

    # --- early start -------------------------------------------------------------------------------------

    def _start_provisional(self, event: SpeechPaused) -> None:
        """Run the turn from the pause on; the end of speech was ``pause_ms`` ago if the user does not go on."""
        gate = GatedOutput(self)
        hooks = EarlyTurnHooks(gate, self.services, judged=self.settings.vad.turn_end_threshold is not None)
        turn = TurnInput(
            self._utterance_id or new_id(),
            self.session.session_id,
            t0=time.perf_counter() - self.settings.vad.pause_ms / 1000,
            audio=event.audio,
            duration_s=round(len(event.audio) / 32000, 3),
            speak=self.turn_taking.speak,
        )
        self.binding.stamp(turn)
        state = TurnState(turn.turn_id)
        task = asyncio.create_task(self._run_gated(turn, state, gate, hooks), name=f"early-{turn.turn_id}")
        self._provisional = Provisional(event.voiced_frames, turn, state, gate, hooks, task)
        if hooks.reading is not None:
            self._provisional.judge = asyncio.create_task(
                self._judge_turn_end(event.voiced_frames, hooks.reading), name=f"turn-end-{turn.turn_id}"
            )

    async def _judge_turn_end(self, voiced_frames: int, reading: asyncio.Future[float | None]) -> None:
        """Turn-end model: when the words up to this pause read as a finished turn (vad.turn_end_threshold; the
        pipeline reads them right after transcribing), the end of speech comes after vad.turn_end_hangover_ms of
        silence. Unsure, or a model error: the hangover."""
        vad = self.settings.vad
        try:
            probability = await reading
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("the turn-end model failed; the full hangover applies", exc_info=True)
            self.pipeline.metrics.turn_end_readings.labels(outcome="error").inc()
            return
        threshold = vad.turn_end_threshold
        complete = probability is not None and threshold is not None and probability >= threshold
        if probability is not None:
            self.pipeline.metrics.turn_end_readings.labels(outcome="complete" if complete else "unsure").inc()
        logger.debug("turn end judged", extra={"probability": probability, "complete": complete})
        provisional = self._provisional
        if not complete or provisional is None or provisional.voiced_frames != voiced_frames:
            return
        for event in self._detector.expect_end(voiced_frames, vad.turn_end_hangover_ms):
            await self._on_turn_event(event)

    def _cancel_provisional(self) -> None:
        if self._provisional is not None:
            self._provisional.task.cancel()
            if self._provisional.judge is not None:
                self._provisional.judge.cancel()
            self._provisional = None

    async def _confirm(self, provisional: Provisional, event: SpeechStopped) -> None:
        """The user did not go on after the pause: the early turn is the real one. Release its output."""
        turn = provisional.turn
        turn.marks["speech_stopped"] = round(time.perf_counter() - turn.t0, 4)
        turn.duration_s = event.duration_s
        await self.emit(
            events.SpeechStopped(turn.turn_id, duration_s=round(event.duration_s, 3), silence_s=event.silence_s)
        )
        await self.binding.ensure_persisted()
        self._active, self._active_input = (provisional.task, provisional.state), turn
        self._turns.put_nowait(Adopted(turn, provisional.state, provisional.task))
        await provisional.gate.open()

    async def _run_gated(self, turn: TurnInput, state: TurnState, gate: GatedOutput, hooks: EarlyTurnHooks) -> None:
        try:
            await self.pipeline.run(turn, gate, state, hooks)
        except ClarityError as exc:
            await gate.opened.wait()  # reported only if the turn is confirmed
            self.report_error(exc)
        except Exception:
            logger.exception("turn failed", extra={"turn_id": turn.turn_id})
            await gate.opened.wait()
            self.report_error(ClarityError("the turn failed on the server", retryable=True))

    # --- turns -------------------------------------------------------------------------------------------

    async def interrupt(self) -> bool:
        """Barge-in or cancel: stop the reply now, drop its queued audio, tell the client. True if one ran."""
        active = self._active
        if active is None or not active[1].responding or active[0].done():
            return False
        task, state = active
        task.cancel()
        self.out.drop_audio(state.turn_id)
        await asyncio.wait([task])
        self.pipeline.metrics.interruptions.inc()
        self.emit_control(events.Interrupted(state.turn_id, state.spoken_text()))
        return True

    async def _work(self) -> None:
        while True:
            item = await self._turns.get()
            if isinstance(item, Adopted):
                turn, state, task = item.turn, item.state, item.task
            else:
                self._cancel_provisional()  # a queued turn goes first; the speech after it is re-run later
                turn, state = item, TurnState(item.turn_id)
                task = asyncio.create_task(self._run_turn(turn, state), name=f"turn-{turn.turn_id}")
            self._active, self._active_input = (task, state), turn
            try:
                await asyncio.wait([task])
            finally:
                self._active, self._active_input = None, None

    async def _run_turn(self, turn: TurnInput, state: TurnState) -> None:
        try:
            await self.binding.ensure_persisted()
            turn.session_id = self.session.session_id
            await self.pipeline.run(self.binding.stamp(turn), self, state)
        except ClarityError as exc:
            self.report_error(exc)
        except Exception:
            logger.exception("turn failed", extra={"turn_id": turn.turn_id})
            self.report_error(ClarityError("the turn failed on the server", retryable=True))

    # --- client-driven turns: wires whose client commits audio, asks for replies, or corrects them --------

    def configure(self, turn_taking: TurnTaking) -> None:
        """Change how turns are taken. Turning detection on or off forgets the audio buffered so far."""
        if turn_taking.detect_turns != self.turn_taking.detect_turns:
            self.clear_input()
        self.turn_taking = turn_taking

    async def respond(self) -> list[str]:
        """Answer the held input now (see turn_taking.merge_held); returns the ids of the turns queued."""
        if not self._held:
            raise InvalidInputError("there is no new input to respond to", code="no_input")
        turns, self._held = merge_held(self._held), []
        for turn in turns:
            await self._turns.put(turn)
        return [turn.turn_id for turn in turns]

    def clear_input(self) -> None:
        """Forget the audio not yet part of a turn (and any turn started early from it)."""
        self._cancel_provisional()
        self._partials.reset()
        self._speculation = None
        self._utterance_id = None
        self._detector.reset()
        self._framer = PcmFramer(self.input_rate, self.settings.vad.frame_ms)

    async def truncate(self, turn_id: str, audio_end_s: float) -> str:
        """The listener heard only the first ``audio_end_s`` seconds of this reply: stop it if it is still
        running, and store the words heard as the assistant turn (interrupted). Returns that text."""
        if self._active is not None and self._active[1].turn_id == turn_id:
            await self.interrupt()  # returns once the turn has ended and stored what was sent
        heard = self._ledger.heard_text(turn_id, audio_end_s, self.output_sample_rate)
        state = self._ledger.state(turn_id)
        if state is not None and state.stored_reply_id is not None:
            await self.store.update_turn(state.stored_reply_id, text=heard, interrupted=True)
        return heard
