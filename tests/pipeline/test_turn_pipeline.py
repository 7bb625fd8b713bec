"""TurnPipeline driven directly with fakes and a recording output: stage order, storage, errors, cancel, limits."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from backend.core.exceptions import BusyError
from backend.engines.protocols import Transcription
from backend.pipeline.events import (
    EmotionDetected,
    PipelineEvent,
    ReplyAudioChunk,
    ReplyAudioDone,
    ReplyTextDelta,
    ReplyTextDone,
    StageStarted,
    TranscriptFinal,
    TurnDone,
)
from backend.pipeline.turn_types import NoSpeechError, TurnInput, TurnState
from tests.fakes import RATE, tone_pcm
from tests.pipeline.recording import (
    AUDIO_LABELS,
    Harness,
    RecordingOutput,
    control_labels,
    pipeline_harness,
    run_async,
)

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

REPLY = "That sounds hard. You are not alone in this. What feels heaviest right now?"


def _text_turn(h: Harness, text: str = "I feel stuck at work", turn_id: str = "t1") -> TurnInput:
    return TurnInput(turn_id, h.session_id, time.perf_counter(), text=text)


def _voice_turn(h: Harness, seconds: float = 1.0, turn_id: str = "v1") -> TurnInput:
    return TurnInput(turn_id, h.session_id, time.perf_counter(), audio=tone_pcm(seconds), duration_s=seconds)


def _assert_audio_block(out: RecordingOutput) -> None:
    """Audio comes after `generating`, in the order synthesizing -> started -> chunks -> done, before TurnDone."""
    audio = [name for name in out.labels() if name in AUDIO_LABELS]
    chunks = len(out.of_type(ReplyAudioChunk))
    assert chunks > 0
    assert audio == ["stage:synthesizing", "ReplyAudioStarted"] + ["ReplyAudioChunk"] * chunks + ["ReplyAudioDone"]
    generating = out.index(lambda e: isinstance(e, StageStarted) and e.stage == "generating")
    synthesizing = out.index(lambda e: isinstance(e, StageStarted) and e.stage == "synthesizing")
    assert generating < synthesizing
    assert out.index(lambda e: isinstance(e, ReplyAudioDone)) < out.index(lambda e: isinstance(e, TurnDone))


def test_text_turn_emits_stages_in_order_and_stores_both_turns(tmp_path: Path) -> None:
    """A typed turn goes processing -> transcript -> emotion -> generating -> deltas -> reply -> done, and is stored."""
    with pipeline_harness(tmp_path) as h:
        out = RecordingOutput()
        result = run_async(h.pipeline.run(_text_turn(h), out, TurnState("t1")))

        assert control_labels(out.events) == [
            "stage:processing",
            "TranscriptFinal",
            "stage:detecting_emotion",
            "EmotionDetected",
            "stage:generating",
            "ReplyTextDelta",
            "ReplyTextDone",
            "TurnDone",
        ]
        _assert_audio_block(out)
        assert all(getattr(e, "turn_id", "t1") == "t1" for e in out.events)
        assert out.of_type(TranscriptFinal)[0].text == "I feel stuck at work"
        assert "".join(d.text for d in out.of_type(ReplyTextDelta)) == REPLY
        assert out.of_type(ReplyTextDone)[0].text == REPLY
        assert out.flushes == 1
        assert result.transcript == "I feel stuck at work" and result.reply == REPLY
        assert result.emotion.label == "sad"
        assert {"first_token", "response", "first_audio", "turn_total_s"} <= result.timings.keys()
        assert h.fakes.stt.calls == []  # a typed turn is never transcribed
        assert h.fakes.emotion.calls == [("I feel stuck at work", False)]

        user, assistant = h.history()
        assert (user.role, user.text, user.interrupted) == ("user", "I feel stuck at work", False)
        assert user.emotion is not None and user.emotion["label"] == "sad"
        assert (assistant.role, assistant.text, assistant.interrupted) == ("assistant", REPLY, False)
        assert assistant.timings is not None and "first_audio" in assistant.timings


def test_voice_turn_transcribes_then_runs_the_same_stages(tmp_path: Path) -> None:
    """A spoken turn adds `transcribing`, passes the audio to STT and emotion, and stores the transcript."""
    with pipeline_harness(tmp_path) as h:
        out = RecordingOutput()
        result = run_async(h.pipeline.run(_voice_turn(h, 1.0), out, TurnState("v1")))

        assert control_labels(out.events) == [
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
        _assert_audio_block(out)
        transcript = h.fakes.stt.transcript
        assert out.of_type(TranscriptFinal)[0].text == transcript
        assert out.of_type(EmotionDetected)[0].emotion.label == "sad"
        assert h.fakes.stt.calls == [1.0]
        assert h.fakes.emotion.calls == [(transcript, True)]
        done = out.of_type(TurnDone)[0]
        assert done.speculative_stt is False and done.early_start is False
        assert "transcript" in result.timings and "stt_s" in result.timings

        user, assistant = h.history()
        assert (user.role, user.text, user.duration_s) == ("user", transcript, 1.0)
        assert (assistant.role, assistant.text, assistant.interrupted) == ("assistant", REPLY, False)


def test_speculative_transcript_is_used_instead_of_transcribing(tmp_path: Path) -> None:
    """A turn given a transcript future (speculative STT) awaits it and never calls STT itself."""
    with pipeline_harness(tmp_path) as h:

        async def scenario() -> RecordingOutput:
            turn = _voice_turn(h)
            future: asyncio.Future[Transcription] = asyncio.get_running_loop().create_future()
            future.set_result(Transcription("hello from the pause", "en", 1.0))
            turn.transcript = future
            out = RecordingOutput()
            await h.pipeline.run(turn, out, TurnState(turn.turn_id))
            return out

        out = run_async(scenario())
        assert h.fakes.stt.calls == []
        assert out.of_type(TranscriptFinal)[0].text == "hello from the pause"
        assert out.of_type(TurnDone)[0].speculative_stt is True
        assert h.history()[0].text == "hello from the pause"


@pytest.mark.parametrize("transcript", ["", "   "])
def test_empty_transcript_raises_no_speech_and_stores_nothing(tmp_path: Path, transcript: str) -> None:
    """Audio with no recognised words ends the turn with NoSpeechError after an empty transcript."""
    with pipeline_harness(tmp_path) as h:
        h.fakes.stt.transcript = transcript
        out = RecordingOutput()
        with pytest.raises(NoSpeechError) as caught:
            run_async(h.pipeline.run(_voice_turn(h), out, TurnState("v1")))

        assert caught.value.code == "no_speech" and caught.value.retryable is True
        assert out.labels() == ["stage:processing", "stage:transcribing", "TranscriptFinal"]
        assert out.of_type(TranscriptFinal)[0].text == ""
        assert h.fakes.emotion.calls == [] and h.fakes.llm.prompts == []
        assert h.history() == []


def test_llm_error_surfaces_and_the_turn_never_completes(tmp_path: Path) -> None:
    """An exception from the LLM's stream reaches the caller; no reply or TurnDone is emitted."""
    with pipeline_harness(tmp_path) as h:
        h.fakes.llm.error = RuntimeError("the model fell over")
        out = RecordingOutput()
        with pytest.raises(RuntimeError, match="the model fell over"):
            run_async(h.pipeline.run(_text_turn(h), out, TurnState("t1")))

        assert out.labels()[-1] == "stage:generating"
        assert not out.of_type(ReplyTextDone) and not out.of_type(TurnDone)
        assert h.fakes.tts.texts == []
        stored = h.history()
        assert (stored[0].role, stored[0].text) == ("user", "I feel stuck at work")  # the user did say it
        # What was sent of the reply (nothing) is kept, marked interrupted.
        assert [(t.role, t.text, t.interrupted) for t in stored[1:]] == [("assistant", "", True)]


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        (set(), ""),
        ({0}, "That sounds hard."),
        ({0, 1}, "That sounds hard. You are not alone in this."),
    ],
)
def test_cancel_mid_reply_stores_only_the_chunks_marked_sent(tmp_path: Path, sent: set[int], stored: str) -> None:
    """Cancelling a voice reply stores the synthesized chunks the client was sent (sent_chunks), interrupted."""
    with pipeline_harness(tmp_path) as h:
        h.fakes.llm.hold_after = 10  # two sentences are out (chunks 0 and 1), then the LLM waits

        async def scenario() -> TurnState:
            out, state = RecordingOutput(), TurnState("t1")
            task = asyncio.create_task(h.pipeline.run(_text_turn(h), out, state))
            await out.wait_for_type(ReplyAudioChunk, lambda e: e.chunk_index == 1)
            state.sent_chunks.update(sent)  # what the sender would have marked
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await asyncio.to_thread(h.fakes.llm.stopped.wait, 5), "the generation was not stopped"
            assert not out.of_type(TurnDone)
            return state

        state = run_async(scenario())
        assert state.chunks == ["That sounds hard.", "You are not alone in this."]
        user, assistant = h.history()
        assert (user.role, user.text) == ("user", "I feel stuck at work")
        assert (assistant.role, assistant.text, assistant.interrupted) == ("assistant", stored, True)


