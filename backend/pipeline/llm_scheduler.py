"""Who generates next: the first words of every waiting reply before the rest of any reply.

With one generation at a time (``llm.max_concurrent``) and several people talking at once, a plain queue makes
the last of them wait for every earlier reply in full. Here a reply that has sent its first words to speech
gives way: if another reply is waiting for its first words, the first one pauses between two tokens (its state
kept) and continues once no reply is waiting for first words. Its audio already playing covers the pause.

A generation holds a ``Ticket``; engines that can pause (``pausable``) call ``ticket.must_pause()`` and
``ticket.wait()`` between tokens, in their own thread. Everything else happens on the event loop. Work that
cannot pause (warming the next prompt, sequential replies, engines that cannot pause) takes a slot for its
whole length; warming takes it only when no reply is waiting.
"""

from __future__ import annotations

import asyncio
import enum
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import Gauge, Histogram

_POLL_S = 0.05  # how often a paused generation re-checks its stop event


class Priority(enum.IntEnum):
    FIRST_WORDS = 0  # a reply before its first words (may pause later, when ``pausable``)
    BACKGROUND = 1  # warming a prompt between turns: only when no reply waits


class Ticket:
    """One generation's place in the scheduler; the engine's thread pauses on it between tokens."""

    def __init__(self, stop: threading.Event, *, pausable: bool) -> None:
        self.stop = stop
        self.pausable = pausable
        self.first_words_out = False
        self.holds_slot = False
        self._may_run = threading.Event()
        self._may_run.set()
        self.pauses = 0

    # --- the engine's side (its generation thread) ---------------------------------------------------

    def must_pause(self) -> bool:
        return not self._may_run.is_set()

    def wait(self) -> None:
        """Block until this generation may go on, or its stop event is set."""
        while not self._may_run.wait(_POLL_S):
            if self.stop.is_set():
                return

    # --- the scheduler's side (event loop) -------------------------------------------------------------

    def _pause(self) -> None:
        self.pauses += 1
        self._may_run.clear()

    def _resume(self) -> None:
        self._may_run.set()


class LLMScheduler:
    """``slots`` generations at once; first words first (module docstring). Event-loop only."""

    def __init__(self, slots: int, waiting: Gauge, waited: Histogram) -> None:
        self.slots = max(1, slots)
        self._free = self.slots
        self._waiting: dict[Priority, deque[tuple[Ticket, asyncio.Future[None]]]] = {p: deque() for p in Priority}
        self._running_rest: list[Ticket] = []  # running, past their first words, pausable: may give way
        self._paused: deque[Ticket] = deque()  # gave way; continue in order when a slot frees
        self._gauge = waiting
        self._histogram = waited

    @property
    def paused(self) -> int:
        return len(self._paused)

    @property
    def waiting(self) -> int:
        return sum(len(queue) for queue in self._waiting.values())

    @asynccontextmanager
    async def generation(
        self, stop: threading.Event, *, pausable: bool, priority: Priority = Priority.FIRST_WORDS
    ) -> AsyncIterator[Ticket]:
        """Hold a slot for one generation; the ticket pauses it when ``pausable`` (module docstring)."""
        ticket = Ticket(stop, pausable=pausable)
        await self._acquire(ticket, priority)
        try:
            yield ticket
        finally:
            self._release(ticket)

    def first_words_out(self, ticket: Ticket) -> None:
        """The reply's first words went to speech: from now on it gives way to replies waiting for theirs."""
        if ticket.first_words_out:
            return
        ticket.first_words_out = True
        if not ticket.pausable or not ticket.holds_slot:
            return
        if self._waiting[Priority.FIRST_WORDS]:
            self._give_way(ticket)
        else:
            self._running_rest.append(ticket)

    # --- internals -------------------------------------------------------------------------------------

    async def _acquire(self, ticket: Ticket, priority: Priority) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[priority].append((ticket, future))
        self._dispatch()
        if not future.done() and priority is Priority.FIRST_WORDS and self._running_rest:
            self._give_way(self._running_rest.pop())  # the newest reply past its first words pauses
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
            else:
                self._waiting[priority].remove((ticket, future))
            raise
        finally:
            self._gauge.dec()
            self._histogram.observe(time.perf_counter() - started)

    def _take(self, ticket: Ticket) -> None:
        self._free -= 1
        ticket.holds_slot = True

    def _give_way(self, ticket: Ticket) -> None:
        """Pause a running reply past its first words and free its slot for a waiting one."""
        ticket._pause()
        ticket.holds_slot = False
        self._paused.append(ticket)
        self._free += 1
        self._dispatch()

    def _release(self, ticket: Ticket) -> None:
        if ticket in self._running_rest:
            self._running_rest.remove(ticket)
        if ticket in self._paused:  # ended while paused (stopped): it held no slot
            self._paused.remove(ticket)
        if ticket.holds_slot:
            ticket.holds_slot = False
            self._free += 1
        ticket._resume()  # never leave a thread waiting on a ticket nobody will resume
        self._dispatch()

    def _dispatch(self) -> None:
        """Hand free slots out: first words, then paused replies, then background work."""
        while self._free > 0:
            if self._waiting[Priority.FIRST_WORDS]:
                ticket, future = self._waiting[Priority.FIRST_WORDS].popleft()
                self._take(ticket)
                future.set_result(None)
            elif self._paused:
                ticket = self._paused.popleft()
                self._take(ticket)
                self._running_rest.append(ticket)
                ticket._resume()
            elif self._waiting[Priority.BACKGROUND]:
                ticket, future = self._waiting[Priority.BACKGROUND].popleft()
                self._take(ticket)
                future.set_result(None)
            else:
                return
