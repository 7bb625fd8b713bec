"""InputGuard with a fake receive (no socket): byte-rate limit, idle timeout, and no idle timeout while busy."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar, cast

import pytest
from starlette.types import Message
from starlette.websockets import WebSocket

from backend.api.limits import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    ConnectionClosing,
    IdleTimeoutError,
    InputGuard,
    RateLimitedError,
)
from backend.config import LimitsSettings

pytestmark = [pytest.mark.fast, pytest.mark.timeout(30)]

T = TypeVar("T")
HANG_GUARD_S = 5.0


class FakeSocket:
    """Only ``receive()``: returns queued messages, waiting (like a quiet client) when none is queued."""

    def __init__(self, *messages: Message) -> None:
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        for message in messages:
            self.messages.put_nowait(message)
        self.receives = 0

    async def receive(self) -> Message:
        self.receives += 1
        return await self.messages.get()

    def as_websocket(self) -> WebSocket:
        return cast(WebSocket, self)


def _bytes(n: int) -> Message:
    return {"type": "websocket.receive", "bytes": b"\x00" * n}


def _text(text: str) -> Message:
    return {"type": "websocket.receive", "text": text}


def _limits(**values: Any) -> LimitsSettings:
    return LimitsSettings(**{"max_bytes_per_s": 100, "rate_window_s": 5.0, "idle_timeout_s": 60.0, **values})


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, HANG_GUARD_S))


def test_messages_within_the_byte_budget_pass_through_unchanged() -> None:
    """Messages totalling exactly the window's budget (max_bytes_per_s * rate_window_s) are returned as received."""

    async def scenario() -> list[Message]:
        messages = [_bytes(200), _text("x" * 100), _bytes(200)]  # 500 bytes = 100 B/s * 5 s
        ws = FakeSocket(*messages)
        guard = InputGuard(_limits(), busy=lambda: False)
        return [await guard.receive(ws.as_websocket()) for _ in messages]

    assert run(scenario()) == [_bytes(200), _text("x" * 100), _bytes(200)]


def test_input_over_the_byte_rate_raises_rate_limited() -> None:
    """The message that takes the window past its budget raises RateLimitedError: close 1008, code rate_limited."""

    async def scenario() -> None:
        ws = FakeSocket(_bytes(300), _bytes(201))
        guard = InputGuard(_limits(), busy=lambda: False)
        assert await guard.receive(ws.as_websocket()) == _bytes(300)
        with pytest.raises(RateLimitedError) as caught:
            await guard.receive(ws.as_websocket())
        error = caught.value
        assert isinstance(error, ConnectionClosing)
        assert (error.code, error.close_code, error.close_reason) == (
            "rate_limited",
            CLOSE_POLICY,
            "rate limit exceeded",
        )
        assert error.close_code == 1008
        assert "100 bytes/s" in error.message

    run(scenario())


def test_text_counts_by_its_utf8_bytes() -> None:
    """Text frames count their encoded size: 2 x 150 two-byte characters (600 B) exceed a 500 B budget."""

    async def scenario() -> None:
        ws = FakeSocket(_text("é" * 150), _text("é" * 150))
        guard = InputGuard(_limits(), busy=lambda: False)
        await guard.receive(ws.as_websocket())
        with pytest.raises(RateLimitedError):
            await guard.receive(ws.as_websocket())

    run(scenario())


def test_idle_timeout_when_no_turn_runs() -> None:
    """No message for idle_timeout_s while not busy raises IdleTimeoutError: close 1001, retryable."""

    async def scenario() -> int:
        ws = FakeSocket()
        guard = InputGuard(_limits(idle_timeout_s=0.01), busy=lambda: False)
        with pytest.raises(IdleTimeoutError) as caught:
            await guard.receive(ws.as_websocket())
        error = caught.value
        assert isinstance(error, ConnectionClosing)
        assert (error.code, error.close_code, error.close_reason) == ("idle_timeout", CLOSE_GOING_AWAY, "idle timeout")
        assert error.close_code == 1001 and error.retryable is True
        return ws.receives

    assert run(scenario()) == 1  # the first silent timeout already closes


def test_no_idle_timeout_while_busy() -> None:
    """While a turn runs, idle timeouts only re-arm the wait; the next message is returned normally."""

    async def scenario() -> tuple[Message, int, int]:
        ws = FakeSocket()
        checks = 0
        late = _bytes(10)

        def busy() -> bool:
            nonlocal checks
            checks += 1
            if checks == 4:  # the client speaks again after three idle periods (one check as it starts waiting)
                ws.messages.put_nowait(late)
            return True

        guard = InputGuard(_limits(idle_timeout_s=0.01), busy=busy)
        message = await guard.receive(ws.as_websocket())
        return message, checks, ws.receives

    message, checks, receives = run(scenario())
    assert message == _bytes(10)
    assert checks == 4 and receives == 4


def test_idle_timeout_once_the_turn_is_over() -> None:
    """A connection kept open by a turn is closed after the first whole idle period after the turn ends: the
    period in which it ended does not count (checks: as the wait starts, then at the end of each period)."""

    async def scenario() -> int:
        ws = FakeSocket()
        answers = iter([True, True, False, False])
        calls: list[bool] = []

        def busy() -> bool:
            calls.append(next(answers))
            return calls[-1]

        guard = InputGuard(_limits(idle_timeout_s=0.01), busy=busy)
        with pytest.raises(IdleTimeoutError):
            await guard.receive(ws.as_websocket())
        return len(calls)

    assert run(scenario()) == 4


def test_disconnect_message_is_returned_and_counts_no_bytes() -> None:
    """A websocket.disconnect message passes through (the receiver ends on it) without touching the budget."""

    async def scenario() -> Message:
        disconnect: Message = {"type": "websocket.disconnect", "code": 1000}
        ws = FakeSocket(_bytes(500), disconnect)
        guard = InputGuard(_limits(), busy=lambda: False)
        await guard.receive(ws.as_websocket())
        return await guard.receive(ws.as_websocket())

    assert run(scenario()) == {"type": "websocket.disconnect", "code": 1000}