def test_cancel_of_a_text_only_reply_stores_the_streamed_text(tmp_path: Path) -> None:
    """A turn with speak=False keeps what was streamed as text when it is cancelled (no audio to go by): the
    clauses released (each read by the reply check), not the words still held."""
    with pipeline_harness(tmp_path) as h:
        h.fakes.llm.hold_after = 5  # "That sounds hard. You are" then the LLM waits

        async def scenario() -> None:
            turn = _text_turn(h)
            turn.speak = False
            out = RecordingOutput()
            task = asyncio.create_task(h.pipeline.run(turn, out, TurnState("t1")))
            await out.wait_for_type(ReplyTextDelta, lambda e: e.text == "That sounds hard.")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        run_async(scenario())
        assistant = h.history()[1]
        assert (assistant.text, assistant.interrupted) == ("That sounds hard.", True)


@pytest.mark.parametrize(
    ("confidence", "guidance"),
    [(0.8, "sad"), (0.35, "sad"), (0.2, "neutral")],
)
def test_emotion_guidance_falls_back_to_neutral_below_min_confidence(
    tmp_path: Path, confidence: float, guidance: str
) -> None:
    """The prompt gets the detected emotion's guidance at or above min_confidence, neutral's below it."""
    with pipeline_harness(tmp_path, emotion__min_confidence=0.35) as h:
        h.fakes.emotion.confidence = confidence
        out = RecordingOutput()
        run_async(h.pipeline.run(_text_turn(h), out, TurnState("t1")))

        detected = out.of_type(EmotionDetected)[0].emotion
        assert (detected.label, detected.confidence) == ("sad", confidence)  # reported as detected either way
        (prompt,) = h.fakes.llm.prompts
        services = h.pipeline.services
        table = services.prompt_for(services.personas.default).emotion_guidance  # the session's persona's
        assert table["sad"] != table["neutral"]
        assert prompt[-2].role == "system" and prompt[-2].content == table[guidance]
        assert (prompt[-1].role, prompt[-1].content) == ("user", "I feel stuck at work")


