"""What the remote hop alone costs: the same turn with the same fixed-latency LLM, in process or behind
OpenAI Chat Completions over HTTP on 127.0.0.1, the other engines fakes, through a real uvicorn and /ws/voice.

    python3 -m tests.deploy.bench_hop --turns 60

Both LLMs wait ``--first-token-s`` before the first word and ``--word-s`` between words (no CPU), so the
difference in time to first audio is the hop: the request, the server's SSE framing, the client's parsing and
its thread hand-off. Prints p50 / p95 of each and of the difference.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from websockets.sync.client import connect

from backend.config import LLMSettings, Settings
from backend.engines.llm.openai import load
from backend.engines.model_service import ModelService
from backend.engines.protocols import ChatModel
from backend.main import create_app
from tests.conftest import make_settings
from tests.deploy.replica_server import SleepyLLM
from tests.fake_openai import FakeOpenAI, serve_fake_openai
from tests.fakes import FakeEmotion, FakeSTT, FakeTTS, FakeVADEngine
from tests.live_server import LiveServer


def _first_audio_s(ws_url: str, turns: int) -> list[float]:
    out: list[float] = []
    with connect(ws_url, max_size=None) as ws:
        json.loads(ws.recv(timeout=10))
        for n in range(turns):
            sent = time.perf_counter()
            ws.send(json.dumps({"type": "text", "text": f"turn {n}: I feel a bit lost at work lately"}))
            first: float | None = None
            while True:
                message = ws.recv(timeout=30)
                if isinstance(message, bytes):
                    first = first or time.perf_counter() - sent
                elif json.loads(message)["type"] == "metrics":
                    break
            assert first is not None
            out.append(first)
    return out


def _serve(settings: Settings, llm: ChatModel, turns: int) -> list[float]:
    models = ModelService.from_components(
        settings,
        stt=FakeSTT(),
        vad=FakeVADEngine(),
        emotion=FakeEmotion(),
        llm=llm,
        tts=FakeTTS(),
    )
    with LiveServer(create_app(settings, models=models)) as live:
        _first_audio_s(live.ws_url, 3)  # warm-up
        return _first_audio_s(live.ws_url, turns)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=60)
    parser.add_argument("--first-token-s", type=float, default=0.15)
    parser.add_argument("--word-s", type=float, default=0.02)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(Path(tmp), llm__warm_between_turns=False)
        local = _serve(settings, SleepyLLM(first_s=args.first_token_s, word_s=args.word_s), args.turns)
        fake = FakeOpenAI(first_token_s=args.first_token_s, word_delay_s=args.word_s)
        with serve_fake_openai(fake) as upstream:
            section = {"backend": "openai", "model": "mentor", "base_url": upstream.base_url}
            remote = _serve(settings, load(LLMSettings.model_validate(section)), args.turns)
    rows = {"in-process": local, "remote (HTTP + SSE on 127.0.0.1)": remote}
    for name, values in rows.items():
        print(f"{name}: first audio p50 {1000 * _pct(values, 0.5):.1f} ms, p95 {1000 * _pct(values, 0.95):.1f} ms")
    hop = 1000 * (statistics.median(remote) - statistics.median(local))
    print(f"remote hop: +{hop:.1f} ms at the median ({args.turns} turns each)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
