"""Smoke test of scripts/bench/latency.py: a real short run (two servers, --compare) yields a complete report.

No latency thresholds: this proves the benchmark measures every milestone of every turn and reports
self-consistent figures, not that the server is fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scripts.common.espeak import espeak_available

pytestmark = [
    pytest.mark.real,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not espeak_available(), reason="espeak-ng is needed to speak the utterances"),
]

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ["-m", "scripts.bench.latency"]  # run from REPO_ROOT
ORDERED = ("speech_stopped", "transcript", "emotion", "first_text", "first_audio", "last_audio")
TURNS = 2
FRESH = 1  # first turns of fresh sessions
PAUSED = 1  # utterances with a thinking pause inside
COUNTS = {"streaming": TURNS, "sequential": TURNS, "fresh": FRESH, "paused": PAUSED}


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, str]:
    out = tmp_path_factory.mktemp("bench") / "report.json"
    cmd = [sys.executable, *SCRIPT, "--quick", "--compare", "--turns", str(TURNS), "--out", str(out)]
    cmd += ["--fresh", str(FRESH), "--paused", str(PAUSED)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=560, check=False)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    return json.loads(out.read_text()), out, proc.stdout


def test_every_turn_has_every_milestone_in_order(bench_run: tuple[dict[str, Any], Path, str]) -> None:
    """Every run (both modes, fresh sessions, paused utterances) played every utterance; each turn has all client
    milestones in order and server timings."""
    report, _, _ = bench_run
    assert set(report["runs"]) == set(COUNTS)
    for mode, records in report["runs"].items():
        assert len(records) == COUNTS[mode], mode
        for record in records:
            assert record["outcome"] == "ok", record
            values = [record["client"][m] for m in ORDERED]
            assert values == sorted(values), (mode, record["client"])
            assert values[-1] < report["config"]["turn_timeout"]
            assert record["server"]["first_audio"] >= record["server"]["speech_stopped"] >= 0
            assert record["server"]["stt_s"] > 0 and record["server"]["turn_total_s"] > 0
            assert record["transcript"] and record["response"] and record["audio_s"] > 0
            assert record["stt_rtf"] > 0 and record["tts_rtf"] > 0 and record["llm_words_per_s"] > 0
    # The same utterances were played to both servers.
    texts = [[r["utterance"]["text"] for r in report["runs"][mode]] for mode in ("streaming", "sequential")]
    assert texts[0] == texts[1]
    assert report["runs"]["paused"][0]["utterance"]["pause_ms"] in (350, 400, 450)
    assert report["paused"]["turns"] == PAUSED and 0 <= report["paused"]["split"] <= PAUSED
    assert report["problems"] == []


def test_summaries_are_self_consistent(bench_run: tuple[dict[str, Any], Path, str]) -> None:
    """Each milestone summary counts every turn and has p50 <= p95 <= max; the table reaches stdout."""
    report, _, stdout = bench_run
    for mode, summary in report["summaries"].items():
        assert summary["turns"] == summary["ok"] == COUNTS[mode], mode
        for milestone in ORDERED:
            s = summary["client"][milestone]
            assert s["n"] == COUNTS[mode]
            assert s["p50"] <= s["p95"] <= s["max"], (mode, milestone, s)
        for s in (*summary["server"].values(), *summary["rates"].values()):
            assert s["p50"] <= s["p95"] <= s["max"]
        assert mode in stdout
    assert "first_audio" in stdout


def test_compare_reports_a_ratio_per_turn(bench_run: tuple[dict[str, Any], Path, str]) -> None:
    """--compare gives TTFA(streaming)/TTFA(sequential) per turn and of the p50s, matching the records."""
    report, _, _ = bench_run
    compare = report["compare"]
    ratios = compare["ttfa_ratio_per_turn"]
    assert len(ratios) == TURNS and all(isinstance(r, float) and r > 0 for r in ratios)
    s, q = report["runs"]["streaming"][0], report["runs"]["sequential"][0]
    assert ratios[0] == pytest.approx(s["client"]["first_audio"] / q["client"]["first_audio"], rel=1e-3)
    assert compare["ttfa_p50_ratio"] > 0


def test_report_metadata_memory_and_plot(bench_run: tuple[dict[str, Any], Path, str]) -> None:
    """The report names config, machine and commit, measures server memory, and the PNG plot was written."""
    report, out, _ = bench_run
    assert report["config"]["quick"] is True and report["config"]["compare"] is True
    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["python"]
    assert len(report["git"]["commit"] or "") == 40
    memory = report["memory"]
    assert memory["rss_start"] > 0 and memory["rss_active_peak"] > 0 and memory["rss_end"] > 0
    assert memory["idle"]["connections"] > 0 and memory["idle"]["per_connection_bytes"] is not None
    plot = Path(report["plot"])
    assert plot.parent == out.parent
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 5000
