"""CI-sized load: scripts/bench/load_test.py against a server it spawns (fake models, production build_server).

200 idle WebSocket connections and 4 talking sessions (text and fake-voice turns) for about 20 s."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from backend.config import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SCRIPT = ["-m", "scripts.bench.load_test"]  # run from REPO_ROOT
MAX_KIB_PER_IDLE = 256.0  # measured ~50 KiB on these machines; generous for allocator noise
MAX_GROWTH_MIB = 40.0  # RSS growth across the talking phase


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("load") / "report.json"
    args = ["--spawn", "fake", "--idle", "200", "--talkers", "4", "--duration", "20", "--sample-every", "1"]
    done = subprocess.run(
        [sys.executable, *SCRIPT, *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=REPO_ROOT,
    )
    assert out.exists(), done.stdout + done.stderr
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    result["exit_status"] = done.returncode
    print("\n" + done.stdout)
    return result


def test_no_errors_under_load(report: dict[str, Any]) -> None:
    """Every idle connection opened and stayed open, every talker turn completed, exit status 0."""
    assert report["errors"] == [] and report["exit_status"] == 0
    assert report["idle_closed"] == 0
    assert report["turns"] >= 4 * 5 and report["voice_turns"] >= 4  # each talker did several turns


def test_memory_per_idle_connection_is_bounded(report: dict[str, Any]) -> None:
    """An idle connection costs the server less than MAX_KIB_PER_IDLE of RSS."""
    assert 0 < report["kib_per_idle_connection"] < MAX_KIB_PER_IDLE


def test_memory_stays_flat_while_talking(report: dict[str, Any]) -> None:
    """RSS grows by less than MAX_GROWTH_MIB while 4 sessions talk, with one sample a second."""
    assert len(report["rss_samples"]) >= 15
    assert report["rss_max_mib"] - report["rss_start_mib"] < MAX_GROWTH_MIB


def test_script_refuses_other_hosts() -> None:
    """The load script only runs against 127.0.0.1."""
    for url in ("ws://example.com/ws/voice", "ws://10.0.0.1:8000/ws/voice", "ws://localhost:8000/ws/voice"):
        done = subprocess.run(
            [sys.executable, *SCRIPT, "--url", url, "--pid", "1", "--idle", "1", "--duration", "1"],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=REPO_ROOT,
        )
        assert done.returncode != 0 and "refusing" in done.stderr, url
