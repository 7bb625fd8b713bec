"""A connection's turns, one at a time in arrival order: the queue, its worker, the running turn, the input held
for ``respond()``, and on disconnect the storing of what the user said that no turn answered.

Nothing the user said is dropped while the mentor is still answering an earlier turn: a finished utterance or a
typed message waits here. A turn started early at a pause (pipeline/early_start.py) joins the queue already
running, as ``Adopted``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from backend.core.exceptions import ClarityError, InvalidInputError
from backend.pipeline.session_binding import SessionBinding
from backend.pipeline.turn_pipeline import TurnPipeline
from backend.pipeline.turn_taking import TurnTaking, merge_held
from backend.pipeline.turn_types import TurnInput, TurnOutput, TurnState
from backend.store.async_store import AsyncSessionStore

logger = logging.getLogger(__name__)

ReportError = Callable[[ClarityError], None]


@dataclass(frozen=True)
class Adopted:
    """A confirmed provisional turn, handed to the worker already running."""

    turn: TurnInput
    state: TurnState
    task: asyncio.Task[None]


class TurnQueue:
    """``before_turn`` runs as a queued (not adopted) turn starts: a turn started early from the speech after it
    is dropped, and run again later."""

    def __init__(
        self,
        *,
        pipeline: TurnPipeline,
        store: AsyncSessionStore,
        binding: SessionBinding,
        output: TurnOutput,
        report_error: ReportError,
        min_speech_ms: int,
        before_turn: Callable[[], None],
    ) -> None:
        self.pipeline, self._store, self.binding = pipeline, store, binding
        self.output, self.report_error = output, report_error  # an early-started turn reports through them too
        self._min_speech_ms = min_speech_ms
        self._before_turn = before_turn
        self._turns: asyncio.Queue[TurnInput | Adopted] = asyncio.Queue()
        self._held: list[TurnInput] = []  # input waiting for respond() (turn_taking.respond off, or hold=True)
        self._worker: asyncio.Task[None] | None = None
        self.active: tuple[asyncio.Task[None], TurnState] | None = None
        self.active_input: TurnInput | None = None

    def start(self) -> None:
        self._worker = asyncio.create_task(self._work(), name="turn-worker")

    @property
    def busy(self) -> bool:
        return self.active is not None or not self._turns.empty()

    @property
    def replying(self) -> bool:
        """The running turn's reply has begun: speech now is a barge-in."""
        return self.active is not None and self.active[1].responding

    async def put(self, turn: TurnInput, turn_taking: TurnTaking, *, hold: bool = False) -> None:
        """Queue ``turn``, spoken if ``turn_taking`` says so; held for respond() with ``hold`` or when the wire
        asks for each reply itself."""
        turn.speak = turn_taking.speak
        if hold or not turn_taking.respond:
            self._held.append(turn)
            return
        await self._turns.put(turn)

    def adopt(self, turn: TurnInput, state: TurnState, task: asyncio.Task[None]) -> None:
        """A turn already running (started early, now confirmed) becomes the active one, ahead of the queue."""
        self.active, self.active_input = (task, state), turn
        self._turns.put_nowait(Adopted(turn, state, task))

    async def respond(self) -> list[str]:
        """Answer the held input now (see turn_taking.merge_held); returns the ids of the turns queued."""
        if not self._held:
            raise InvalidInputError("there is no new input to respond to", code="no_input")
        turns, self._held = merge_held(self._held), []
        for turn in turns:
            await self._turns.put(turn)
        return [turn.turn_id for turn in turns]

    async def _work(self) -> None:
        while True:
            item = await self._turns.get()
            if isinstance(item, Adopted):
                turn, state, task = item.turn, item.state, item.task
            else:
                self._before_turn()
                turn, state = item, TurnState(item.turn_id)
                task = asyncio.create_task(self._run_turn(turn, state), name=f"turn-{turn.turn_id}")
            self.active, self.active_input = (task, state), turn
            try:
                await asyncio.wait([task])
            finally:
                self.active, self.active_input = None, None

    async def _run_turn(self, turn: TurnInput, state: TurnState) -> None:
        try:
            await self.binding.ensure_persisted()
            turn.session_id = self.binding.session.session_id
            await self.pipeline.run(self.binding.stamp(turn), self.output, state)
        except ClarityError as exc:
            self.report_error(exc)
        except Exception:
            logger.exception("turn failed", extra={"turn_id": turn.turn_id})
            self.report_error(ClarityError("the turn failed on the server", retryable=True))

    # --- disconnect --------------------------------------------------------------------------------------

    async def close(self, speech_in_progress: Callable[[], TurnInput | None]) -> None:
        """Stop the worker, cancel the running turn (its partial reply is stored), then store what the user said
        that no turn answered, as interrupted user turns: queued and held turns, a turn cancelled before its reply
        began (its transcript may not be stored yet), and ``speech_in_progress`` (transcribed now)."""
        active, current = self.active, self.active_input
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
        speech = speech_in_progress()
        if speech is not None:
            unanswered.append(speech)
        for turn in unanswered:
            try:
                await self._store_unanswered(turn)
            except Exception:
                logger.exception("could not store an unanswered user turn")

    async def _store_unanswered(self, turn: TurnInput) -> None:
        text = (turn.text or "").strip()
        if turn.audio is not None:
            if len(turn.audio) < self._min_speech_ms * 32:  # PCM16 at 16 kHz: 32 bytes per ms
                return
            text = (await self.pipeline.services.transcribe_soon(turn.audio)).text
            text = text.strip()
        if text:
            await self.binding.ensure_persisted()
            await self._store.add_turn(
                self.binding.session.session_id, "user", text, duration_s=turn.duration_s, interrupted=True
            )
