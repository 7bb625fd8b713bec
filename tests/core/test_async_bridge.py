"""run_blocking and iterate_in_thread: work runs in worker threads; order, errors and early stops reach across."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar, cast

import pytest

from backend.core.async_bridge import iterate_in_thread, run_blocking

pytestmark = [pytest.mark.fast, pytest.mark.timeout(30)]

T = TypeVar("T")
HANG_GUARD_S = 5.0


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, HANG_GUARD_S))


class Producer:
    """A blocking generator: yields ``items``, then (if ``then_wait``) blocks until ``stop`` is set, like an LLM
    waiting on its next token; records its thread and whether it was closed."""

    def __init__(self, items: list[int], stop: threading.Event, *, then_wait: bool = False) -> None:
        self.items = items
        self.stop = stop
        self.then_wait = then_wait
        self.thread: int | None = None
        self.closed = threading.Event()

    def __call__(self) -> Iterator[int]:
        return self._generate()

    def _generate(self) -> Iterator[int]:
        self.thread = threading.get_ident()
        try:
            yield from self.items
            if self.then_wait:
                self.stop.wait(HANG_GUARD_S)
                yield -1  # one more item after stop: the worker must not pass it on
        finally:
            self.closed.set()


def test_run_blocking_runs_off_the_loop_thread() -> None:
    """run_blocking calls fn(*args) in the given executor's thread (or the default pool) and returns its value."""

    async def scenario() -> tuple[int, tuple[int, str], tuple[int, str]]:
        loop_thread = threading.get_ident()

        def where(tag: str) -> tuple[int, str]:
            return threading.get_ident(), f"{tag}:{threading.current_thread().name}"

        with ThreadPoolExecutor(1, thread_name_prefix="bridge-test") as pool:
            in_pool = await run_blocking(pool, where, "pool")
        in_default = await run_blocking(None, where, "default")
        return loop_thread, in_pool, in_default

    loop_thread, (pool_thread, pool_name), (default_thread, default_name) = run(scenario())
    assert pool_thread != loop_thread and default_thread != loop_thread
    assert pool_name.startswith("pool:bridge-test")
    assert default_name.startswith("default:")


def test_run_blocking_propagates_the_exception() -> None:
    """An exception raised by fn is raised to the awaiting coroutine."""

    def fail() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        run(run_blocking(None, fail))


def test_iterate_in_thread_yields_items_in_order_from_a_worker_thread() -> None:
    """Every item arrives, in order, produced in a thread other than the loop's; stop is set at the end."""
    stop = threading.Event()
    producer = Producer(list(range(50)), stop)

    async def scenario() -> tuple[list[int], int]:
        return [item async for item in iterate_in_thread(None, producer, stop)], threading.get_ident()

    items, loop_thread = run(scenario())
    assert items == list(range(50))
    assert producer.thread is not None and producer.thread != loop_thread
    assert producer.closed.wait(HANG_GUARD_S)
    assert stop.is_set()


def test_iterate_in_thread_propagates_an_exception_from_the_producer() -> None:
    """Items before the failure arrive, then the producer's exception is raised to the consumer."""
    stop = threading.Event()

    def failing() -> Iterator[str]:
        yield "a"
        yield "b"
        raise ValueError("producer broke")

    async def scenario() -> list[str]:
        got: list[str] = []
        with pytest.raises(ValueError, match="producer broke"):
            async for item in iterate_in_thread(None, failing, stop):
                got.append(item)
        return got

    assert run(scenario()) == ["a", "b"]


class RecordingPool(ThreadPoolExecutor):
    """A one-thread pool that keeps the futures of what was submitted to it."""

    def __init__(self) -> None:
        super().__init__(1)
        self.futures: list[Future[Any]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = super().submit(fn, *args, **kwargs)
        self.futures.append(future)
        return future


def test_iterate_in_thread_propagates_an_exception_from_make_iter() -> None:
    """If make_iter itself raises (a stream() that validates before returning a generator), the consumer gets it."""
    stop = threading.Event()

    def make_iter() -> Iterator[str]:
        raise ValueError("could not start")

    async def scenario() -> None:
        with RecordingPool() as pool:

            async def first_item() -> str:
                return await anext(iterate_in_thread(pool, make_iter, stop))

            consumer = asyncio.create_task(first_item())
            while not pool.futures:  # until the worker was submitted
                await asyncio.sleep(0)
            # The worker has ended; whatever it put on the queue was scheduled before this wakes us.
            await asyncio.gather(asyncio.wrap_future(pool.futures[0]), return_exceptions=True)
            for _ in range(10):
                await asyncio.sleep(0)
            finished = consumer.done()
            consumer.cancel()
            with contextlib.suppress(BaseException):
                await consumer
            assert finished, "the consumer is still waiting after the worker ended"
            with pytest.raises(ValueError, match="could not start"):
                consumer.result()

    run(scenario())


def test_closing_the_iteration_early_sets_stop_and_closes_the_producer() -> None:
    """Leaving an aclosing() block after a break sets stop at once; the worker then closes the iterator."""
    stop = threading.Event()
    producer = Producer([1, 2, 3], stop, then_wait=True)

    async def scenario() -> list[int]:
        got: list[int] = []
        # iterate_in_thread is annotated AsyncIterator, but it is an async generator (it has aclose).
        stream = cast(AsyncGenerator[int, None], iterate_in_thread(None, producer, stop))
        async with contextlib.aclosing(stream) as items:
            async for item in items:
                got.append(item)
                if item == 2:
                    break
        assert stop.is_set()
        assert await asyncio.to_thread(producer.closed.wait, HANG_GUARD_S), "the producer was never closed"
        return got

    assert run(scenario()) == [1, 2]


def test_a_plain_break_also_stops_the_producer() -> None:
    """A bare `break` (no aclosing) still sets stop once the abandoned async generator is finalized."""
    stop = threading.Event()
    producer = Producer([1, 2, 3], stop, then_wait=True)

    async def scenario() -> list[int]:
        got: list[int] = []
        async for item in iterate_in_thread(None, producer, stop):
            got.append(item)
            break
        assert await asyncio.to_thread(stop.wait, HANG_GUARD_S), "stop was never set"
        assert await asyncio.to_thread(producer.closed.wait, HANG_GUARD_S), "the producer was never closed"
        return got

    assert run(scenario()) == [1]


def test_cancelling_the_consumer_sets_stop_and_closes_the_producer() -> None:
    """Cancelling a consumer waiting on the next item sets stop; the blocked producer ends and is closed."""
    stop = threading.Event()
    producer = Producer([7], stop, then_wait=True)

    async def scenario() -> list[int]:
        got: list[int] = []
        first = asyncio.Event()

        async def consume() -> None:
            async for item in iterate_in_thread(None, producer, stop):
                got.append(item)
                first.set()

        task = asyncio.create_task(consume())
        await first.wait()  # the producer is now blocked, waiting for stop
        assert not stop.is_set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert stop.is_set()
        assert await asyncio.to_thread(producer.closed.wait, HANG_GUARD_S), "the producer was never closed"
        return got

    assert run(scenario()) == [7]
