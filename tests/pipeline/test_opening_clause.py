"""Opening clauses through the turn pipeline with fakes: spoken first, continued by the LLM, stored whole, varied
across a session, and left out where they cannot or should not be used."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from backend.pipeline.events import ReplyAudioChunk, ReplyTextDelta, ReplyTextDone
from backend.pipeline.turn_types import TurnInput, TurnState
from tests.fakes import tone_pcm
from tests.pipeline.recording import Harness, RecordingOutput, pipeline_harness, run_async

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

CONTINUATION = "losing that is really hard. What do you miss most?"


def _continuing(h: Harness) -> None:
    """Make the fake LLM an engine that continues a given reply start (like transformers and CTranslate2)."""
    h.fakes.llm.continues_prefix = True  # type: ignore[attr-defined]
    h.fakes.llm.reply = CONTINUATION


def _voice_turn(h: Harness, turn_id: str) -> TurnInput:
    return TurnInput(turn_id, h.session_id, time.perf_counter(), audio=tone_pcm(1.0), duration_s=1.0)


def _run(h: Harness, turn: TurnInput) -> RecordingOutput:
    out = RecordingOutput()
    run_async(h.pipeline.run(turn, out, TurnState(turn.turn_id)))
    return out


def test_the_opener_is_spoken_first_and_the_llm_continues_it(tmp_path: Path) -> None:
    with pipeline_harness(tmp_path) as h:
        _continuing(h)
        turn = _voice_turn(h, "v1")
        out = _run(h, turn)

        opener = h.fakes.llm.options[-1].reply_prefix  # type: ignore[union-attr]
        assert opener in h.pipeline.services.openers["sad"]  # FakeEmotion: sad at 0.8
        assert h.fakes.tts.texts[0] == opener  # the first audio is the opener's
        assert out.of_type(ReplyAudioChunk)[0].chunk_index == 0
        reply = f"{opener} {CONTINUATION}"
        assert "".join(d.text for d in out.of_type(ReplyTextDelta)) == reply
        assert out.of_type(ReplyTextDone)[0].text == reply
        assert h.history()[-1].text == reply
        # The opener went out before the LLM's first words; both moments are marked.
        assert turn.marks["first_audio"] < turn.marks["first_llm_audio"]
        registry = h.pipeline.metrics.registry
        assert registry.get_sample_value("claritymentor_first_llm_audio_seconds_count") == 1.0


def test_the_next_reply_of_the_session_opens_differently(tmp_path: Path) -> None:
    with pipeline_harness(tmp_path) as h:
        _continuing(h)
        openers = []
        for n in range(3):
            _run(h, _voice_turn(h, f"v{n}"))
            openers.append(h.fakes.llm.options[-1].reply_prefix)  # type: ignore[union-attr]
        assert len(set(openers)) == 3


def test_below_min_confidence_the_opener_is_a_neutral_one(tmp_path: Path) -> None:
    with pipeline_harness(tmp_path) as h:
        _continuing(h)
        h.fakes.emotion.confidence = 0.2
        _run(h, _voice_turn(h, "v1"))
        assert h.fakes.llm.options[-1].reply_prefix in h.pipeline.services.openers["neutral"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("overrides", "speak", "continues"),
    [
        ({"pipeline__opening_clause": False}, True, True),  # switched off
        ({"pipeline__mode": "sequential"}, True, True),  # the seed's way
        ({}, False, True),  # a text reply (nothing to say while the LLM starts)
        ({}, True, False),  # an engine that cannot continue a reply start (openai)
    ],
)
def test_no_opener_where_it_is_off_or_cannot_be_used(
    tmp_path: Path, overrides: dict[str, object], speak: bool, continues: bool
) -> None:
    with pipeline_harness(tmp_path, None, **overrides) as h:
        if continues:
            _continuing(h)
        turn = _voice_turn(h, "v1")
        turn.speak = speak
        out = _run(h, turn)
        options = h.fakes.llm.options[-1]
        assert options is None or options.reply_prefix == ""
        assert out.of_type(ReplyTextDone)[0].text == h.fakes.llm.reply


def test_warmed_openers_are_spoken_without_synthesis(tmp_path: Path) -> None:
    """warm_openers synthesizes every clause in its emotion's voice; a reply then speaks its clause from there."""
    with pipeline_harness(tmp_path) as h:
        _continuing(h)

        async def warm() -> int:
            task = h.pipeline.services.warm_openers()
            assert task is not None
            return await task

        count = run_async(warm())
        assert count == sum(len(v) for v in h.pipeline.services.openers.values())
        warmed = list(h.fakes.tts.texts)
        out = _run(h, _voice_turn(h, "v1"))

        opener = h.fakes.llm.options[-1].reply_prefix  # type: ignore[union-attr]
        assert opener in warmed
        spoken = h.fakes.tts.texts[len(warmed) :]
        assert opener not in spoken and spoken  # the LLM's words are synthesized, the clause is not
        assert out.of_type(ReplyAudioChunk)[0].chunk_index == 0
