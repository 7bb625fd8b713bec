"""Conversation driven with tone/silence PCM and read from its OutputQueue (as /ws/voice's sender does).

Covers speech events, a voice turn end to end, early start cancelled by resumed speech, barge-in, cancel,
commit and the disconnect path that stores unanswered speech.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from backend.core.exceptions import InvalidInputError
from backend.engines.protocols import ChatMessage, FloatAudio, GenerationOptions, Transcription
from backend.pipeline import events
from backend.pipeline.conversation import Conversation
from backend.pipeline.output_queue import OutputQueue
from backend.pipeline.session_binding import SessionContext, new_id
from backend.store.sessions import TurnRecord
from tests.fakes import FakeLLM, FakeModels, FakeSTT, silence_pcm, tone_pcm
from tests.pipeline.recording import Harness, RecordingOutput, control_labels, pipeline_harness, run_async

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

REPLY = "That sounds hard. You are not alone in this. What feels heaviest right now?"
TURN_LABELS = [
    "stage:processing",
    "stage:transcribing",
    "TranscriptFinal",
    "stage:detecting_emotion",
    "EmotionDetected",
    "stage:generating",
    "ReplyTextDelta",
    "ReplyTextDone",
    "TurnDone",
]
# Frame-aligned audio (30 ms frames): 0.3 s lead-in (= the pre-roll), 33 frames of tone, trailing silence.
LEAD_IN, SPEECH = silence_pcm(0.3), tone_pcm(0.99)


@dataclass
class ScriptedSTT(FakeSTT):
    """Returns ``script`` transcripts in order, then ``transcript``."""

    script: list[str] = field(default_factory=list)

    def transcribe(self, audio: FloatAudio) -> Transcription:
        result = super().transcribe(audio)
        if self.script:
            return Transcription(self.script.pop(0), result.language, result.audio_seconds)
        return result


@dataclass
class SignallingLLM(FakeLLM):
    """Sets ``started`` when a generation begins (in its worker thread)."""

    started: threading.Event = field(default_factory=threading.Event)

    def stream(
        self, messages: Sequence[ChatMessage], stop: threading.Event, options: GenerationOptions | None = None
    ) -> Iterator[str]:
        self.started.set()
        yield from super().stream(messages, stop)


class DropRecordingQueue(OutputQueue):
    """An OutputQueue that records how many items each drop_audio call removed."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self.dropped: list[int] = []

    def drop_audio(self, turn_id: str) -> int:
        count = super().drop_audio(turn_id)
        self.dropped.append(count)
        return count


class Client:
    """Reads the queue like voice_ws._sender: marks each item as sending, then records it. Can pause after an
    item matching ``pause_after`` (a client that stopped reading) until ``resume`` is set."""

    def __init__(self, conversation: Conversation, out: OutputQueue) -> None:
        self.conversation = conversation
        self.out = out
        self.received = RecordingOutput()
        self.pause_after: Callable[[events.PipelineEvent], bool] | None = None
        self.resume = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while (item := await self.out.get()) is not None:
            self.conversation.mark_sending(item)
            await self.received.emit(item)
            if self.pause_after is not None and self.pause_after(item):
                self.pause_after = None
                await self.resume.wait()


@dataclass
class Connection:
    conversation: Conversation
    out: DropRecordingQueue
    client: Client
    store_history: Callable[[], list[TurnRecord]]
    closed: bool = False

    async def close(self) -> None:
        """Disconnect as voice_ws does: close the conversation (stores what is unanswered), then the queue."""
        if not self.closed:
            self.closed = True
            await self.conversation.close()
        self.out.close()
        self.client.resume.set()
        await self.client.task

    def history(self) -> list[TurnRecord]:
        return self.store_history()

    @property
    def received(self) -> RecordingOutput:
        return self.client.received


@asynccontextmanager
async def connect(h: Harness) -> AsyncIterator[Connection]:
    """A Conversation built as backend/api/voice_ws.py builds one, with a reading client."""
    out = DropRecordingQueue(h.settings.pipeline.output_queue_max)
    conversation = Conversation(
        pipeline=h.pipeline,
        store=h.store,
        settings=h.settings,
        out=out,
        session=SessionContext(new_id()),
        output_sample_rate=h.models.tts.sample_rate,
    )
    conversation.start()

    def history() -> list[TurnRecord]:
        return h.store.sync.history(conversation.session.session_id)

    connection = Connection(conversation, out, Client(conversation, out), history)
    try:
        yield connection
    finally:
        await connection.close()