def test_the_next_prompt_includes_the_stored_exchange(tmp_path: Path) -> None:
    """A second turn's prompt carries the first turn's user message and reply, read back from the store."""
    with pipeline_harness(tmp_path) as h:

        async def scenario() -> None:
            await h.pipeline.run(_text_turn(h, "first question", "a"), RecordingOutput(), TurnState("a"))
            await h.pipeline.run(_text_turn(h, "second question", "b"), RecordingOutput(), TurnState("b"))

        run_async(scenario())
        second = [(m.role, m.content) for m in h.fakes.llm.prompts[1]]
        assert second[1:3] == [("user", "first question"), ("assistant", REPLY)]
        assert second[-1] == ("user", "second question")


def test_busy_limit_raises_busy_error_after_turn_wait(tmp_path: Path) -> None:
    """With every turn slot taken, a turn waits limits.turn_wait_s then fails with BusyError, emitting nothing."""
    with pipeline_harness(tmp_path, limits__max_active_turns=1, limits__turn_wait_s=0.05) as h:
        h.fakes.llm.hold_after = 2

        async def scenario() -> tuple[RecordingOutput, RecordingOutput]:
            first, second = RecordingOutput(), RecordingOutput()
            task = asyncio.create_task(h.pipeline.run(_text_turn(h, turn_id="a"), first, TurnState("a")))
            await first.wait_for_type(StageStarted, lambda e: e.stage == "generating")
            with pytest.raises(BusyError) as caught:
                await h.pipeline.run(_text_turn(h, turn_id="b"), second, TurnState("b"))
            assert caught.value.code == "server_busy" and caught.value.retryable is True
            h.fakes.llm.release.set()
            await task  # the first turn is unaffected
            return first, second

        first, second = run_async(scenario())
        assert second.events == []
        assert first.labels()[-1] == "TurnDone"


def test_a_turn_waits_for_a_free_slot_and_then_runs(tmp_path: Path) -> None:
    """A turn arriving while the only slot is taken starts only after the running turn is done."""
    with pipeline_harness(tmp_path, limits__max_active_turns=1) as h:
        h.fakes.llm.hold_after = 2

        async def scenario() -> RecordingOutput:
            out = RecordingOutput()  # shared: one order for both turns
            first = asyncio.create_task(h.pipeline.run(_text_turn(h, turn_id="a"), out, TurnState("a")))
            await out.wait_for_type(StageStarted, lambda e: e.stage == "generating")
            second = asyncio.create_task(h.pipeline.run(_text_turn(h, turn_id="b"), out, TurnState("b")))
            for _ in range(20):  # let the second turn run as far as it can (yields, no wall-clock wait)
                await asyncio.sleep(0)
            assert not [e for e in out.events if getattr(e, "turn_id", None) == "b"]
            h.fakes.llm.release.set()
            await asyncio.gather(first, second)
            return out

        out = run_async(scenario())

        def of_turn(turn_id: str) -> list[PipelineEvent]:
            return [e for e in out.events if getattr(e, "turn_id", None) == turn_id]

        a_done = out.index(lambda e: isinstance(e, TurnDone) and e.turn_id == "a")
        b_first = out.index(lambda e: getattr(e, "turn_id", None) == "b")
        assert a_done < b_first
        assert isinstance(of_turn("b")[-1], TurnDone)
        assert len(h.history()) == 4


def test_voice_turn_audio_bytes_match_the_synthesized_speech(tmp_path: Path) -> None:
    """ReplyAudioDone reports the bytes of every chunk sent, which is all the speech the TTS produced."""
    with pipeline_harness(tmp_path) as h:
        out = RecordingOutput()
        run_async(h.pipeline.run(_voice_turn(h), out, TurnState("v1")))
        words = sum(len(t.split()) for t in h.fakes.tts.texts)
        expected = int(words * h.fakes.tts.seconds_per_word * RATE) * 2
        done = out.of_type(ReplyAudioDone)[0]
        assert done.bytes == sum(len(c.pcm) for c in out.of_type(ReplyAudioChunk)) == expected
