"""Pieces of the latency benchmark without servers: turn records from message logs, summaries, ratios."""

from __future__ import annotations

from typing import Any

import pytest

from scripts.common.bench_report import compare, concurrency_summary, stats, summarize
from scripts.common.bench_speech import CHUNK_BYTES, trim_to_voiced
from scripts.common.bench_ws import Arrival, Playback, build_record

pytestmark = pytest.mark.fast

T_END = 100.0


def _ev(t: float, kind: str, **fields: Any) -> Arrival:
    return Arrival(T_END + t, {"type": kind, **fields})


def _audio(t: float) -> Arrival:
    return Arrival(T_END + t, None, 6400)


def _turn_log(turn: str = "a", ttfa: float = 2.0) -> list[Arrival]:
    return [
        _ev(0.52, "speech_stopped", turn_id=turn, duration_s=2.0),
        _ev(0.53, "status", message="Processing..."),
        _ev(0.9, "transcript", turn_id=turn, text="hello there"),
        _ev(1.0, "emotion", turn_id=turn, data={"label": "sad"}),
        _ev(1.5, "response.delta", turn_id=turn, text="That"),
        _ev(1.6, "response.delta", turn_id=turn, text=" sounds hard."),
        _ev(ttfa - 0.01, "audio.start", turn_id=turn, sample_rate=22050),
        _audio(ttfa),
        _audio(ttfa + 0.5),
        _ev(ttfa + 0.6, "response", turn_id=turn, text="That sounds hard."),
        _ev(ttfa + 0.7, "audio.end", turn_id=turn, bytes=12800, duration_s=0.29),
        _ev(
            ttfa + 0.8,
            "metrics",
            turn_id=turn,
            timings={"stt_s": 0.3, "tts_total_s": 0.1, "llm_total_s": 1.0, "llm_first_token_s": 0.4},
        ),
    ]


def test_record_times_each_milestone_from_end_of_speech() -> None:
    """Client milestones are seconds after end of speech; first audio is the first binary after audio.start."""
    record = build_record(_turn_log(), T_END)
    c = record["client"]
    assert (c["speech_stopped"], c["transcript"], c["emotion"]) == (0.52, 0.9, 1.0)
    assert (c["first_text"], c["first_delta"], c["first_audio"], c["last_audio"]) == (1.5, 1.5, 2.0, 2.5)
    assert record["turn_id"] == "a" and record["deltas"] == 2 and record["split"] is False
    assert record["server"]["stt_s"] == 0.3
    # the second frame comes 0.5 s after the first, which plays for 6400 / 2 / 22050 s: the rest is silence
    assert record["stall_s"] == pytest.approx(0.5 - 6400 / 2 / 22050, abs=1e-3)
    assert record["stt_rtf"] == pytest.approx(0.15) and record["tts_rtf"] == pytest.approx(0.1 / 0.29, rel=1e-3)
    assert record["llm_words_per_s"] == pytest.approx(3.0) and record["llm_pieces_per_s"] == pytest.approx(
        1 / 0.6, abs=0.01
    )


def test_record_ignores_events_of_other_turns_and_flags_a_split() -> None:
    """An earlier utterance cut off by a pause is flagged; its events do not leak into this turn's record."""
    early = [Arrival(T_END - 1.0, {"type": "speech_stopped", "turn_id": "x", "duration_s": 1.0})]
    other = [_ev(0.6, "transcript", turn_id="x", text="earlier")]
    record = build_record(early + other + _turn_log("a"), T_END)
    assert record["split"] is True and record["turn_id"] == "a"
    assert record["client"]["transcript"] == 0.9 and record["transcript"] == "hello there"


def test_record_of_an_error_turn_has_error_outcome() -> None:
    """An error event ends the record with outcome 'error' and its code."""
    log = [*_turn_log()[:3], _ev(1.0, "error", code="no_speech", message="...")]
    record = build_record(log, T_END)
    assert record["outcome"] == "error" and record["error"] == "no_speech"
    assert "first_audio" not in record["client"]


def test_stats_summaries_and_ratios() -> None:
    """Percentiles are ordered; summaries count only completed turns; the TTFA ratio is per turn."""
    s = stats([3.0, 1.0, 2.0, 10.0])
    assert s is not None and s["p50"] <= s["p95"] <= s["max"] == 10.0 and stats([]) is None
    fast = [{**build_record(_turn_log(ttfa=1.8), T_END), "outcome": "ok"} for _ in range(2)]
    slow = [{**build_record(_turn_log(ttfa=3.6), T_END), "outcome": "ok"} for _ in range(2)]
    failed = {**slow[0], "outcome": "timeout"}
    summary = summarize([*slow, failed])
    assert (summary["turns"], summary["ok"], summary["failed"]) == (3, 2, 1)
    result = compare(fast, slow)
    assert result["ttfa_ratio_per_turn"] == [0.5, 0.5] and result["ttfa_p50_ratio"] == 0.5
    assert compare(fast, [failed, slow[1]])["ttfa_ratio_per_turn"] == [None, 0.5]


def test_concurrency_summary_finds_the_last_level_under_twice_single_p95() -> None:
    """Levels are compared with the single-talker p95; the first level at or over 2x ends the count."""

    def level(ttfa: float, n: int) -> list[dict[str, Any]]:
        return [{**build_record(_turn_log(ttfa=ttfa), T_END), "outcome": "ok"} for _ in range(n)]

    result = concurrency_summary({1: level(1.0, 2), 2: level(1.5, 4), 4: level(2.5, 8), 8: level(1.2, 8)})
    assert result["single_talker_p95"] == 1.0 and result["max_talkers_p95_under_2x"] == 2


def test_trim_keeps_whole_chunks_from_first_to_last_voiced() -> None:
    """Leading and trailing silence is cut at 20 ms chunk edges; all-silence trims to nothing."""
    quiet, loud = b"\x00" * CHUNK_BYTES, (b"\x00\x40" * (CHUNK_BYTES // 2))
    pcm = quiet * 3 + loud + quiet + loud + quiet * 2
    assert trim_to_voiced(pcm) == loud + quiet + loud
    assert trim_to_voiced(quiet * 5) == b""


def test_playback_counts_only_the_silence_between_frames() -> None:
    """Frames that arrive before the audio ahead of them has played (a burst) add no silence; a late one adds
    exactly the gap after the audio ran out."""
    playback = Playback(sample_rate=16000)
    for t in (0.0, 0.01, 0.02):  # three 1 s frames, all at once
        playback.frame(t, 32000)
    assert playback.stalled_s == 0.0 and playback.playing_until == pytest.approx(3.0)
    playback.frame(3.5, 32000)
    assert playback.stalled_s == pytest.approx(0.5)
