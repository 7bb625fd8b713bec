"""Helpers for unit tests of the orchestration core: a recording TurnOutput and a pipeline over fakes.

``RecordingOutput`` keeps every event a turn emits, in order, and lets a test await the first event that
matches a predicate (an asyncio.Event wakes the waiter; the timeout is only a hang guard). ``pipeline_harness``
builds a TurnPipeline the way backend/main.py's lifespan does, over the fakes of tests/fakes.py and a private
SQLite store holding one session, and closes both afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from backend.config import Settings
from backend.core.metrics import Metrics
from backend.engines.model_service import ModelService
from backend.main import open_store
from backend.pipeline.events import PipelineEvent, StageStarted
from backend.pipeline.turn_pipeline import TurnPipeline
from backend.store.async_store import AsyncSessionStore
from backend.store.sessions import TurnRecord
from tests.conftest import make_settings
from tests.fakes import FakeModels

T = TypeVar("T")
E = TypeVar("E")

HANG_GUARD_S = 10.0  # only reached when something is broken: every wait in these tests is on an event


def run_async(coro: Coroutine[Any, Any, T], timeout: float = HANG_GUARD_S) -> T:
    """Run ``coro`` in a fresh event loop, failing (instead of hanging) after ``timeout`` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def label(event: PipelineEvent) -> str:
    """A short name for an event: its class name, or ``stage:<name>`` for StageStarted."""
    if isinstance(event, StageStarted):
        return f"stage:{event.stage}"
    return type(event).__name__


AUDIO_LABELS = frozenset({"stage:synthesizing", "ReplyAudioStarted", "ReplyAudioChunk", "ReplyAudioDone"})


def control_labels(events: list[PipelineEvent]) -> list[str]:
    """Labels of the non-audio events (audio interleaves with text in streaming), each run of ReplyTextDelta
    collapsed into one."""
    labels: list[str] = []
    for name in map(label, events):
        if name in AUDIO_LABELS or (name == "ReplyTextDelta" and labels and labels[-1] == name):
            continue
        labels.append(name)
    return labels


class RecordingOutput:
    """A TurnOutput that records every emitted event in order (and counts flushes)."""

    def __init__(self) -> None:
        self.events: list[PipelineEvent] = []
        self.flushes = 0
        self._changed = asyncio.Event()

    async def emit(self, event: PipelineEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def flush(self) -> None:
        self.flushes += 1

    def labels(self) -> list[str]:
        return [label(e) for e in self.events]

    def of_type(self, cls: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, cls)]

    def index(self, predicate: Callable[[PipelineEvent], bool]) -> int:
        """Position of the first event matching ``predicate`` (ValueError if none)."""
        for i, event in enumerate(self.events):
            if predicate(event):
                return i
        raise ValueError("no recorded event matches")

    async def wait_for(
        self, predicate: Callable[[PipelineEvent], bool], timeout: float = HANG_GUARD_S
    ) -> PipelineEvent:
        """The first recorded event (already recorded or still to come) that matches ``predicate``."""

        async def scan() -> PipelineEvent:
            seen = 0
            while True:
                for event in self.events[seen:]:
                    if predicate(event):
                        return event
                seen = len(self.events)
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(scan(), timeout)

    async def wait_for_type(
        self, cls: type[E], where: Callable[[E], bool] | None = None, timeout: float = HANG_GUARD_S
    ) -> E:
        """The first recorded event of type ``cls`` (and matching ``where``, if given)."""
        event = await self.wait_for(lambda e: isinstance(e, cls) and (where is None or where(e)), timeout)
        assert isinstance(event, cls)
        return event


@dataclass
class Harness:
    settings: Settings
    fakes: FakeModels
    models: ModelService
    store: AsyncSessionStore
    pipeline: TurnPipeline
    session_id: str

    def history(self, session_id: str | None = None) -> list[TurnRecord]:
        """The stored turns of the harness's session (or ``session_id``), oldest first."""
        return self.store.sync.history(session_id or self.session_id)


@contextmanager
def pipeline_harness(tmp_path: Path, fakes: FakeModels | None = None, **overrides: object) -> Iterator[Harness]:
    """A TurnPipeline over fakes (``section__key=value`` overrides the settings) and a store with one session."""
    settings = make_settings(tmp_path, **overrides)
    fakes = fakes if fakes is not None else FakeModels()
    models = fakes.service(settings)
    store = open_store(settings)
    session_id = store.sync.create_session().id
    pipeline = TurnPipeline(models, store, settings, Metrics())
    try:
        yield Harness(settings, fakes, models, store, pipeline, session_id)
    finally:
        fakes.llm.release.set()  # a generation a test left held must not keep its worker thread alive
        pipeline.close()
        store.close()
