#!/usr/bin/env python3
"""TTFA through /v1/realtime vs /ws/voice on the same espeak-ng utterances (the wire must not add latency).

Starts one streaming server (``python -m backend.main`` on a free 127.0.0.1 port) or attaches to ``--url``,
then speaks each seeded utterance on both wires, alternating which goes first, at real-time pace: 16 kHz PCM
in binary frames on /ws/voice, the same speech resampled to 24 kHz in ``input_audio_buffer.append`` events on
/v1/realtime (server VAD). TTFA = first reply audio (binary frame / ``response.output_audio.delta``) after the
last speech chunk was sent. Prints a table and per-turn differences; --out writes the JSON.

    python -m scripts.bench.realtime --turns 12
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from backend.core.audio_utils import resample_pcm16
from scripts.common.bench_server import Server, attach, start_server, stop_server, wait_ready
from scripts.common.bench_speech import CHUNK_MS, Utterance, make_utterances
from scripts.common.bench_ws import Talker

RATE = 24000
CHUNK_S = CHUNK_MS / 1000
LEAD_IN_S = 0.3


async def realtime_turn(base_url: str, utt: Utterance, timeout_s: float = 90.0) -> dict[str, Any]:
    """One utterance as the first turn of a new /v1/realtime connection; milestones after the end of speech."""
    url = "ws" + base_url[len("http") :] + "/v1/realtime?model=claritymentor"
    pcm = resample_pcm16(utt.pcm, 16000, RATE)
    step = int(RATE * CHUNK_S) * 2
    chunks = [bytes(step)] * int(LEAD_IN_S / CHUNK_S) + [pcm[i : i + step] for i in range(0, len(pcm), step)]
    record: dict[str, Any] = {"client": {}, "outcome": "timeout"}
    async with connect(url, max_size=None, compression=None, open_timeout=60, ping_interval=None) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        t_end = 0.0
        done = asyncio.Event()

        async def read() -> None:
            async for message in ws:
                event = json.loads(message)
                at = round(time.perf_counter() - t_end, 4) if t_end else None
                kind = event["type"]
                if kind == "input_audio_buffer.speech_stopped":
                    record["client"].setdefault("speech_stopped", at)
                elif kind == "conversation.item.input_audio_transcription.completed":
                    record["client"].setdefault("transcript", at)
                elif kind == "response.output_audio_transcript.delta":
                    record["client"].setdefault("first_text", at)
                elif kind == "response.output_audio.delta":
                    record["client"].setdefault("first_audio", at)
                elif kind == "response.done":
                    record["outcome"] = "ok" if event["response"]["status"] == "completed" else "interrupted"
                    done.set()
                    return
                elif kind == "error":
                    record["outcome"], record["error"] = "error", event["error"].get("code")
                    done.set()
                    return

        reader = asyncio.create_task(read())
        next_t = time.perf_counter()

        async def send(chunk: bytes) -> None:
            nonlocal next_t
            next_t += CHUNK_S
            await asyncio.sleep(max(0.0, next_t - time.perf_counter()))
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk).decode()}))

        for chunk in chunks:
            await send(chunk)
        t_end = time.perf_counter()
        deadline = t_end + timeout_s
        while not done.is_set() and time.perf_counter() < deadline:
            await send(bytes(step))
        reader.cancel()
    return record


async def ws_voice_turn(server: Server, utt: Utterance) -> dict[str, Any]:
    """The same utterance as the first turn of a new /ws/voice connection."""
    talker = await Talker.open(server.ws_url)
    try:
        record: dict[str, Any] = await talker.voice_turn(utt)
        return record
    finally:
        await talker.close()


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered):.3f} / {p95:.3f}"


async def run(server: Server, turns: int, seed: int) -> dict[str, Any]:
    utts = make_utterances(turns, seed)
    await ws_voice_turn(server, utts[0])  # warm-up (first-turn costs on both wires are then alike)
    records: dict[str, list[dict[str, Any]]] = {"ws_voice": [], "realtime": []}
    for i, utt in enumerate(utts):
        order = ["ws_voice", "realtime"] if i % 2 == 0 else ["realtime", "ws_voice"]
        for wire in order:
            record = await (ws_voice_turn(server, utt) if wire == "ws_voice" else realtime_turn(server.base_url, utt))
            record.update(index=i, utterance=utt.describe())
            records[wire].append(record)
            print(
                f"  {wire:<9} turn {i + 1}/{turns} {record['outcome']:<8} TTFA={record['client'].get('first_audio')}",
                file=sys.stderr,
            )
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--url", help="attach to a running server (http://127.0.0.1:PORT) instead of starting one")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cm-bench-rt-") as tmp:
        server = attach(args.url, "streaming", None) if args.url else start_server("streaming", Path(tmp), Path(tmp))
        try:
            if not args.url:
                wait_ready(server)
            records = asyncio.run(run(server, args.turns, args.seed))
        finally:
            if not args.url:
                stop_server(server)
    print("milestone (s after end of speech)   /ws/voice p50 / p95   /v1/realtime p50 / p95")
    for milestone in ("speech_stopped", "first_text", "first_audio"):
        cells = [
            summary([r["client"][milestone] for r in records[w] if r["outcome"] == "ok" and milestone in r["client"]])
            for w in ("ws_voice", "realtime")
        ]
        print(f"{milestone:<36}{cells[0]:<22}{cells[1]}")
    pairs = [
        (a["client"]["first_audio"], b["client"]["first_audio"])
        for a, b in zip(records["ws_voice"], records["realtime"], strict=True)
        if a["outcome"] == b["outcome"] == "ok" and "first_audio" in a["client"] and "first_audio" in b["client"]
    ]
    diffs = [round(rt - ws, 3) for ws, rt in pairs]
    print(f"TTFA realtime - ws/voice per turn: median {statistics.median(diffs) if diffs else '-'} s; {diffs}")
    if args.out:
        args.out.write_text(json.dumps({"records": records, "ttfa_diff_s": diffs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