async def feed(conversation: Conversation, *parts: bytes, piece: int = 640) -> None:
    """Send audio as a client would: 20 ms binary messages."""
    for part in parts:
        for i in range(0, len(part), piece):
            await conversation.on_audio(part[i : i + piece])


def test_spoken_utterance_emits_speech_events_then_the_turn(tmp_path: Path) -> None:
    """Tone then silence: SpeechStarted, SpeechStopped, then the turn's events under the same id, and storage."""
    with pipeline_harness(tmp_path) as h:

        async def scenario() -> tuple[RecordingOutput, list[TurnRecord]]:
            async with connect(h) as c:
                await feed(c.conversation, LEAD_IN, SPEECH, silence_pcm(0.81))
                await c.received.wait_for_type(events.TurnDone)
                return c.received, c.history()

        received, stored = run_async(scenario())
        assert control_labels(received.events) == ["SpeechStarted", "SpeechStopped", *TURN_LABELS]
        started = received.of_type(events.SpeechStarted)[0]
        stopped = received.of_type(events.SpeechStopped)[0]
        done = received.of_type(events.TurnDone)[0]
        assert started.turn_id == stopped.turn_id == done.turn_id
        # pre-roll 0.3 s + 0.99 s of tone + 0.51 s hangover (17 frames of 30 ms)
        assert (stopped.duration_s, stopped.discarded) == (1.8, False)
        assert done.early_start is True  # run from the pause and confirmed: one transcription
        assert h.fakes.stt.calls == [1.44]  # the utterance at the 150 ms pause: 48 frames
        assert received.of_type(events.TranscriptFinal)[0].text == h.fakes.stt.transcript
        assert received.of_type(events.ReplyAudioDone)
        assert [(t.role, t.text, t.interrupted) for t in stored] == [
            ("user", h.fakes.stt.transcript, False),
            ("assistant", REPLY, False),
        ]
        assert stored[0].duration_s == 1.8


def test_sequential_mode_starts_nothing_before_the_end_of_speech(tmp_path: Path) -> None:
    """Sequential: no early start at the pause; one transcription of the whole utterance; text before audio."""
    with pipeline_harness(tmp_path, pipeline__mode="sequential") as h:

        async def scenario() -> RecordingOutput:
            async with connect(h) as c:
                await feed(c.conversation, LEAD_IN, SPEECH, silence_pcm(0.81))
                await c.received.wait_for_type(events.TurnDone)
                return c.received

        received = run_async(scenario())
        chunks = len(received.of_type(events.ReplyAudioChunk))
        assert chunks > 0
        assert received.labels() == [
            "SpeechStarted",
            "SpeechStopped",
            *TURN_LABELS[:6],
            "ReplyTextDone",
            "stage:synthesizing",
            "ReplyAudioStarted",
            *["ReplyAudioChunk"] * chunks,
            "ReplyAudioDone",
            "TurnDone",
        ]
        done = received.of_type(events.TurnDone)[0]
        assert (done.early_start, done.speculative_stt) == (False, False)
        assert h.fakes.stt.calls == [1.8]  # the whole utterance, after the hangover


def test_a_short_click_is_discarded_and_starts_no_turn(tmp_path: Path) -> None:
    """A burst under min_speech_ms gives SpeechStarted then SpeechStopped(discarded=True), and no turn."""
    with pipeline_harness(tmp_path) as h:

        async def scenario() -> RecordingOutput:
            async with connect(h) as c:
                await feed(c.conversation, LEAD_IN, tone_pcm(0.15), silence_pcm(0.6))
                await c.received.wait_for_type(events.SpeechStopped)
                assert not c.conversation.busy
                return c.received

        received = run_async(scenario())
        assert received.labels() == ["SpeechStarted", "SpeechStopped"]
        assert received.of_type(events.SpeechStopped)[0].discarded is True
        assert h.fakes.stt.calls == []


