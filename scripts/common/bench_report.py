"""Benchmark summaries, the stdout table and the PNG plot. Used by scripts/bench/latency.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scripts.common.bench_ws import MILESTONES

STAGES: tuple[tuple[str, str, str], ...] = (
    # (label, from milestone, to milestone); "" = end of speech
    ("endpointing (VAD hangover)", "", "speech_stopped"),
    ("STT", "speech_stopped", "transcript"),
    ("emotion", "transcript", "emotion"),
    ("LLM to first text", "emotion", "first_text"),
    ("to first audio (LLM+TTS)", "first_text", "first_audio"),
    ("rest of the audio", "first_audio", "last_audio"),
)
SERVER_KEYS: tuple[str, ...] = (
    "stt_s",
    "emotion_s",
    "llm_first_token_s",
    "llm_total_s",
    "tts_first_chunk_s",
    "tts_total_s",
    "turn_end_read",  # the turn-end model's reading of the early start's transcript is in
    "speech_stopped",  # the end of speech confirmed (server clock, from the end of speech)
    "first_audio",
    "first_llm_audio",  # with an opening clause: the first audio of words the LLM wrote
    "turn_total_s",
)
RATE_KEYS: tuple[str, ...] = ("stt_rtf", "tts_rtf", "llm_words_per_s", "llm_pieces_per_s")
# What a listener hears after the reply began (bench_ws.Playback), per reply: total silence, longest gap.
SILENCE_KEYS: tuple[str, ...] = ("stall_s", "stall_max_s")
# Issue 25's goals for N talkers: TTFA p95 <= 2x a single talker's; mid-reply silence p50 and max (per reply).
SILENCE_P50_GOAL_S = 0.2
SILENCE_MAX_GOAL_S = 1.0


def stats(values: list[float]) -> dict[str, float] | None:
    """n, p50, p95, max (linear-interpolated percentiles, so p50 <= p95 <= max), mean."""
    if not values:
        return None
    arr = np.asarray(values, dtype=float)
    return {
        "n": len(values),
        "p50": round(float(np.percentile(arr, 50)), 4),
        "p95": round(float(np.percentile(arr, 95)), 4),
        "max": round(float(arr.max()), 4),
        "mean": round(float(arr.mean()), 4),
    }


def ok_turns(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("outcome") == "ok"]


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Client milestones, server stage durations and rates over the turns that completed."""
    good = ok_turns(records)
    client = {m: stats([r["client"][m] for r in good if m in r["client"]]) for m in MILESTONES}
    server = {k: stats([r["server"][k] for r in good if k in r.get("server", {})]) for k in SERVER_KEYS}
    rates = {k: stats([r[k] for r in good if k in r]) for k in RATE_KEYS}
    return {
        "turns": len(records),
        "ok": len(good),
        "failed": len(records) - len(good),
        "client": client,
        "server": {k: v for k, v in server.items() if v is not None},
        "rates": {k: v for k, v in rates.items() if v is not None},
        "silence": silence_stats(good),
    }


def silence_stats(good: list[dict[str, Any]]) -> dict[str, dict[str, float] | None]:
    """Per-reply mid-reply silence over completed turns: ``stall_s`` (total) and ``stall_max_s`` (longest gap)."""
    return {k: stats([r[k] for r in good if k in r]) for k in SILENCE_KEYS}


def compare(streaming: list[dict[str, Any]], sequential: list[dict[str, Any]]) -> dict[str, Any]:
    """TTFA(streaming) / TTFA(sequential) per turn (same utterance) and of the p50s."""
    per_turn: list[float | None] = []
    for a, b in zip(streaming, sequential, strict=False):
        ta, tb = a["client"].get("first_audio"), b["client"].get("first_audio")
        ok = a.get("outcome") == b.get("outcome") == "ok" and ta is not None and tb
        per_turn.append(round(ta / tb, 4) if ok else None)
    s = summarize(streaming)["client"]["first_audio"]
    q = summarize(sequential)["client"]["first_audio"]
    valid = [r for r in per_turn if r is not None]
    return {
        "ttfa_ratio_per_turn": per_turn,
        "ttfa_ratio_median": round(float(np.median(valid)), 4) if valid else None,
        "ttfa_p50_ratio": round(s["p50"] / q["p50"], 4) if s and q and q["p50"] else None,
        "ttfa_p50_streaming": s["p50"] if s else None,
        "ttfa_p50_sequential": q["p50"] if q else None,
    }


