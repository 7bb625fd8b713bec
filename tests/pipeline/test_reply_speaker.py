"""ReplySpeaker (LLM -> sentence chunker -> TTS) with fakes: audio framing, first chunk, sentence cap, modes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from backend.engines.protocols import ChatMessage, VoiceStyle
from backend.pipeline.events import (
    ReplyAudioChunk,
    ReplyAudioDone,
    ReplyAudioStarted,
    ReplyTextDelta,
    ReplyTextDone,
    StageStarted,
)
from backend.pipeline.reply_speaker import ReplySpeaker
from backend.pipeline.turn_types import TurnInput, TurnState
from tests.fakes import RATE
from tests.pipeline.recording import Harness, RecordingOutput, pipeline_harness, run_async

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

REPLY = "That sounds hard. You are not alone in this. What feels heaviest right now?"
SENTENCES = ["That sounds hard.", "You are not alone in this.", "What feels heaviest right now?"]
BYTES_PER_WORD = int(0.1 * RATE) * 2  # FakeTTS: 0.1 s of PCM16 per word


def _speak(h: Harness, *, speak: bool = True) -> tuple[str, RecordingOutput, TurnState, TurnInput]:
    """Run one ReplySpeaker over the harness's fakes; returns (reply, recording, state, turn)."""
    turn = TurnInput("r1", h.session_id, time.perf_counter(), text="hi", speak=speak)
    out, state = RecordingOutput(), TurnState("r1")

    async def scenario() -> str:
        speaker = ReplySpeaker(
            turn,
            out,
            state,
            [ChatMessage("user", "hi")],
            VoiceStyle(),
            h.models,
            h.pipeline.services.executors,
            h.pipeline.services.llm_scheduler,
            h.settings,
            {},
        )
        return await speaker.run()

    return run_async(scenario()), out, state, turn


def test_streaming_sends_audio_between_started_and_done_with_the_byte_count(tmp_path: Path) -> None:
    """Streaming: synthesizing -> ReplyAudioStarted -> chunks (<= audio_chunk_ms each) -> ReplyAudioDone(bytes)."""
    with pipeline_harness(tmp_path, pipeline__audio_chunk_ms=200) as h:
        reply, out, state, turn = _speak(h)

        assert reply == REPLY
        assert h.fakes.tts.texts == SENTENCES  # one synthesis per sentence, as the chunker releases them
        assert state.chunks == SENTENCES
        audio = [e for e in out.events if isinstance(e, ReplyAudioStarted | ReplyAudioChunk | ReplyAudioDone)]
        assert isinstance(audio[0], ReplyAudioStarted) and audio[0].sample_rate == RATE
        assert isinstance(audio[-1], ReplyAudioDone)
        chunks = out.of_type(ReplyAudioChunk)
        assert audio[1:-1] == chunks
        synthesizing = out.index(lambda e: isinstance(e, StageStarted) and e.stage == "synthesizing")
        assert synthesizing < out.index(lambda e: isinstance(e, ReplyAudioStarted))
        step = int(RATE * 0.2) * 2
        assert max(len(c.pcm) for c in chunks) == step
        assert [c.chunk_index for c in chunks] == sorted(c.chunk_index for c in chunks)
        assert {c.chunk_index for c in chunks} == {0, 1, 2}
        # 3 + 6 + 5 words of speech; PCM16 mono: bytes / 2 / rate seconds.
        done = audio[-1]
        assert done.bytes == sum(len(c.pcm) for c in chunks) == 14 * BYTES_PER_WORD
        assert done.duration_s == pytest.approx(1.4)
        assert "".join(d.text for d in out.of_type(ReplyTextDelta)) == REPLY
        assert out.of_type(ReplyTextDone)[0].text == REPLY
        assert {"first_token", "response", "first_audio", "last_audio"} <= turn.marks.keys()


@pytest.mark.parametrize(
    ("max_words", "first"),
    [(3, "I hear you"), (5, "I hear you and I"), (None, "I hear you and I know this week has been long.")],
)
def test_first_chunk_is_cut_at_first_chunk_max_words(tmp_path: Path, max_words: int | None, first: str) -> None:
    """With no early boundary the first chunk ends after first_chunk_max_words words (None: at the sentence)."""
    with pipeline_harness(tmp_path, pipeline__first_chunk_max_words=max_words) as h:
        h.fakes.llm.reply = "I hear you and I know this week has been long. Take a breath."
        _, _, state, _ = _speak(h)

        assert h.fakes.tts.texts[0] == first
        assert " ".join(state.chunks) == "I hear you and I know this week has been long. Take a breath."
        assert state.chunks[-1] == "Take a breath."


def test_reply_is_capped_at_three_sentences_and_the_llm_is_stopped(tmp_path: Path) -> None:
    """Generation stops (stop event set) once three sentences are out; the fourth is neither spoken nor kept."""
    with pipeline_harness(tmp_path) as h:
        h.fakes.llm.reply = "One. Two is here. Three now. Four never. Five."
        h.fakes.llm.hold_after = 7  # after " Four" the fake LLM only ends if the stop event is set
        reply, out, state, _ = _speak(h)

        assert h.fakes.llm.stopped.wait(5), "the LLM's stop event was never set"  # its thread sees it
        assert reply == "One. Two is here. Three now."
        assert out.of_type(ReplyTextDone)[0].text == reply
        assert h.fakes.tts.texts == ["One.", "Two is here.", "Three now."]
        assert state.chunks == ["One.", "Two is here.", "Three now."]
        assert state.reply_text == reply
        assert "never" not in "".join(d.text for d in out.of_type(ReplyTextDelta))


def test_sequential_mode_sends_the_whole_reply_text_before_any_audio(tmp_path: Path) -> None:
    """Sequential: no deltas, ReplyTextDone first, then one synthesis of the whole (capped) reply."""
    with pipeline_harness(tmp_path, pipeline__mode="sequential") as h:
        h.fakes.llm.reply = REPLY + " And one more thing."
        reply, out, state, _ = _speak(h)

        assert reply == REPLY  # capped at three sentences in this mode too
        assert out.labels()[0] == "ReplyTextDone"
        assert not out.of_type(ReplyTextDelta)
        first_audio = out.index(lambda e: isinstance(e, StageStarted | ReplyAudioStarted | ReplyAudioChunk))
        assert out.index(lambda e: isinstance(e, ReplyTextDone)) < first_audio
        assert out.labels()[-1] == "ReplyAudioDone"
        assert h.fakes.tts.texts == [REPLY]
        assert state.chunks == [REPLY]
        assert {c.chunk_index for c in out.of_type(ReplyAudioChunk)} == {0}
        assert out.of_type(ReplyAudioDone)[0].bytes == 14 * BYTES_PER_WORD


@pytest.mark.parametrize("mode", ["streaming", "sequential"])
def test_speak_false_emits_no_audio(tmp_path: Path, mode: str) -> None:
    """A text-only turn (speak=False) gets the reply text and never calls the TTS."""
    with pipeline_harness(tmp_path, pipeline__mode=mode) as h:
        reply, out, state, turn = _speak(h, speak=False)

        assert reply == REPLY
        assert out.labels()[-1] == "ReplyTextDone"
        assert not [e for e in out.events if isinstance(e, ReplyAudioStarted | ReplyAudioChunk | ReplyAudioDone)]
        assert not [e for e in out.events if isinstance(e, StageStarted)]
        assert h.fakes.tts.texts == [] and state.chunks == []
        assert "first_audio" not in turn.marks
