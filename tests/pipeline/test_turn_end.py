"""The turn-end model in a Conversation, with fakes: a confident "complete" confirms the end of speech after
vad.turn_end_hangover_ms, an "incomplete" or a model error keeps vad.hangover_ms, and a reading of a pause the
person talked on from changes nothing."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from backend.core.metrics import Metrics
from backend.pipeline import events
from backend.pipeline.conversation import Conversation
from tests.fakes import FakeLLM, FakeModels, silence_pcm, tone_pcm
from tests.pipeline.recording import pipeline_harness, run_async
from tests.pipeline.test_conversation import LEAD_IN, SPEECH, connect, feed

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]


@dataclass
class JudgingLLM(FakeLLM):
    """A fake LLM that also reads whether a turn is finished: ``readings`` in order (an Exception is raised)."""

    readings: list[float | Exception] = field(default_factory=list)
    judged: list[str] = field(default_factory=list)
    judged_event: threading.Event = field(default_factory=threading.Event)

    hold: threading.Event | None = None  # when given, a reading waits for it (a slow model)

    def end_of_turn_probability(self, text: str) -> float:
        self.judged.append(text)
        self.judged_event.set()
        if self.hold is not None:
            self.hold.wait(10)
        reading = self.readings.pop(0)
        if isinstance(reading, Exception):
            raise reading
        return reading


async def _judged(llm: JudgingLLM, count: int, metrics: Metrics) -> None:
    """Wait until the model has read ``count`` pauses (in a thread) and the conversation has acted on every
    reading (each is counted in /metrics once acted on; the loop only yields, it never sleeps on a timer)."""

    def wait() -> None:
        while len(llm.judged) < count:
            llm.judged_event.wait(5)
            llm.judged_event.clear()

    await asyncio.to_thread(wait)
    for _ in range(100_000):
        if sum(_counted(metrics).values()) >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError("the conversation never acted on the turn-end reading")


def _counted(metrics: Metrics) -> dict[str, float]:
    """Turn-end readings counted in /metrics, by outcome."""
    return {
        o: metrics.registry.get_sample_value("claritymentor_turn_end_readings_total", {"outcome": o}) or 0.0
        for o in ("complete", "unsure", "error")
    }


def _stopped_after(
    tmp_path: Path, readings: list[float | Exception], *parts: bytes, tail: bytes
) -> tuple[float, JudgingLLM, dict[str, float]]:
    """Feed ``parts`` (ending in a pause), wait for the model's reading(s), feed ``tail``; returns the stopped
    utterance's length (pre-roll + speech + the silence that ended it), the fake and the readings counted in
    /metrics by outcome."""
    llm = JudgingLLM(readings=list(readings))
    with pipeline_harness(tmp_path, FakeModels(llm=llm)) as h:

        async def scenario() -> float:
            async with connect(h) as c:
                conversation: Conversation = c.conversation
                await feed(conversation, *parts)
                await _judged(llm, len(readings), h.pipeline.metrics)
                await feed(conversation, tail)
                await c.received.wait_for_type(events.TurnDone)
                return c.received.of_type(events.SpeechStopped)[0].duration_s

        return run_async(scenario()), llm, _counted(h.pipeline.metrics)


def test_a_confident_complete_ends_the_turn_after_the_shorter_hangover(tmp_path: Path) -> None:
    # 0.3 s of silence: the reading arrives after it, so the turn ends at once (300 ms turn_end_hangover_ms).
    duration, llm, counted = _stopped_after(tmp_path, [0.9], LEAD_IN, SPEECH, silence_pcm(0.3), tail=silence_pcm(0.3))
    assert duration == pytest.approx(0.3 + 0.99 + 0.3)
    assert llm.judged == [FakeModels().stt.transcript]  # the early start's transcript
    assert counted == {"complete": 1.0, "unsure": 0.0, "error": 0.0}


@pytest.mark.parametrize("reading", [0.05, RuntimeError("turn-end model failed")])
def test_an_incomplete_reading_or_a_model_error_keeps_the_hangover(tmp_path: Path, reading: float | Exception) -> None:
    duration, _, counted = _stopped_after(
        tmp_path, [reading], LEAD_IN, SPEECH, silence_pcm(0.3), tail=silence_pcm(0.51)
    )
    assert duration == pytest.approx(0.3 + 0.99 + 0.51)  # 17 frames of 30 ms: vad.hangover_ms
    assert counted["error" if isinstance(reading, Exception) else "unsure"] == 1.0


def test_a_reading_of_a_pause_the_person_talked_on_from_is_forgotten(tmp_path: Path) -> None:
    # First pause read as complete but the person goes on before 300 ms; the second pause reads incomplete.
    parts = (LEAD_IN, SPEECH, silence_pcm(0.24))
    llm = JudgingLLM(readings=[0.9, 0.01])
    with pipeline_harness(tmp_path, FakeModels(llm=llm)) as h:

        async def scenario() -> float:
            async with connect(h) as c:
                await feed(c.conversation, *parts)
                await _judged(llm, 1, h.pipeline.metrics)
                await feed(c.conversation, tone_pcm(0.99), silence_pcm(0.3))
                await _judged(llm, 2, h.pipeline.metrics)
                await feed(c.conversation, silence_pcm(0.51))
                await c.received.wait_for_type(events.TurnDone)
                return c.received.of_type(events.SpeechStopped)[0].duration_s

        duration = run_async(scenario())
    assert duration == pytest.approx(0.3 + 0.99 + 0.24 + 0.99 + 0.51)


def test_turn_end_off_never_asks_the_model(tmp_path: Path) -> None:
    llm = JudgingLLM(readings=[0.9])
    with pipeline_harness(tmp_path, FakeModels(llm=llm), vad__turn_end_threshold=None) as h:

        async def scenario() -> float:
            async with connect(h) as c:
                await feed(c.conversation, LEAD_IN, SPEECH, silence_pcm(0.81))
                await c.received.wait_for_type(events.TurnDone)
                return c.received.of_type(events.SpeechStopped)[0].duration_s

        assert run_async(scenario()) == pytest.approx(0.3 + 0.99 + 0.51)
    assert llm.judged == []


def test_a_confirmed_turn_does_not_wait_for_its_reading(tmp_path: Path) -> None:
    """A slow model (queued behind other turns): the hangover confirms the turn first, and the turn goes on and
    completes without its reading, which finishes later, unused."""
    llm = JudgingLLM(readings=[0.9], hold=threading.Event())
    with pipeline_harness(tmp_path, FakeModels(llm=llm)) as h:

        async def scenario() -> float:
            async with connect(h) as c:
                await feed(c.conversation, LEAD_IN, SPEECH, silence_pcm(0.3))
                await asyncio.to_thread(llm.judged_event.wait, 5)  # the reading has started, and waits
                await feed(c.conversation, silence_pcm(0.51))
                done = await c.received.wait_for_type(events.TurnDone)  # with the reading still held
                stopped = c.received.of_type(events.SpeechStopped)[0]
                assert done.turn_id == stopped.turn_id
                assert not c.received.of_type(events.ErrorOccurred)
                assert llm.readings == [0.9]  # not read yet
                assert llm.hold is not None
                llm.hold.set()  # the late reading changes nothing
                return stopped.duration_s

        try:
            assert run_async(scenario()) == pytest.approx(0.3 + 0.99 + 0.51)  # the full hangover
        finally:
            assert llm.hold is not None
            llm.hold.set()