def pause_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """False endpoints on utterances with a pause inside: split into two turns, or answered before the end."""
    return {
        "turns": len(records),
        "split": sum(bool(r.get("split")) for r in records),
        "early_reply": sum(bool(r.get("early_reply")) for r in records),
        "by_pause_ms": {
            str(ms): sum(bool(r.get("split")) for r in records if r["utterance"].get("pause_ms") == ms)
            for ms in sorted({r["utterance"].get("pause_ms") for r in records})
        },
    }


def concurrency_summary(levels: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per number of talkers: TTFA and mid-reply silence per reply (``stall``: total, ``longest_gap``: the longest
    single gap). The most talkers whose TTFA p95 < 2x the single-talker p95 (all turns completing), and the most
    that also meet the silence goals (p50 <= SILENCE_P50_GOAL_S, max <= SILENCE_MAX_GOAL_S), counted from the
    fewest talkers up to the first level that misses."""
    rows: list[dict[str, Any]] = []
    for talkers, records in sorted(levels.items()):
        good = ok_turns(records)
        ttfa = stats([r["client"]["first_audio"] for r in good if "first_audio" in r["client"]])
        silence = silence_stats(good)
        rows.append(
            {
                "talkers": talkers,
                "turns": len(records),
                "ok": len(good),
                "ttfa": ttfa,
                "stall": silence["stall_s"],
                "longest_gap": silence["stall_max_s"],
                "stages": _stage_medians(good),
            }
        )
    base_row = next((r for r in rows if r["talkers"] == 1 and r["ttfa"]), None)
    base = base_row["ttfa"]["p95"] if base_row else None
    best = best_quiet = None
    if base:
        quiet = True
        for row in rows:
            if not (row["ttfa"] and row["ok"] == row["turns"] and row["ttfa"]["p95"] < 2 * base):
                break
            best = row["talkers"]
            stall = row["stall"]
            quiet = quiet and stall is not None and stall["p50"] <= SILENCE_P50_GOAL_S
            quiet = quiet and stall is not None and stall["max"] <= SILENCE_MAX_GOAL_S
            best_quiet = row["talkers"] if quiet else best_quiet
    return {
        "levels": rows,
        "single_talker_p95": base,
        "max_talkers_p95_under_2x": best,
        "max_talkers_within_goals": best_quiet,
        "goals": {"silence_p50_s": SILENCE_P50_GOAL_S, "silence_max_s": SILENCE_MAX_GOAL_S},
    }


STAGE_KEYS: tuple[str, ...] = ("stt_s", "emotion_s", "llm_first_token_s", "llm_total_s", "tts_total_s")


def _stage_medians(good: list[dict[str, Any]]) -> dict[str, float]:
    """Server stage medians (seconds) of completed turns: where a turn's time goes at this many talkers."""
    out: dict[str, float] = {}
    for key in STAGE_KEYS:
        s = stats([r["server"][key] for r in good if key in r.get("server", {})])
        if s is not None:
            out[key] = round(s["p50"], 3)
    return out


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:7.3f}"


def table(summaries: dict[str, dict[str, Any]]) -> str:
    """Per-milestone p50/p95/max (seconds after end of speech) for each mode, as aligned text."""
    modes = list(summaries)
    head = f"{'milestone':<16}" + "".join(f" | {m + ' p50/p95/max':<23}" for m in modes)
    lines = [head, "-" * len(head)]
    for m in MILESTONES:
        cells = []
        for mode in modes:
            s = summaries[mode]["client"].get(m)
            cells.append(" | " + (" ".join(_fmt(s[k]) for k in ("p50", "p95", "max")) if s else f"{'-':<23}"))
        lines.append(f"{m:<16}" + "".join(cells))
    lines.append("silent mid-reply per reply (s), total p50/p95/max; longest gap p50/p95/max:")
    for mode in modes:
        sil = summaries[mode].get("silence") or {}
        cells = [" ".join(_fmt((sil.get(k) or {}).get(q)) for q in ("p50", "p95", "max")) for k in SILENCE_KEYS]
        lines.append(f"  {mode:<14}{cells[0]} ; {cells[1]}")
    lines.append("server stage medians (s):")
    for mode in modes:
        srv = summaries[mode]["server"]
        lines.append(f"  {mode}: " + ", ".join(f"{k}={v['p50']:.3f}" for k, v in srv.items()))
        rates = summaries[mode]["rates"]
        lines.append(f"  {mode} rates (median): " + ", ".join(f"{k}={v['p50']:.3f}" for k, v in rates.items()))
    return "\n".join(lines)


