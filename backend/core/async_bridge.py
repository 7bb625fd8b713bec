"""Run blocking calls and blocking generators in worker threads without blocking the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class _Item(Generic[T]):
    value: T


@dataclass(frozen=True)
class _Done:
    error: BaseException | None = None


async def run_blocking(executor: Executor | None, fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in ``executor`` (the loop's default pool when None)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, fn, *args)


async def iterate_in_thread(
    executor: Executor | None,
    make_iter: Callable[[], Iterator[T]],
    stop: threading.Event,
) -> AsyncGenerator[T, None]:
    """Iterate a blocking iterator inside a worker thread, yielding its items on the event loop.

    ``stop`` is set when the consumer stops early (break, cancellation) so the producer can end; the worker
    closes the iterator when it sees it.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[_Item[T] | _Done] = asyncio.Queue()

    def put(msg: _Item[T] | _Done) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, msg)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            stop.set()

    def work() -> None:
        iterator: Iterator[T] | None = None
        try:
            iterator = make_iter()
            for value in iterator:
                if stop.is_set():
                    break
                put(_Item(value))
            put(_Done())
        except BaseException as exc:  # surfaced to the consumer
            put(_Done(exc))
        finally:
            close = getattr(iterator, "close", None) if iterator is not None else None
            if close is not None:
                close()

    future = loop.run_in_executor(executor, work)
    try:
        while True:
            msg = await queue.get()
            if isinstance(msg, _Done):
                if msg.error is not None:
                    raise msg.error
                return
            yield msg.value
    finally:
        stop.set()
        if not future.done():
            # Let the worker finish in the background; it ends soon because stop is set.
            future.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)
