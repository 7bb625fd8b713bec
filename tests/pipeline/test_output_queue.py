"""OutputQueue: order, per-turn audio drop, bounded put with SlowClientError, close."""

from __future__ import annotations

import asyncio

import pytest

from backend.pipeline.events import (
    ErrorOccurred,
    Interrupted,
    PipelineEvent,
    ReplyAudioChunk,
    ReplyAudioDone,
    ReplyTextDelta,
)
from backend.pipeline.output_queue import OutputQueue, SlowClientError
from tests.pipeline.recording import run_async

pytestmark = [pytest.mark.fast, pytest.mark.timeout(30)]


def _audio(turn_id: str, n: int) -> ReplyAudioChunk:
    return ReplyAudioChunk(turn_id, bytes([n]) * 4, 0)


async def _drain(queue: OutputQueue) -> list[PipelineEvent]:
    """Everything queued now (the queue must be closed, or the last get would wait)."""
    items: list[PipelineEvent] = []
    while (item := await queue.get()) is not None:
        items.append(item)
    return items


async def _yield(times: int = 10) -> None:
    for _ in range(times):
        await asyncio.sleep(0)


def test_items_come_out_in_the_order_they_went_in() -> None:
    """put and put_nowait share one FIFO order; len counts what waits."""

    async def scenario() -> None:
        queue = OutputQueue(10)
        items: list[PipelineEvent] = [ReplyTextDelta("a", "1"), _audio("a", 1), ErrorOccurred("x", "y")]
        await queue.put(items[0], timeout=1)
        queue.put_nowait(items[1])
        await queue.put(items[2], timeout=1)
        assert len(queue) == 3
        assert [await queue.get() for _ in range(3)] == items
        assert len(queue) == 0

    run_async(scenario())


def test_drop_audio_removes_only_that_turns_audio_chunks() -> None:
    """drop_audio(turn) removes that turn's ReplyAudioChunk items, keeping its other events and other turns' audio."""

    async def scenario() -> None:
        queue = OutputQueue(20)
        items: list[PipelineEvent] = [
            _audio("a", 1),
            _audio("b", 2),
            ReplyTextDelta("a", "text"),
            _audio("a", 3),
            ReplyAudioDone("a", 8, 0.0),
            _audio("b", 4),
        ]
        for item in items:
            queue.put_nowait(item)
        assert queue.drop_audio("a") == 2
        assert queue.drop_audio("a") == 0
        queue.close()
        assert await _drain(queue) == [items[1], items[2], items[4], items[5]]

    run_async(scenario())


def test_put_on_a_full_queue_times_out_with_slow_client_error() -> None:
    """A put that finds no space within its timeout raises SlowClientError and adds nothing."""

    async def scenario() -> None:
        queue = OutputQueue(2)
        queue.put_nowait(_audio("a", 1))
        queue.put_nowait(_audio("a", 2))
        with pytest.raises(SlowClientError) as caught:
            await queue.put(_audio("a", 3), timeout=0.02)
        assert caught.value.code == "slow_client"
        assert len(queue) == 2

    run_async(scenario())


def test_a_waiting_put_proceeds_when_a_get_makes_space() -> None:
    """put on a full queue waits (no error) and completes once the consumer takes an item; order is kept."""

    async def scenario() -> None:
        queue = OutputQueue(2)
        first, second, third = _audio("a", 1), _audio("a", 2), _audio("a", 3)
        queue.put_nowait(first)
        queue.put_nowait(second)
        putting = asyncio.create_task(queue.put(third, timeout=5))
        await _yield()
        assert not putting.done()
        assert await queue.get() == first
        await putting
        assert [await queue.get(), await queue.get()] == [second, third]

    run_async(scenario())


def test_drop_audio_frees_space_for_a_waiting_put() -> None:
    """Dropping an interrupted turn's audio unblocks a producer waiting on a full queue."""

    async def scenario() -> None:
        queue = OutputQueue(2)
        queue.put_nowait(_audio("a", 1))
        queue.put_nowait(_audio("a", 2))
        interrupted = Interrupted("a", "")
        putting = asyncio.create_task(queue.put(interrupted, timeout=5))
        await _yield()
        assert not putting.done()
        queue.drop_audio("a")
        await putting
        queue.close()
        assert await _drain(queue) == [interrupted]

    run_async(scenario())


def test_close_wakes_a_waiting_getter_with_none() -> None:
    """A consumer waiting on an empty queue gets None when the queue is closed."""

    async def scenario() -> None:
        queue = OutputQueue(4)
        getting = asyncio.create_task(queue.get())
        await _yield()
        assert not getting.done()
        queue.close()
        assert await getting is None
        assert queue.closed

    run_async(scenario())


def test_close_keeps_queued_items_for_the_consumer_and_ignores_later_ones() -> None:
    """After close the consumer still gets what was queued, then None; puts after close are dropped."""

    async def scenario() -> None:
        queue = OutputQueue(4)
        queued = ReplyTextDelta("a", "kept")
        queue.put_nowait(queued)
        queue.close()
        queue.put_nowait(ReplyTextDelta("a", "late"))
        await queue.put(ReplyTextDelta("a", "later"), timeout=0.01)
        assert await _drain(queue) == [queued]
        assert await queue.get() is None

    run_async(scenario())


def test_close_releases_a_put_waiting_on_a_full_queue() -> None:
    """A producer blocked on a full queue returns without error when the queue closes (no SlowClientError)."""

    async def scenario() -> None:
        queue = OutputQueue(1)
        queue.put_nowait(_audio("a", 1))
        putting = asyncio.create_task(queue.put(_audio("a", 2), timeout=5))
        await _yield()
        assert not putting.done()
        queue.close()
        await putting
        assert len(queue) == 1

    run_async(scenario())


def test_wait_empty_returns_once_the_consumer_took_everything() -> None:
    """wait_empty() (flush) waits while items remain and returns when the last one is taken."""

    async def scenario() -> None:
        queue = OutputQueue(4)
        queue.put_nowait(_audio("a", 1))
        queue.put_nowait(_audio("a", 2))
        waiting = asyncio.create_task(queue.wait_empty())
        await _yield()
        assert not waiting.done()
        await queue.get()
        await _yield()
        assert not waiting.done()
        await queue.get()
        await waiting

    run_async(scenario())
