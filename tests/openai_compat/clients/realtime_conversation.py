"""OpenAI Python SDK client: a spoken conversation with /v1/realtime, run in the SDK's own environment.

Speaks each raw 24 kHz PCM16 file given by --say at real-time pace (a microphone sending silence in between),
waits for its response, and prints one JSON summary. With --barge-in FILE the last --say turn is interrupted:
FILE starts playing as soon as that reply's first transcript delta arrives. Exit 0 unless the SDK failed.
Usage: python realtime_conversation.py --base-url http://127.0.0.1:P/v1 --say a.pcm [--say b.pcm] [--barge-in c.pcm]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
from collections import deque
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI

RATE = 24000
CHUNK_S = 0.04
CHUNK = bytes(int(RATE * CHUNK_S) * 2)  # silence


class Microphone:
    """Sends 40 ms of audio every 40 ms: queued speech, else silence."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.queue: deque[bytes] = deque()
        self.speech_ended = asyncio.Event()
        self.t_end = 0.0

    def say(self, pcm: bytes) -> None:
        step = len(CHUNK)
        self.speech_ended.clear()
        self.queue.extend(pcm[i : i + step] for i in range(0, len(pcm), step))

    async def run(self) -> None:
        next_t = time.perf_counter()
        while True:
            chunk = self.queue.popleft() if self.queue else CHUNK
            await self.connection.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
            if not self.queue and not self.speech_ended.is_set() and chunk is not CHUNK:
                self.t_end = time.perf_counter()
                self.speech_ended.set()
            next_t += CHUNK_S
            await asyncio.sleep(max(0.0, next_t - time.perf_counter()))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", default="claritymentor")
    parser.add_argument("--api-key", default="sk-test")
    parser.add_argument("--say", action="append", default=[])
    parser.add_argument("--barge-in")
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args()
    client = AsyncOpenAI(api_key=args.api_key, base_url=args.base_url)
    events: list[dict[str, Any]] = []
    responses: list[dict[str, Any]] = []
    async with client.realtime.connect(model=args.model) as connection:
        await connection.session.update(
            session={
                "type": "realtime",
                "output_modalities": ["audio"],
                "audio": {
                    "input": {"format": {"type": "audio/pcm", "rate": RATE}, "turn_detection": {"type": "server_vad"}},
                    "output": {"format": {"type": "audio/pcm", "rate": RATE}},
                },
            }
        )
        mic = Microphone(connection)
        mic_task = asyncio.create_task(mic.run())
        turns = [Path(p).read_bytes() for p in args.say]
        barge = Path(args.barge_in).read_bytes() if args.barge_in else None
        current: dict[str, Any] = {}
        expected_done = len(turns) + (1 if barge else 0)
        mic.say(turns.pop(0))
        deadline = time.monotonic() + args.timeout
        async for event in connection:
            data = event.to_dict() if hasattr(event, "to_dict") else dict(event)
            kind = data["type"]
            now = time.perf_counter()
            summary = {"type": kind, "t": round(now - mic.t_end, 3) if mic.speech_ended.is_set() else None}
            for key in ("item_id", "response_id", "transcript", "audio_end_ms"):
                if key in data:
                    summary[key] = data[key]
            if kind == "conversation.item.input_audio_transcription.completed":
                summary["emotion"] = data.get("emotion")
            if kind == "error":
                summary["error"] = data["error"]
            if kind == "session.created":
                summary["session_id"] = data["session"].get("claritymentor", {}).get("session_id")
            events.append(summary)
            if kind == "response.created":
                current = {"id": data["response"]["id"], "audio_bytes": 0, "transcript_deltas": 0}
            elif kind == "response.output_audio.delta":
                current["audio_bytes"] = current.get("audio_bytes", 0) + len(base64.b64decode(data["delta"]))
                current.setdefault("first_audio_s", round(now - mic.t_end, 3))
            elif kind == "response.output_audio_transcript.delta":
                current["transcript_deltas"] = current.get("transcript_deltas", 0) + 1
                if barge is not None and not turns and current["transcript_deltas"] == 1:
                    mic.say(barge)  # interrupt this reply
                    barge = None
            elif kind == "response.done":
                response = data["response"]
                current.update(
                    status=response["status"],
                    reason=(response.get("status_details") or {}).get("reason"),
                    usage=response.get("usage"),
                    metadata=response.get("metadata"),
                    transcript=[c.get("transcript") for o in response.get("output", []) for c in o["content"]],
                )
                responses.append(current)
                current = {}
                if len(responses) >= expected_done:
                    break
                if turns:
                    await mic.speech_ended.wait()
                    mic.say(turns.pop(0))
            if time.monotonic() > deadline:
                break
        mic_task.cancel()
    created = next((e for e in events if e["type"] == "session.created"), {})
    print(json.dumps({"events": events, "responses": responses, "session_id": created.get("session_id")}))


if __name__ == "__main__":
    asyncio.run(main())
