"""The bounded queue between a connection's turn pipeline and its sender.

Events and audio wait here in order; when a reply is interrupted its queued audio is dropped at once.
A full queue means the client stopped reading: ``put`` waits at most ``timeout`` and then raises, so a slow
reader costs bounded memory and is dropped within seconds.
"""

from __future__ import annotations

import asyncio
from collections import deque

from backend.core.exceptions import ClarityError
from backend.pipeline.events import PipelineEvent, ReplyAudioChunk


class SlowClientError(ClarityError):
    code = "slow_client"
    http_status = 408


class OutputQueue:
    """Single-consumer queue used only from the event loop (no locks needed, events wake the waiters)."""

    def __init__(self, maxsize: int) -> None:
        self._items: deque[PipelineEvent] = deque()
        self._maxsize = maxsize
        self._data = asyncio.Event()
        self._space = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._space.set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    async def put(self, item: PipelineEvent, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._closed and len(self._items) >= self._maxsize:
            self._space.clear()
            remaining = deadline - loop.time()
            try:
                await asyncio.wait_for(self._space.wait(), max(remaining, 0.0))
            except TimeoutError:
                raise SlowClientError("the client is not reading; its output queue is full") from None
        self.put_nowait(item)

    def put_nowait(self, item: PipelineEvent) -> None:
        """Append without waiting. Control events (errors, interrupted) use it: small and must arrive."""
        if self._closed:
            return
        self._items.append(item)
        self._data.set()
        self._empty.clear()

    async def get(self) -> PipelineEvent | None:
        """Next item, or None once the queue is closed and empty."""
        while not self._items:
            if self._closed:
                return None
            self._data.clear()
            await self._data.wait()
        item = self._items.popleft()
        self._after_removal()
        return item

    async def wait_empty(self) -> None:
        while self._items and not self._closed:
            self._empty.clear()
            await self._empty.wait()

    def drop_audio(self, turn_id: str) -> int:
        """Remove the queued audio of one turn; returns how many messages were dropped."""
        kept = deque(i for i in self._items if not (isinstance(i, ReplyAudioChunk) and i.turn_id == turn_id))
        dropped = len(self._items) - len(kept)
        self._items = kept
        self._after_removal()
        return dropped

    def close(self) -> None:
        self._closed = True
        for event in (self._data, self._space, self._empty):
            event.set()

    def _after_removal(self) -> None:
        if len(self._items) < self._maxsize:
            self._space.set()
        if not self._items:
            self._empty.set()
