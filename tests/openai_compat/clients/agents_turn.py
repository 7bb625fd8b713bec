"""OpenAI Agents SDK client: one spoken turn through ``RealtimeRunner`` against /v1/realtime.

Speaks a raw 24 kHz PCM16 file at real-time pace (silence after it, like a microphone), waits for the agent's
turn to end, and prints a JSON summary: the session event types seen, error events (the SDK reports every
server event its pydantic validation rejects as one), the reply's audio bytes and the final history.
Usage: python agents_turn.py --url ws://127.0.0.1:P/v1/realtime?model=claritymentor --say a.pcm
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from agents.realtime import RealtimeAgent, RealtimeRunner

RATE = 24000
CHUNK_S = 0.04


async def speak(session: Any, pcm: bytes, stop: asyncio.Event) -> None:
    step = int(RATE * CHUNK_S) * 2
    chunks = [pcm[i : i + step] for i in range(0, len(pcm), step)]
    next_t = time.perf_counter()
    while not stop.is_set():
        await session.send_audio(chunks.pop(0) if chunks else bytes(step))
        next_t += CHUNK_S
        await asyncio.sleep(max(0.0, next_t - time.perf_counter()))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--say", required=True)
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args()
    agent = RealtimeAgent(name="mentor", instructions="You are a calm mentor.")
    runner = RealtimeRunner(agent)
    kinds: list[str] = []
    errors: list[str] = []
    raw_types: list[str] = []
    audio_bytes = 0
    history: list[dict[str, Any]] = []
    stop = asyncio.Event()
    session = await runner.run(model_config={"url": args.url, "api_key": "sk-test"})
    async with session:
        mic = asyncio.create_task(speak(session, Path(args.say).read_bytes(), stop))
        deadline = time.monotonic() + args.timeout
        async for event in session:
            kinds.append(event.type)
            if event.type == "error":
                errors.append(repr(event.error)[:500])
            elif event.type == "audio":
                audio_bytes += len(event.audio.data)
            elif event.type == "raw_model_event":
                data = getattr(event.data, "data", None)
                if isinstance(data, dict):
                    raw_types.append(str(data.get("type")))
            elif event.type == "history_updated":
                history = [item.model_dump(mode="json") for item in event.history]
            if event.type == "agent_end" or time.monotonic() > deadline:
                break
        stop.set()
        await mic
    print(
        json.dumps(
            {"events": kinds, "errors": errors, "raw": raw_types, "audio_bytes": audio_bytes, "history": history}
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