def concurrency_table(conc: dict[str, Any]) -> str:
    """TTFA and what a listener hears after the reply began: silence per reply (total; longest single gap)."""
    lines = [
        "talkers | turns ok | TTFA p50 | TTFA p95 | TTFA max | silent mid-reply p50 / max | longest gap p50 / max",
    ]
    for row in conc["levels"]:
        t, s, g = row["ttfa"] or {}, row.get("stall") or {}, row.get("longest_gap") or {}
        lines.append(
            f"{row['talkers']:>7} | {row['ok']:>3}/{row['turns']:<4} | {_fmt(t.get('p50'))}  | "
            f"{_fmt(t.get('p95'))}  | {_fmt(t.get('max'))}  | {_fmt(s.get('p50'))} / {_fmt(s.get('max'))}"
            f"          | {_fmt(g.get('p50'))} / {_fmt(g.get('max'))}"
        )
    lines.append("server stage medians per turn (s):")
    for row in conc["levels"]:
        stages = row.get("stages") or {}
        lines.append(f"{row['talkers']:>7} | " + ", ".join(f"{k}={v:.3f}" for k, v in stages.items()))
    lines.append(f"most talkers with p95 < 2x single-talker p95: {conc['max_talkers_p95_under_2x']}")
    goals = conc.get("goals") or {}
    if goals:
        lines.append(
            f"most talkers also silent mid-reply p50 <= {goals['silence_p50_s']} s and max <= "
            f"{goals['silence_max_s']} s: {conc.get('max_talkers_within_goals')}"
        )
    return "\n".join(lines)


def plot(runs: dict[str, list[dict[str, Any]]], conc: dict[str, Any] | None, path: Path) -> None:
    """Stacked per-stage bars per turn (one panel per mode), plus TTFA vs talkers when measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = len(runs) + (1 if conc and conc["levels"] else 0)
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 5.5), squeeze=False)
    cmap = plt.get_cmap("tab10")
    colors = [cmap(i) for i in range(len(STAGES))]
    ymax = max((r["client"].get("last_audio", 0.0) for recs in runs.values() for r in recs), default=1.0)
    for ax, (mode, records) in zip(axes[0], runs.items(), strict=False):
        x = np.arange(len(records))
        bottom = np.zeros(len(records))
        for (label, a, b), color in zip(STAGES, colors, strict=False):
            start = np.array([r["client"].get(a, 0.0) if a else 0.0 for r in records])
            end = np.array([r["client"].get(b, np.nan) for r in records])
            height = np.nan_to_num(np.maximum(end - start, 0.0))
            ax.bar(x, height, bottom=bottom, color=color, label=label)
            bottom = bottom + height
        ax.set_title(f"{mode}: time after end of speech per turn")
        ax.set_xticks(x, [str(i + 1) for i in x])
        ax.set_xlabel("turn")
        ax.set_ylabel("seconds")
        ax.set_ylim(0, ymax * 1.05 or 1.0)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3)
    if conc and conc["levels"]:
        ax = axes[0][-1]
        rows = [r for r in conc["levels"] if r["ttfa"]]
        talkers = [r["talkers"] for r in rows]
        ax.plot(talkers, [r["ttfa"]["p50"] for r in rows], "o-", label="TTFA p50")
        ax.plot(talkers, [r["ttfa"]["p95"] for r in rows], "s--", label="TTFA p95")
        quiet = [r for r in rows if r.get("stall")]
        if quiet:
            at = [r["talkers"] for r in quiet]
            ax.plot(at, [r["stall"]["p50"] for r in quiet], "^-", label="silent mid-reply p50 (per reply)")
            ax.plot(at, [r["stall"]["max"] for r in quiet], "v:", label="silent mid-reply max")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("simultaneous talkers")
        ax.set_ylabel("seconds")
        ax.set_title("streaming: TTFA and mid-reply silence vs talkers")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
