"""Pieces of the latency benchmark without servers: turn records from message logs, summaries, ratios."""

from __future__ import annotations

from typing import Any

import pytest

from scripts.bench.latency import parse_args
from scripts.common.bench_report import compare, concurrency_summary, concurrency_table, stats, summarize, table
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


# --- what a listener hears: the player simulation -----------------------------------------------------------


def test_playback_starts_at_the_first_frame_and_sums_each_late_arrival() -> None:
    """The wait before the first frame is TTFA, not silence; each frame past the play-out deadline adds one gap
    of ``arrival - deadline``; the reply's silence is their sum, and the longest is kept apart."""
    playback = Playback(sample_rate=16000)
    assert playback.started_at is None and playback.summary() == {"stall_s": 0, "stall_max_s": 0, "stall_count": 0}
    playback.frame(5.0, 16000)  # 0.5 s of audio: plays until 5.5
    assert playback.started_at == 5.0 and playback.gaps == []
    playback.frame(5.7, 16000)  # 0.2 s dry, then plays until 6.2
    playback.frame(6.1, 16000)  # arrives while playing: queued, plays until 6.7
    playback.frame(7.5, 8000)  # 0.8 s dry, then 0.25 s
    assert playback.gaps == pytest.approx([0.2, 0.8])
    assert playback.playing_until == pytest.approx(7.75) and playback.audio_s == pytest.approx(1.75)
    assert playback.summary() == {"stall_s": pytest.approx(1.0), "stall_max_s": pytest.approx(0.8), "stall_count": 2}


def test_playback_frame_duration_follows_the_sample_rate() -> None:
    """A frame lasts bytes / 2 / sample_rate: the same bytes play half as long at twice the rate."""
    slow, fast = Playback(sample_rate=16000), Playback(sample_rate=32000)
    for playback in (slow, fast):
        playback.frame(0.0, 32000)
        playback.frame(1.5, 32000)
    assert slow.gaps == pytest.approx([0.5]) and fast.gaps == pytest.approx([1.0])


def test_playback_on_time_stream_is_silent() -> None:
    """Frames arriving exactly as the audio before them runs out (a stream paced at real time) leave no gap."""
    playback = Playback(sample_rate=22050)
    step = 882  # 20 ms at 22050 Hz
    for i in range(50):
        playback.frame(1.0 + i * 0.02, step)
    assert playback.summary()["stall_count"] == 0 and playback.stalled_s == 0.0


def _reply_log(frames: list[float], sample_rate: int = 16000, nbytes: int = 3200) -> list[Arrival]:
    """A turn whose reply audio frames (each ``nbytes``) arrive at ``frames`` seconds after end of speech."""
    turn = "r"
    log = [
        _ev(0.5, "speech_stopped", turn_id=turn, duration_s=1.0),
        _ev(0.8, "transcript", turn_id=turn, text="hi"),
        _ev(0.9, "emotion", turn_id=turn, data={"label": "calm"}),
        _ev(1.0, "response.delta", turn_id=turn, text="Hi."),
        _ev(frames[0] - 0.01, "audio.start", turn_id=turn, sample_rate=sample_rate),
        *(Arrival(T_END + t, None, nbytes) for t in frames),
        _ev(frames[-1] + 0.01, "audio.end", turn_id=turn, bytes=nbytes * len(frames), duration_s=1.0),
    ]
    # a frame after audio.end (not this reply's) would be silence if it were counted
    log += [Arrival(T_END + frames[-1] + 5.0, None, nbytes), _ev(frames[-1] + 6.0, "metrics", turn_id=turn)]
    return log


def test_record_reports_silence_per_reply_from_the_announced_sample_rate() -> None:
    """The record's stall_s / stall_max_s / stall_count come from the frames between audio.start and audio.end,
    played at audio.start's sample_rate; frames outside the reply are not counted."""
    # 3200 bytes at 16 kHz = 0.1 s each: 1.0-1.1 plays, 1.1 on time, 1.5 after 0.3 s dry, 1.6 on time, 2.2 after 0.5
    record = build_record(_reply_log([1.0, 1.1, 1.5, 1.6, 2.2]), T_END)
    assert record["client"]["first_audio"] == 1.0 and record["client"]["last_audio"] == 2.2
    assert record["stall_s"] == pytest.approx(0.8) and record["stall_max_s"] == pytest.approx(0.5)
    assert record["stall_count"] == 2
    # the same bytes announced at 8 kHz last 0.2 s each: 1.0-1.4 plays, 0.1 s dry, 1.5-1.9, 0.3 s dry
    slow = build_record(_reply_log([1.0, 1.1, 1.5, 1.6, 2.2], sample_rate=8000), T_END)
    assert slow["stall_s"] == pytest.approx(0.1 + 0.3) and slow["stall_max_s"] == pytest.approx(0.3)


def test_record_without_audio_has_no_silence_figures() -> None:
    """A turn that never played audio has no mid-reply silence to report (not zero)."""
    log = [e for e in _turn_log() if e.event is not None and e.event["type"] not in ("audio.start", "audio.end")]
    record = build_record(log, T_END)
    assert "first_audio" not in record["client"] and "stall_s" not in record and "stall_max_s" not in record


def test_concurrency_summary_reports_silence_per_level_and_the_goals() -> None:
    """Each level has TTFA and per-reply silence (total, longest gap) stats; the most talkers within the goals
    stops at the first level whose silence p50 or max misses them, even if a later level would meet them."""

    def level(gaps: list[float], n: int, ttfa: float = 1.0) -> list[dict[str, Any]]:
        frames = [ttfa]
        for gap in gaps:
            frames += [frames[-1] + 0.1 + gap]
        return [{**build_record(_reply_log(frames), T_END), "outcome": "ok"} for _ in range(n)]

    levels = {1: level([], 2), 2: level([0.05, 0.1], 4), 4: level([0.6, 0.9], 8), 8: level([], 8)}
    result = concurrency_summary(levels)
    rows = {r["talkers"]: r for r in result["levels"]}
    assert rows[1]["stall"]["max"] == 0.0 and rows[2]["stall"]["p50"] == pytest.approx(0.15)
    assert rows[4]["stall"]["p50"] == pytest.approx(1.5) and rows[4]["longest_gap"]["max"] == pytest.approx(0.9)
    assert result["max_talkers_p95_under_2x"] == 8 and result["max_talkers_within_goals"] == 2
    text = concurrency_table(result)
    assert "silent mid-reply p50 / max" in text and "longest gap p50 / max" in text
    assert text.splitlines()[3].split("|")[-1].split() == ["0.900", "/", "0.900"]  # 4 talkers: longest gap


def test_summaries_report_silence_beside_the_milestones() -> None:
    """Per-mode summaries (single talker) carry the silence stats, and the table prints them."""
    records = [{**build_record(_reply_log([1.0, 1.5]), T_END), "outcome": "ok"}]
    summary = summarize(records)
    assert summary["silence"]["stall_s"]["p50"] == pytest.approx(0.4)
    assert "silent mid-reply" in table({"streaming": summary})


def test_quick_run_measures_talkers_only_when_asked() -> None:
    """--quick alone measures no concurrency; --quick --concurrency 1,2,4,8 does; the full run goes to 16."""
    assert parse_args(["--quick"]).levels == []
    assert parse_args(["--quick", "--concurrency", "1,2,4,8"]).levels == [1, 2, 4, 8]
    assert parse_args([]).levels == [1, 2, 4, 8, 16]
    assert parse_args(["--concurrency", ""]).levels == []
