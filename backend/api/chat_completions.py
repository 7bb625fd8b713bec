"""OpenAI Chat Completions and Models: the mentor for any OpenAI chat client (``base_url=<server>/v1``).

``POST /v1/chat/completions`` runs one stateless text turn of the same pipeline as the voice path: the last
user message gets its emotion detected and the emotion's guidance goes into the prompt; earlier user and
assistant messages are the history (system messages are ignored: the mentor's own prompt is used). Nothing
is stored. ``stream: true`` answers with server-sent chunks (``stream_options.include_usage`` adds the usage
chunk). Errors use the OpenAI shape ``{"error": {"message", "type", "param", "code"}}`` (plus ``retryable``).
Usage counts the messages' and the reply's tokens with the LLM's tokenizer; the system prompt is not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backend.api.auth import authenticate
from backend.api.deps import AppServices, get_services
from backend.core.exceptions import ClarityError, InvalidInputError
from backend.pipeline.events import EmotionDetected, PipelineEvent, ReplyTextDelta
from backend.pipeline.session_binding import new_id
from backend.pipeline.turn_types import TurnInput, TurnResult, TurnState
from backend.store.records import HistoryTurn

# Not in /openapi.json: OpenAI's own API reference describes these (our differences: docs/REALTIME.md), and a
# schema could not say what the handler checks (e.g. the last message must be the user's).
router = APIRouter(prefix="/v1", tags=["openai"], include_in_schema=False)
MODEL_ID = "claritymentor"
CREATED = 1767225600  # 2026-01-01: when this model id was first served


class ModelNotFoundError(ClarityError):
    code = "model_not_found"
    http_status = 404


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, str) or self.content is None:
            return self.content or ""
        return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1
    # Ours (OpenAI SDKs send it with extra_body): whose crisis numbers, e.g. "GB" (docs/SAFETY.md).
    safety_locale: str | None = Field(None, pattern=r"^[A-Za-z_-]{2,16}$")


def _openai_error(exc: ClarityError, param: str | None = None) -> JSONResponse:
    status = exc.http_status
    kind = "server_error" if status >= 500 else "invalid_request_error"
    code = "invalid_api_key" if status == 401 else exc.code
    body = {"error": {"message": exc.message, "type": kind, "param": param, "code": code, "retryable": exc.retryable}}
    return JSONResponse(body, status_code=400 if status == 422 else status)


def _model_card() -> dict[str, Any]:
    return {"id": MODEL_ID, "object": "model", "created": CREATED, "owned_by": "claritymentor"}


def _authorize(request: Request) -> AppServices:
    services = get_services(request)
    authenticate(request, services.settings.auth)
    return services


@router.get("/models")
async def list_models(request: Request) -> Response:
    """The models served: the mentor (``claritymentor``)."""
    try:
        _authorize(request)
    except ClarityError as exc:
        return _openai_error(exc)
    return JSONResponse({"object": "list", "data": [_model_card()]})


@router.get("/models/{model_id}")
async def get_model(model_id: str, request: Request) -> Response:
    try:
        _authorize(request)
        if model_id != MODEL_ID:
            raise ModelNotFoundError(f"The model '{model_id[:64]}' does not exist")
    except ClarityError as exc:
        return _openai_error(exc)
    return JSONResponse(_model_card())


def _parse(raw: bytes, max_chars: int) -> tuple[ChatRequest, str, list[HistoryTurn]]:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise InvalidInputError("the request body is not valid JSON", code="invalid_json") from None
    try:
        request = ChatRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidInputError(f"{where}: {first['msg']}", code="invalid_value") from None
    if request.model != MODEL_ID:
        raise ModelNotFoundError(f"The model '{request.model[:64]}' does not exist; this server serves '{MODEL_ID}'")
    if request.n != 1:
        raise InvalidInputError("only n=1 is supported", code="unsupported_value")
    last = request.messages[-1]
    text = last.text().strip()
    if last.role != "user" or not text:
        raise InvalidInputError("the last message must be a user message with text", code="invalid_value")
    if len(text) > max_chars:
        raise InvalidInputError(f"the last message is longer than {max_chars} characters", code="text_too_long")
    history = [
        HistoryTurn(role=m.role, text=m.text())
        for m in request.messages[:-1]
        if m.role in ("user", "assistant") and m.text().strip()
    ]
    return request, text, history


class _QueueOutput:
    """TurnOutput for a chat completion: no audio; events go to a queue for the stream."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[PipelineEvent] = asyncio.Queue()

    async def emit(self, event: PipelineEvent) -> None:
        self.queue.put_nowait(event)

    async def flush(self) -> None:
        return None


@router.post("/chat/completions")
async def chat_completions(request: Request) -> Response:
    """The mentor's reply to the last user message, as an OpenAI chat completion (or its chunks)."""
    try:
        services = _authorize(request)
        body, text, history = _parse(await request.body(), services.settings.limits.max_text_chars)
    except ClarityError as exc:
        return _openai_error(exc)
    turn = TurnInput(new_id(), f"chat-{new_id()}", time.perf_counter(), text=text, speak=False, history=history)
    turn.safety_locale = body.safety_locale
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    prompt_text = "\n".join([*(h.text for h in history), text])
    count_tokens = services.models.llm.count_tokens

    async def usage(reply: str) -> dict[str, int]:
        prompt, completion = await asyncio.gather(
            asyncio.to_thread(count_tokens, prompt_text), asyncio.to_thread(count_tokens, reply)
        )
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    if not body.stream:
        try:
            result: TurnResult = await services.pipeline.run(turn, _QueueOutput(), TurnState(turn.turn_id))
        except ClarityError as exc:
            return _openai_error(exc)
        message = {"role": "assistant", "content": result.reply}
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": MODEL_ID,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
                "usage": await usage(result.reply),
                "claritymentor": {
                    "emotion": result.emotion.to_dict(),
                    "timings": result.timings,
                    "safety": result.safety,
                },
            }
        )
    include_usage = body.stream_options is not None and body.stream_options.include_usage

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        data: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL_ID,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        if include_usage:
            data.setdefault("usage", None)
        return f"data: {json.dumps(data)}\n\n"

    async def stream() -> AsyncIterator[str]:
        output = _QueueOutput()
        task = asyncio.create_task(services.pipeline.run(turn, output, TurnState(turn.turn_id)))
        try:
            while not (task.done() and output.queue.empty()):
                getter = asyncio.ensure_future(output.queue.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    continue
                event = getter.result()
                if isinstance(event, EmotionDetected):
                    extension = {"emotion": event.emotion.to_dict()}
                    yield chunk({"role": "assistant", "content": ""}, claritymentor=extension)
                elif isinstance(event, ReplyTextDelta):
                    yield chunk({"content": event.text})
            failure = task.exception()
            if failure is not None:
                error = failure if isinstance(failure, ClarityError) else ClarityError("the turn failed on the server")
                yield f"data: {bytes(_openai_error(error).body).decode()}\n\n"
            else:
                yield chunk({}, "stop", claritymentor={"safety": task.result().safety})
                if include_usage:
                    data = {"id": completion_id, "object": "chat.completion.chunk", "created": created}
                    data |= {"model": MODEL_ID, "choices": [], "usage": await usage(task.result().reply)}
                    yield f"data: {json.dumps(data)}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
