"""/api/text-chat and /api/text-chat/stream: a typed turn over REST, answered whole or as server-sent events.

The same turn logic as a spoken one, from the transcript on, without audio. The turn registers with the
pipeline's running turns, so ``POST /api/sessions/{id}/cancel`` stops it as a barge-in would: the reply is kept
(and stored, marked interrupted) as far as it was generated, the JSON answer says ``interrupted``, and the stream
sends an ``interrupted`` event before ``done``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from backend.api.deps import AppServices, OwnerDep, ServicesDep
from backend.api.rest import AUTHED, TURN_ERRORS, error_responses
from backend.api.v1_events import SSE_EVENTS, to_sse
from backend.core.exceptions import ClarityError
from backend.mentor.speakable import clean_for_speech
from backend.pipeline.events import EmotionDetected, ErrorOccurred, Interrupted, PipelineEvent, SafetyChecked
from backend.pipeline.session_binding import new_id, open_session
from backend.pipeline.turn_types import TurnInput, TurnResult, TurnState
from backend.protocol.rest import TextChatPublic, TextChatRequest
from backend.store.memories import memory_scope

router = APIRouter(prefix="/api")

_SSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One server-sent event: ``event`` names it, ``data`` is its JSON body.",
    "properties": {"event": {"type": "string", "enum": SSE_EVENTS}, "data": {"type": "string"}},
    "required": ["event", "data"],
}


class _CollectingOutput:
    """TurnOutput for text chat: no audio; events optionally forwarded to a queue (for SSE)."""

    def __init__(self, queue: asyncio.Queue[PipelineEvent] | None = None) -> None:
        self.queue = queue
        self.emotion: dict[str, object] = {}
        self.safety: dict[str, object] = {"flagged": False, "category": None, "level": None}

    async def emit(self, event: PipelineEvent) -> None:
        if isinstance(event, EmotionDetected):
            self.emotion = event.emotion.to_dict()
        if isinstance(event, SafetyChecked):
            self.safety = event.safety
        if self.queue is not None:
            await self.queue.put(event)

    async def flush(self) -> None:
        return None


async def _text_turn(services: AppServices, owner: str | None, body: TextChatRequest) -> TurnInput:
    """The turn of a request: its session (an unknown custom id creates it), persona and memory scope."""
    store, personas = services.store, services.shared.personas
    personas.check(body.persona)
    if body.session_id is not None:
        record, _ = await open_session(store, body.session_id, owner, persona=body.persona, user_id=body.user_id)
        if body.persona is not None and body.persona != record.persona:
            await store.set_persona(record.id, body.persona)
        if body.safety_locale is not None and body.safety_locale != record.safety_locale:
            await store.set_safety_locale(record.id, body.safety_locale)
    else:
        record = await store.create_session(
            owner=owner, persona=body.persona, user_id=body.user_id, safety_locale=body.safety_locale
        )
    turn = TurnInput(new_id(), record.id, time.perf_counter(), text=body.text, speak=False)
    turn.persona = body.persona or record.persona
    turn.memory_scope = memory_scope(owner, record.user_id, record.id)
    turn.safety_locale = body.safety_locale or record.safety_locale
    return turn


class _CancellableTurn:
    """A text turn's task, registered with the pipeline's running turns while it runs."""

    def __init__(self, services: AppServices, turn: TurnInput, out: _CollectingOutput) -> None:
        self.services, self.turn = services, turn
        self.state = TurnState(turn.turn_id)
        self.task: asyncio.Task[TurnResult] = asyncio.create_task(services.pipeline.run(turn, out, self.state))
        services.shared.running.add(turn.session_id, turn.turn_id, self.cancel)
        self.task.add_done_callback(lambda _: services.shared.running.remove(turn.session_id, turn.turn_id))

    async def cancel(self) -> bool:
        """Stop the generation (as a barge-in does); False if it has not started or has ended."""
        if self.task.done() or not self.state.responding:
            return False
        self.task.cancel()
        await asyncio.wait([self.task])
        self.services.pipeline.metrics.interruptions.inc()
        return True

    @property
    def interrupted(self) -> bool:
        return self.task.cancelled()

    @property
    def reply_so_far(self) -> str:
        return clean_for_speech(self.state.reply_text)


@router.post("/text-chat", responses=error_responses(*TURN_ERRORS))
async def text_chat(body: TextChatRequest, services: ServicesDep, owner: OwnerDep) -> TextChatPublic:
    """A typed message -> the mentor's reply and the message's emotion. ``session_id`` continues a session (an
    unknown id creates it), ``persona`` picks the mentor, ``user_id`` names the user of a new session."""
    turn = await _text_turn(services, owner, body)
    out = _CollectingOutput()
    running = _CancellableTurn(services, turn, out)
    try:
        await asyncio.wait([running.task])
    except asyncio.CancelledError:  # the client went away: stop the turn too
        running.task.cancel()
        raise
    persona = services.shared.personas.get(turn.persona).id
    if running.interrupted:
        return TextChatPublic(
            session_id=turn.session_id,
            response=running.reply_so_far,
            emotion=out.emotion,
            interrupted=True,
            persona=persona,
            safety=out.safety,
        )
    result = running.task.result()  # raises the turn's ClarityError, answered by the app's handler
    return TextChatPublic(
        session_id=turn.session_id,
        response=result.reply,
        emotion=result.emotion.to_dict(),
        timings=result.timings,
        persona=persona,
        safety=result.safety,
    )


@router.post(
    "/text-chat/stream",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {"schema": _SSE_SCHEMA}}},
        **error_responses(*AUTHED, 404),
    },
)
async def text_chat_stream(body: TextChatRequest, services: ServicesDep, owner: OwnerDep) -> StreamingResponse:
    """The same turn as /api/text-chat, streamed as server-sent events (one per pipeline event)."""
    turn = await _text_turn(services, owner, body)
    queue: asyncio.Queue[PipelineEvent] = asyncio.Queue()

    async def events() -> AsyncIterator[str]:
        collected = _CollectingOutput(queue)
        running = _CancellableTurn(services, turn, collected)
        task = running.task
        yield _sse("session", {"session_id": turn.session_id})
        try:
            while not (task.done() and queue.empty()):
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    mapped = to_sse(getter.result())
                    if mapped is not None:
                        yield _sse(*mapped)
                else:
                    getter.cancel()
            if running.interrupted:
                yield _sse(*_mapped(Interrupted(turn.turn_id, running.reply_so_far)))
            elif isinstance(exc := task.exception(), ClarityError):
                yield _sse(*_mapped(ErrorOccurred(exc.code, exc.message)))
            elif exc is not None:
                yield _sse(*_mapped(ErrorOccurred("internal_error", "the turn failed")))
            yield _sse("done", {"session_id": turn.session_id, "safety": collected.safety})
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _mapped(event: PipelineEvent) -> tuple[str, dict[str, object]]:
    mapped = to_sse(event)
    assert mapped is not None  # errors and interruptions always have a v1 message
    return mapped


def _sse(event: str, data: object) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"