def test_text_turns_run_one_at_a_time_in_arrival_order(tmp_path: Path) -> None:
    """Two typed messages: the second turn's events all come after the first turn's TurnDone."""
    with pipeline_harness(tmp_path) as h:

        async def scenario() -> tuple[RecordingOutput, list[TurnRecord]]:
            async with connect(h) as c:
                await c.conversation.add_text("first")
                await c.conversation.add_text("second")
                first = await c.received.wait_for_type(events.TranscriptFinal, lambda e: e.text == "first")
                await c.received.wait_for_type(events.TurnDone, lambda e: e.turn_id != first.turn_id)
                return c.received, c.history()

        received, stored = run_async(scenario())
        done = received.of_type(events.TurnDone)
        assert len(done) == 2
        first_id, second_id = done[0].turn_id, done[1].turn_id
        first_end = received.index(lambda e: isinstance(e, events.TurnDone) and e.turn_id == first_id)
        second_start = received.index(lambda e: getattr(e, "turn_id", None) == second_id)
        assert first_end < second_start
        assert [(t.role, t.text) for t in stored] == [
            ("user", "first"),
            ("assistant", REPLY),
            ("user", "second"),
            ("assistant", REPLY),
        ]


def test_resumed_speech_cancels_the_early_turn_and_nothing_of_it_is_emitted_or_stored(tmp_path: Path) -> None:
    """A pause starts a provisional turn; speech resuming cancels it unseen; the full utterance is the turn."""
    fakes = FakeModels(stt=ScriptedSTT(script=["I feel"]), llm=SignallingLLM(hold_after=0))
    full = fakes.stt.transcript
    with pipeline_harness(tmp_path, fakes=fakes) as h:
        llm = fakes.llm
        assert isinstance(llm, SignallingLLM)

        async def scenario() -> tuple[RecordingOutput, list[TurnRecord]]:
            async with connect(h) as c:
                await feed(c.conversation, LEAD_IN, SPEECH, silence_pcm(0.3))  # a pause, not an end
                assert await asyncio.to_thread(llm.started.wait, 5), "the provisional turn did not reach the LLM"
                await feed(c.conversation, SPEECH)  # the user goes on
                assert await asyncio.to_thread(llm.stopped.wait, 5), "the provisional generation was not stopped"
                llm.release.set()
                await feed(c.conversation, silence_pcm(0.81))
                await c.received.wait_for_type(events.TurnDone)
                return c.received, c.history()

        received, stored = run_async(scenario())
        assert control_labels(received.events) == ["SpeechStarted", "SpeechStopped", *TURN_LABELS]
        assert [e.text for e in received.of_type(events.TranscriptFinal)] == [full]
        assert len(received.of_type(events.ReplyTextDone)) == 1
        assert len(fakes.stt.calls) == 2 and len(llm.prompts) == 2  # the early turn did run, unseen
        assert llm.prompts[0][-1].content == "I feel"
        assert [(t.role, t.text, t.interrupted) for t in stored] == [("user", full, False), ("assistant", REPLY, False)]


def test_barge_in_interrupts_the_reply_and_drops_its_queued_audio(tmp_path: Path) -> None:
    """Speech during a reply cancels it, drops its unsent audio, emits Interrupted with what was sent, stores it."""
    with pipeline_harness(tmp_path, pipeline__audio_chunk_ms=100) as h:
        h.fakes.llm.hold_after = 4  # "That sounds hard. You" and the LLM waits: chunk 0 is spoken, 3 x 100 ms

        async def scenario() -> tuple[RecordingOutput, list[int], list[TurnRecord]]:
            async with connect(h) as c:
                c.client.pause_after = lambda e: isinstance(e, events.ReplyAudioChunk)  # then stops reading
                await feed(c.conversation, LEAD_IN, SPEECH, silence_pcm(0.81))
                first_audio = await c.received.wait_for_type(events.ReplyAudioChunk)
                await feed(c.conversation, tone_pcm(0.42))  # 300 ms of voiced audio is a barge-in
                dropped = list(c.out.dropped)
                stored = c.history()
                c.client.resume.set()
                interrupted = await c.received.wait_for_type(events.Interrupted)
                assert interrupted.turn_id == first_audio.turn_id
                return c.received, dropped, stored

        received, dropped, stored = run_async(scenario())
        assert dropped == [2]  # the two 100 ms pieces of chunk 0 still queued when the user spoke
        after = received.events[received.index(lambda e: isinstance(e, events.ReplyAudioChunk)) + 1 :]
        assert [type(e).__name__ for e in after] == ["SpeechStarted", "Interrupted"]
        assert len(received.of_type(events.ReplyAudioChunk)) == 1
        interrupted = received.of_type(events.Interrupted)[0]
        assert interrupted.spoken_text == "That sounds hard."
        assert not received.of_type(events.TurnDone)
        assert [(t.role, t.text, t.interrupted) for t in stored] == [
            ("user", h.fakes.stt.transcript, False),
            ("assistant", "That sounds hard.", True),
        ]


