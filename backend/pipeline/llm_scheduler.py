"""Who generates next when replies share the LLM: whoever would otherwise fall silent first.

With one generation at a time (``llm.max_concurrent``) and several people talking at once, a plain queue makes
the last of them wait for every earlier reply in full. Here every reply has a deadline, and the slots go to the
earliest deadlines (earliest deadline first):

- a reply waiting for its first words is due since it asked (the person is already waiting);
- a reply whose first words are spoken is due when its audio sent so far will have played out.

So a reply with audio still to play pauses between two tokens (its state kept) while another waits for its
first words, and goes on before its own audio runs out, or as soon as nothing earlier is due. A reply that
cannot pause (an engine without ``pausable``, sequential mode, ``pipeline.first_words_first: false``) keeps its
slot to the end; warming the next prompt (background) runs only when no reply waits.

A generation holds a ``Ticket``; engines that can pause call ``ticket.must_pause()`` and ``ticket.wait()`` between
tokens, in their own thread. Everything else happens on the event loop.
"""

from __future__ import annotations

import asyncio
import enum
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from prometheus_client import Gauge, Histogram

_POLL_S = 0.05  # how often a paused generation re-checks its stop event
# Until its first audio is measured, a reply's first chunk (2-3 words) is taken to play this long.
FIRST_CHUNK_GUESS_S = 0.8


class Priority(enum.IntEnum):
    REPLY = 0
    BACKGROUND = 1  # warming a prompt between turns: only when no reply waits


class Ticket:
    """One generation's place in the scheduler; the engine's thread pauses on it between tokens."""

    def __init__(self, stop: threading.Event, *, pausable: bool, priority: Priority, deadline: float) -> None:
        self.stop = stop
        self.pausable = pausable
        self.priority = priority
        self.deadline = deadline  # perf_counter time this generation is due (module docstring)
        self.first_words_out = False
        self.playing_until: float | None = None  # when the audio sent so far will have played out
        self.pauses = 0
        self._granted: asyncio.Future[None] | None = None  # set while it waits for a slot it never had
        self._may_run = threading.Event()
        self._may_run.set()

    @property
    def preemptible(self) -> bool:
        return self.pausable and self.first_words_out

    # --- the engine's side (its generation thread) ---------------------------------------------------

    def must_pause(self) -> bool:
        return not self._may_run.is_set()

    def wait(self) -> None:
        """Block until this generation may go on, or its stop event is set."""
        while not self._may_run.wait(_POLL_S):
            if self.stop.is_set():
                return


class LLMScheduler:
    """``slots`` generations at once, earliest deadline first (module docstring). Event-loop only."""

    def __init__(
        self,
        slots: int,
        waiting: Gauge,
        waited: Histogram,
        clock: Callable[[], float] = time.perf_counter,
        paused: Gauge | None = None,
    ) -> None:
        self.slots = max(1, slots)
        self._free = self.slots
        self._running: list[Ticket] = []
        self._waiting: list[Ticket] = []  # new generations and paused replies, waiting for a slot
        self._gauge = waiting
        self._histogram = waited
        self.clock = clock  # perf_counter; tests set their own
        self._paused_gauge = paused

    @property
    def paused(self) -> int:
        return sum(t.first_words_out for t in self._waiting)

    @property
    def running(self) -> int:
        """Generations holding a slot now."""
        return len(self._running)

    def holds_slot(self, ticket: Ticket) -> bool:
        return ticket in self._running

    @property
    def waiting(self) -> int:
        return sum(not t.first_words_out for t in self._waiting)

    @asynccontextmanager
    async def generation(
        self, stop: threading.Event, *, pausable: bool, priority: Priority = Priority.REPLY
    ) -> AsyncIterator[Ticket]:
        """Hold a slot for one generation; the ticket pauses it when ``pausable`` (module docstring)."""
        ticket = Ticket(stop, pausable=pausable, priority=priority, deadline=self.clock())
        await self._acquire(ticket)
        try:
            yield ticket
        finally:
            self._release(ticket)

    def first_words_out(self, ticket: Ticket) -> None:
        """The reply's first words went to speech: from now on it is due when its audio runs out."""
        if ticket.first_words_out:
            return
        ticket.first_words_out = True
        ticket.deadline = self.clock() + FIRST_CHUNK_GUESS_S
        self._balance()

    def audio_sent(self, ticket: Ticket, seconds: float) -> None:
        """``seconds`` more of the reply's audio went out: it is due that much later."""
        now = self.clock()
        ticket.playing_until = max(ticket.playing_until or now, now) + seconds
        ticket.deadline = ticket.playing_until
        self._balance()

    # --- internals -------------------------------------------------------------------------------------

    async def _acquire(self, ticket: Ticket) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ticket._granted = future
        self._waiting.append(ticket)
        self._balance()
        if future.done():
            self._histogram.observe(0.0)
            return
        started = time.perf_counter()
        self._gauge.inc()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # the slot came as we were cancelled: pass it on
                self._release(ticket)
            elif ticket in self._waiting:
                self._waiting.remove(ticket)
            raise
        finally:
            self._gauge.dec()
            self._histogram.observe(time.perf_counter() - started)

    def _release(self, ticket: Ticket) -> None:
        if ticket in self._waiting:  # ended while paused (stopped): it held no slot
            self._waiting.remove(ticket)
        if ticket in self._running:
            self._running.remove(ticket)
            self._free += 1
        ticket._may_run.set()  # never leave a thread waiting on a ticket nobody will resume
        self._balance()

    def _balance(self) -> None:
        """Give free slots to the earliest deadlines; pause a running reply (past its first words, able to
        pause) for a waiting generation that is due before it. Background work only when no reply waits."""
        self._assign()
        if self._paused_gauge is not None:
            self._paused_gauge.set(self.paused)

    def _assign(self) -> None:
        while self._waiting:
            replies = [t for t in self._waiting if t.priority is Priority.REPLY]
            best = min(replies or self._waiting, key=lambda t: t.deadline)
            if self._free > 0:
                self._start(best)
                continue
            preemptible = [t for t in self._running if t.preemptible]
            if best.priority is Priority.BACKGROUND or not preemptible:
                return
            latest = max(preemptible, key=lambda t: t.deadline)
            if latest.deadline <= best.deadline:
                return
            self._pause(latest)

    def _start(self, ticket: Ticket) -> None:
        self._waiting.remove(ticket)
        self._running.append(ticket)
        self._free -= 1
        if ticket._granted is not None and not ticket._granted.done():
            ticket._granted.set_result(None)
        ticket._granted = None
        ticket._may_run.set()

    def _pause(self, ticket: Ticket) -> None:
        self._running.remove(ticket)
        self._free += 1
        ticket.pauses += 1
        ticket._may_run.clear()
        self._waiting.append(ticket)
