"""LLMScheduler: the first words of every waiting reply before the rest of any reply (event-loop logic, fake
tickets), and two replies through ReplySpeaker sharing one slot on the fake LLM."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge, Histogram

from backend.engines.protocols import ChatMessage, VoiceStyle
from backend.pipeline.llm_scheduler import LLMScheduler, Priority, Ticket
from backend.pipeline.reply_speaker import ReplySpeaker
from backend.pipeline.turn_types import TurnInput, TurnState
from tests.pipeline.recording import RecordingOutput, pipeline_harness, run_async

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _scheduler(slots: int = 1) -> tuple[LLMScheduler, Gauge, _Clock]:
    registry = CollectorRegistry()
    waiting, paused = Gauge("waiting", "w", registry=registry), Gauge("paused", "p", registry=registry)
    clock = _Clock()
    waited = Histogram("waited", "w", registry=registry)
    scheduler = LLMScheduler(slots, waiting, waited, clock, paused=paused)
    return scheduler, waiting, clock


class _Holder:
    """Holds a scheduler slot in a task until ``done`` is set; ``ticket`` once it has the slot."""

    def __init__(self, scheduler: LLMScheduler, *, pausable: bool = True, priority: Priority = Priority.REPLY) -> None:
        self.stop = threading.Event()
        self.got = asyncio.Event()
        self.done = asyncio.Event()
        self.ticket: Ticket | None = None
        self.scheduler = scheduler
        self.task = asyncio.ensure_future(self._hold(scheduler, pausable, priority))

    async def _hold(self, scheduler: LLMScheduler, pausable: bool, priority: Priority) -> None:
        async with scheduler.generation(self.stop, pausable=pausable, priority=priority) as ticket:
            self.ticket = ticket
            self.got.set()
            await self.done.wait()

    async def finish(self) -> None:
        self.done.set()
        await self.task

    @property
    def running(self) -> bool:
        return self.ticket is not None and self.scheduler.holds_slot(self.ticket) and not self.ticket.must_pause()


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_earliest_deadline_first_between_first_words_and_audio_running_out() -> None:
    """A reply waiting for its first words is due since it asked; one whose first words are out is due when its
    audio runs out. The slot goes to the earliest, pausing a reply with audio still to play."""

    async def scenario() -> None:
        scheduler, waiting, clock = _scheduler()
        a = _Holder(scheduler)
        await a.got.wait()
        clock.now = 0.1
        b = _Holder(scheduler)  # due at 0.1
        await _settle()
        assert not b.got.is_set() and waiting._value.get() == 1
        assert a.ticket is not None
        clock.now = 0.2
        scheduler.first_words_out(a.ticket)  # A due at 1.0: B first
        await b.got.wait()
        assert b.running and a.ticket.must_pause() and scheduler.paused == 1
        assert scheduler._paused_gauge is not None and scheduler._paused_gauge._value.get() == 1  # /metrics
        assert b.ticket is not None
        clock.now = 0.5
        scheduler.first_words_out(b.ticket)  # B due at 1.3, A at 1.0: A goes on
        assert a.running and b.ticket.must_pause()
        clock.now = 0.6
        scheduler.audio_sent(a.ticket, 3.0)  # A's audio plays until 3.6: B (1.3) first
        assert b.running and a.ticket.must_pause()
        await b.finish()
        assert a.running and scheduler.paused == 0 and a.ticket.pauses == 2
        assert scheduler._paused_gauge is not None and scheduler._paused_gauge._value.get() == 0
        await a.finish()

    run_async(scenario())


def test_a_new_reply_pauses_only_a_reply_whose_audio_is_still_playing() -> None:
    """B arrives while A's audio plays: A pauses. C arrives after A's audio ran out: A keeps the slot."""

    async def scenario() -> None:
        scheduler, _, clock = _scheduler()
        a = _Holder(scheduler)
        await a.got.wait()
        assert a.ticket is not None
        scheduler.first_words_out(a.ticket)
        scheduler.audio_sent(a.ticket, 2.0)  # due at 2.0
        assert a.running
        clock.now = 1.0
        b = _Holder(scheduler)
        await b.got.wait()
        assert a.ticket.must_pause()
        assert b.ticket is not None
        clock.now = 1.2
        scheduler.first_words_out(b.ticket)  # due at 2.0, as A: no swap on a tie
        assert b.running
        await b.finish()
        assert a.running
        clock.now = 5.0
        c = _Holder(scheduler)  # A has been silent since 2.0: it is due first
        await _settle()
        assert a.running and not c.got.is_set()
        await a.finish()
        await c.got.wait()
        await c.finish()

    run_async(scenario())


def test_work_that_cannot_pause_keeps_its_slot_and_background_work_waits_for_replies() -> None:
    """A non-pausable generation is never paused; warming (background) waits behind waiting and paused
    replies, then runs."""

    async def scenario() -> None:
        scheduler, _, clock = _scheduler()
        a = _Holder(scheduler, pausable=False)
        await a.got.wait()
        assert a.ticket is not None
        warm = _Holder(scheduler, priority=Priority.BACKGROUND)
        clock.now = 1.0
        b = _Holder(scheduler)
        scheduler.first_words_out(a.ticket)
        await _settle()
        assert a.running and not b.got.is_set() and not warm.got.is_set()
        await a.finish()
        await b.got.wait()
        assert b.ticket is not None
        scheduler.first_words_out(b.ticket)
        await _settle()
        assert b.running and not warm.got.is_set()  # background never pauses a reply
        await b.finish()
        await warm.got.wait()
        await warm.finish()

    run_async(scenario())


def test_cancelled_waiters_and_stopped_paused_replies_free_their_places() -> None:
    """A waiter cancelled before its turn leaves the queue; a paused reply that is stopped returns from wait()
    and, ending, frees no slot it does not hold; the slot count stays right for later replies."""

    async def scenario() -> None:
        scheduler, waiting, clock = _scheduler()
        a = _Holder(scheduler)
        await a.got.wait()
        gone = _Holder(scheduler)
        await _settle()
        gone.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gone.task
        assert waiting._value.get() == 0
        b = _Holder(scheduler)
        assert a.ticket is not None
        clock.now = 0.1
        scheduler.first_words_out(a.ticket)
        await b.got.wait()
        a.stop.set()
        waiter = threading.Thread(target=a.ticket.wait)
        waiter.start()
        waiter.join(10)
        assert not waiter.is_alive()
        await a.finish()  # ends while paused
        assert scheduler.paused == 0
        c = _Holder(scheduler)
        await _settle()
        assert not c.got.is_set()  # b still holds the only slot
        await b.finish()
        await c.got.wait()
        await c.finish()

    run_async(scenario())


def test_two_slots_run_two_first_words_at_once() -> None:
    """With two slots two replies generate at once, neither paused and none waiting; a third waits until one
    of them finishes (and then runs), not before."""

    async def scenario() -> None:
        scheduler, waiting, _ = _scheduler(2)
        a, b = _Holder(scheduler), _Holder(scheduler)
        await a.got.wait()
        await b.got.wait()
        assert a.running and b.running
        assert scheduler.waiting == 0 and waiting._value.get() == 0 and scheduler.paused == 0
        c = _Holder(scheduler)
        await _settle()
        assert not c.got.is_set() and scheduler.waiting == 1
        await a.finish()
        await c.got.wait()
        assert b.running and c.running and scheduler.waiting == 0
        await b.finish()
        await c.finish()

    run_async(scenario())


@contextlib.asynccontextmanager
async def _speaking(speaker: ReplySpeaker) -> AsyncIterator[asyncio.Future[str]]:
    task = asyncio.ensure_future(speaker.run())
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()


def _two_replies(tmp_path: Path, *, first_words_first: bool) -> list[tuple[str, int]]:
    """Reply A is held at its fourth word (its first chunk, "That sounds hard.", is out) when reply B starts;
    then A is released. Returns the order the fake LLM made their words in; both replies must be whole."""
    # One LLM slot (llm.max_concurrent 1): the scheduler decides who goes on.
    with pipeline_harness(tmp_path, pipeline__first_words_first=first_words_first, llm__max_concurrent=1) as h:
        llm = h.fakes.llm
        llm.hold_after = 4
        scheduler = h.pipeline.services.llm_scheduler
        scheduler.clock = lambda: 0.0  # B asks while A's first chunk (0.3 s of fake audio) plays

        def speaker(name: str) -> ReplySpeaker:
            turn = TurnInput(name, h.session_id, time.perf_counter(), text=name, speak=True)
            return ReplySpeaker(
                turn,
                RecordingOutput(),
                TurnState(name),
                [ChatMessage("user", name)],
                VoiceStyle(),
                h.models,
                h.pipeline.services.executors,
                scheduler,
                h.settings,
                {},
            )

        async def until(condition: Callable[[], bool]) -> None:
            while not condition():
                await asyncio.sleep(0.01)

        async def scenario() -> tuple[str, str]:
            async with _speaking(speaker("A")) as a:
                await until(lambda: ("A", 3) in llm.produced)
                async with _speaking(speaker("B")) as b:
                    if first_words_first:
                        await until(lambda: ("B", 3) in llm.produced)  # B's first words while A waits
                    else:
                        await until(lambda: scheduler.waiting == 1)  # B waits for the whole of A
                    llm.release.set()
                    return await a, await b

        assert run_async(scenario()) == (llm.reply, llm.reply)
        return list(llm.produced)


def test_a_second_reply_gets_its_first_words_before_the_first_reply_goes_on(tmp_path: Path) -> None:
    """Two replies share one LLM slot: B's first words come before A's rest."""
    order = _two_replies(tmp_path, first_words_first=True)
    a_rest = [n for n, item in enumerate(order) if item[0] == "A" and item[1] >= 4]
    assert order.index(("B", 3)) < min(a_rest), order


def test_without_first_words_first_replies_run_one_after_another(tmp_path: Path) -> None:
    """pipeline.first_words_first: false (round 1's way): B starts only once A is whole."""
    order = _two_replies(tmp_path, first_words_first=False)
    names = [name for name, _ in order]
    assert names == sorted(names), order