def test_cancel_with_nothing_running_reports_nothing_to_cancel(tmp_path: Path) -> None:
    """cancel() with no reply in progress queues ErrorOccurred(nothing_to_cancel) and nothing else."""
    with pipeline_harness(tmp_path) as h:

        async def scenario() -> RecordingOutput:
            async with connect(h) as c:
                await c.conversation.cancel()
                await c.received.wait_for_type(events.ErrorOccurred)
                return c.received

        received = run_async(scenario())
        assert received.events == [events.ErrorOccurred("nothing_to_cancel", "there is no reply to cancel", False)]


def test_cancel_during_a_reply_interrupts_it(tmp_path: Path) -> None:
    """cancel() during a typed turn's reply emits Interrupted with the audio sent and stores it interrupted."""
    with pipeline_harness(tmp_path) as h:
        h.fakes.llm.hold_after = 4

        async def scenario() -> tuple[RecordingOutput, list[TurnRecord]]:
            async with connect(h) as c:
                await c.conversation.add_text("help me")
                await c.received.wait_for_type(events.ReplyAudioChunk)
                await c.conversation.cancel()
                await c.received.wait_for_type(events.Interrupted)
                assert not c.conversation.busy
                return c.received, c.history()

        received, stored = run_async(scenario())
        assert received.of_type(events.Interrupted)[0].spoken_text == "That sounds hard."
        assert not received.of_type(events.ErrorOccurred) and not received.of_type(events.TurnDone)
        assert [(t.role, t.text, t.interrupted) for t in stored] == [
            ("user", "help me", False),
            ("assistant", "That sounds hard.", True),
        ]


def test_commit_with_no_audio_raises_no_audio(tmp_path: Path) -> None:
    """commit() before any audio raises InvalidInputError(no_audio) and starts no turn."""
    with pipeline_harness(tmp_path) as h:

        async def scenario() -> None:
            async with connect(h) as c:
                with pytest.raises(InvalidInputError) as caught:
                    await c.conversation.commit()
                assert caught.value.code == "no_audio"
                assert not c.conversation.busy

        run_async(scenario())
        assert h.fakes.stt.calls == []


def test_commit_turns_the_audio_so_far_into_a_turn(tmp_path: Path) -> None:
    """Push-to-talk: commit() without trailing silence ends the utterance and runs the turn on all of it."""
    with pipeline_harness(tmp_path) as h:

        async def scenario() -> RecordingOutput:
            async with connect(h) as c:
                await feed(c.conversation, LEAD_IN, SPEECH)
                await c.conversation.commit()
                await c.received.wait_for_type(events.TurnDone)
                return c.received

        received = run_async(scenario())
        assert control_labels(received.events) == ["SpeechStarted", "SpeechStopped", *TURN_LABELS]
        assert received.of_type(events.SpeechStopped)[0].duration_s == 1.29
        assert h.fakes.stt.calls == [1.29]  # everything since the last turn: lead-in and tone


def test_close_stores_speech_in_progress_as_an_interrupted_user_turn(tmp_path: Path) -> None:
    """Disconnecting mid-utterance transcribes the speech so far and stores it as an interrupted user turn."""
    with pipeline_harness(tmp_path) as h:

        async def scenario() -> list[TurnRecord]:
            async with connect(h) as c:
                await feed(c.conversation, LEAD_IN, SPEECH)
                await c.close()
                return c.history()

        stored = run_async(scenario())
        assert [(t.role, t.text, t.interrupted) for t in stored] == [("user", h.fakes.stt.transcript, True)]
        assert stored[0].duration_s == 1.29  # pre-roll + tone
        assert h.fakes.stt.calls == [1.29]


def test_close_stores_the_partial_reply_and_the_queued_turn(tmp_path: Path) -> None:
    """Disconnecting during a reply stores it as sent (interrupted) and a queued typed turn as unanswered."""
    with pipeline_harness(tmp_path) as h:
        h.fakes.llm.hold_after = 4

        async def scenario() -> list[TurnRecord]:
            async with connect(h) as c:
                await c.conversation.add_text("first")
                await c.received.wait_for_type(events.ReplyAudioChunk)
                await c.conversation.add_text("second")
                await c.close()
                return c.history()

        stored = run_async(scenario())
        assert [(t.role, t.text, t.interrupted) for t in stored] == [
            ("user", "first", False),
            ("assistant", "That sounds hard.", True),
            ("user", "second", True),
        ]
