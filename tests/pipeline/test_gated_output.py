"""GatedOutput: a provisional turn's events are held until open(), then released in order."""

from __future__ import annotations

import asyncio

import pytest

from backend.pipeline.events import PipelineEvent, ReplyTextDelta, StageStarted, TurnDone
from backend.pipeline.gated_output import GatedOutput
from tests.pipeline.recording import RecordingOutput, run_async

pytestmark = [pytest.mark.fast, pytest.mark.timeout(30)]


def _deltas(*texts: str) -> list[PipelineEvent]:
    return [ReplyTextDelta("t1", text) for text in texts]


def test_events_are_held_until_open_then_released_in_order() -> None:
    """Nothing reaches the target before open(); open() sends the held events in order; later ones pass through."""

    async def scenario() -> None:
        target = RecordingOutput()
        gate = GatedOutput(target)
        held = [StageStarted("t1", "processing"), *_deltas("a", "b", "c")]
        for event in held:
            await gate.emit(event)
        assert target.events == []
        assert not gate.opened.is_set()

        await gate.open()
        assert gate.opened.is_set()
        assert target.events == held

        done = TurnDone("t1", {})
        await gate.emit(done)
        assert target.events == [*held, done]

    run_async(scenario())


def test_open_with_nothing_held_just_passes_through() -> None:
    """A gate opened before any event forwards each event at once."""

    async def scenario() -> None:
        target = RecordingOutput()
        gate = GatedOutput(target)
        await gate.open()
        await gate.emit(ReplyTextDelta("t1", "x"))
        assert target.events == _deltas("x")

    run_async(scenario())


def test_flush_waits_for_open() -> None:
    """flush() does not return (nor flush the target) until the gate is opened."""

    async def scenario() -> None:
        target = RecordingOutput()
        gate = GatedOutput(target)
        flushing = asyncio.create_task(gate.flush())
        for _ in range(10):
            await asyncio.sleep(0)
        assert not flushing.done()
        assert target.flushes == 0

        await gate.open()
        await flushing
        assert target.flushes == 1

    run_async(scenario())


class _SlowTarget(RecordingOutput):
    """Blocks inside its first emit until ``proceed`` is set (a full output queue, say)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.proceed = asyncio.Event()

    async def emit(self, event: PipelineEvent) -> None:
        if not self.entered.is_set():
            self.entered.set()
            await self.proceed.wait()
        await super().emit(event)


def test_an_emit_racing_with_open_comes_after_every_held_event() -> None:
    """While open() is still releasing held events, a new emit waits for it: order is kept."""

    async def scenario() -> None:
        target = _SlowTarget()
        gate = GatedOutput(target)
        for event in _deltas("a", "b"):
            await gate.emit(event)
        opening = asyncio.create_task(gate.open())
        await target.entered.wait()  # open() is stuck sending "a"
        late = asyncio.create_task(gate.emit(ReplyTextDelta("t1", "late")))
        for _ in range(10):
            await asyncio.sleep(0)
        assert not late.done()
        target.proceed.set()
        await asyncio.gather(opening, late)
        assert target.events == _deltas("a", "b", "late")

    run_async(scenario())
