"""Benchmark talker: one /ws/voice connection that speaks utterances at real-time pace and times the answer.

Every client-side milestone is measured from the moment the last speech chunk was sent (end of speech).
Used by scripts/bench/latency.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from scripts.common.bench_speech import CHUNK_BYTES, CHUNK_MS, Utterance, silence_chunk

LEAD_IN_S = 0.3
CHUNK_S = CHUNK_MS / 1000
MILESTONES: tuple[str, ...] = (
    "speech_stopped",
    "transcript",
    "emotion",
    "first_text",
    "first_audio",
    "last_audio",
)
# Client milestones that must come in this order (first_text: first response.delta, or the response).
ORDERED: tuple[str, ...] = MILESTONES


@dataclass
class Arrival:
    t: float
    event: dict[str, Any] | None  # None for a binary (audio) frame
    nbytes: int = 0


@dataclass
class Talker:
    """One connection. ``log`` holds every message with its arrival time (perf_counter)."""

    ws: ClientConnection
    session: dict[str, Any]
    log: list[Arrival] = field(default_factory=list)
    closed: bool = False
    _reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, ws_url: str) -> Talker:
        ws = await connect(ws_url, max_size=None, compression=None, open_timeout=60, ping_interval=None)
        first = json.loads(await asyncio.wait_for(ws.recv(), 60))
        if first.get("type") != "session":
            await ws.close()
            raise RuntimeError(f"expected a session event first, got {first.get('type')!r}")
        talker = cls(ws, first)
        talker._reader = asyncio.create_task(talker._read())
        return talker

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                now = time.perf_counter()
                if isinstance(message, bytes):
                    self.log.append(Arrival(now, None, len(message)))
                else:
                    self.log.append(Arrival(now, json.loads(message)))
        except Exception:  # connection closed or failed: the turn waiting on it times out with closed=True
            pass
        finally:
            self.closed = True

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader

    # --- voice turns ------------------------------------------------------------------------------------

    async def voice_turn(self, utt: Utterance, timeout_s: float = 90.0) -> dict[str, Any]:
        """Speak ``utt`` in 20 ms chunks every 20 ms, then silence until the turn ends; return its record."""
        speech = [utt.pcm[i : i + CHUNK_BYTES] for i in range(0, len(utt.pcm), CHUNK_BYTES)]
        lead = [silence_chunk()] * int(LEAD_IN_S / CHUNK_S)
        del self.log[:]  # the previous turn has ended: only this turn's messages are kept
        start_index = 0
        next_t = time.perf_counter()
        for chunk in lead + speech:
            next_t += CHUNK_S
            await _sleep_until(next_t)
            await self.ws.send(chunk)
        t_end = time.perf_counter()
        quiet = silence_chunk()
        deadline = t_end + timeout_s
        outcome = "timeout"
        while time.perf_counter() < deadline:
            found = _turn_outcome(self.log, start_index, t_end)
            if found is not None:
                outcome = found
                break
            if self.closed:
                outcome = "closed"
                break
            next_t = max(next_t + CHUNK_S, time.perf_counter() - CHUNK_S)
            await _sleep_until(next_t)
            await self.ws.send(quiet)
        record = build_record(self.log[start_index:], t_end)
        record["outcome"] = outcome if record.get("outcome") is None else record["outcome"]
        record["utterance"] = utt.describe()
        return record

    # --- text turns (soak) ------------------------------------------------------------------------------

    async def text_turn(self, text: str, timeout_s: float = 120.0) -> dict[str, float] | None:
        """Send one text turn and wait for its metrics; returns the server timings, None on error/timeout."""
        start_index = len(self.log)
        await self.ws.send(json.dumps({"type": "text", "text": text}))
        deadline = time.perf_counter() + timeout_s
        seen = start_index
        while time.perf_counter() < deadline and not self.closed:
            while seen < len(self.log):
                event = self.log[seen].event
                seen += 1
                if event is None:
                    continue
                if event["type"] == "metrics":
                    del self.log[:]
                    return dict(event.get("timings", {}))
                if event["type"] == "error":
                    del self.log[:]
                    return None
            await asyncio.sleep(0.01)
        return None


async def _sleep_until(t: float) -> None:
    delay = t - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


def _speech_turn_id(log: list[Arrival], start: int, t_end: float) -> str | None:
    for arrival in log[start:]:
        ev = arrival.event
        if ev and ev["type"] == "speech_stopped" and not ev.get("discarded") and arrival.t >= t_end:
            return str(ev["turn_id"])
    return None


def _turn_outcome(log: list[Arrival], start: int, t_end: float) -> str | None:
    """'ok' once the turn's metrics arrived, 'error'/'interrupted' if it ended otherwise, else None."""
    turn_id = _speech_turn_id(log, start, t_end)
    if turn_id is None:
        return None
    for arrival in log[start:]:
        ev = arrival.event
        if ev is None or arrival.t < t_end:
            continue
        if ev["type"] == "metrics" and ev.get("turn_id") == turn_id:
            return "ok"
        if ev["type"] == "interrupted" and ev.get("turn_id") == turn_id:
            return "interrupted"
        if ev["type"] == "error":
            return "error"
    return None


def build_record(log: list[Arrival], t_end: float) -> dict[str, Any]:
    """Milestones (seconds after end of speech) and server timings of the turn whose speech ended at t_end."""
    rel: dict[str, float] = {}
    record: dict[str, Any] = {"client": rel, "outcome": None, "split": False}
    turn_id = _speech_turn_id(log, 0, t_end)
    record["split"] = any(
        a.event is not None and a.event["type"] == "speech_stopped" and a.t < t_end and not a.event.get("discarded")
        for a in log
    )
    # A reply that began before the person finished: any of its text or audio arrived before the end of speech.
    record["early_reply"] = any(
        a.t < t_end and (a.event is None or a.event["type"] in ("response.delta", "response", "audio.start"))
        for a in log
    )
    if turn_id is None:
        return record
    record["turn_id"] = turn_id
    in_audio = False
    deltas: list[str] = []
    playback = Playback()
    for a in log:
        ev = a.event
        if a.t < t_end:
            continue
        at = round(a.t - t_end, 4)
        if ev is None:
            if in_audio:
                rel.setdefault("first_audio", at)
                rel["last_audio"] = at
                playback.frame(a.t, a.nbytes)
            continue
        if ev.get("turn_id") not in (None, turn_id):
            continue
        kind = ev["type"]
        if kind == "speech_stopped":
            rel.setdefault("speech_stopped", at)
            record.setdefault("server_utterance_s", ev.get("duration_s"))
        elif kind in ("transcript", "emotion", "response", "audio.end", "metrics"):
            rel.setdefault(kind.replace(".", "_"), at)
            if kind == "transcript":
                record["transcript"] = ev.get("text", "")
            elif kind == "emotion":
                record["emotion"] = ev.get("data", {}).get("label")
            elif kind == "response":
                record["response"] = ev.get("text", "")
                rel.setdefault("first_text", at)
            elif kind == "audio.end":
                record["audio_s"] = ev.get("duration_s")
                in_audio = False
            else:
                record["server"] = dict(ev.get("timings", {}))
        elif kind == "response.delta":
            rel.setdefault("first_delta", at)
            rel.setdefault("first_text", at)
            deltas.append(ev.get("text", ""))
        elif kind == "audio.start":
            rel.setdefault("audio_start", at)
            in_audio = True
            playback.sample_rate = int(ev.get("sample_rate") or playback.sample_rate)
        elif kind in ("error", "interrupted"):
            record["outcome"] = "error" if kind == "error" else "interrupted"
            record["error"] = ev.get("code") or kind
            break
        if kind == "metrics":
            break
    record["deltas"] = len(deltas)
    if playback.started_at is not None:  # silence is measured only once the reply began to play
        record.update(playback.summary())
    record.update(derived_rates(record))
    return record


@dataclass
class Playback:
    """A client that plays the reply's audio as it arrives, at real-time rate: how long it runs dry mid-reply.

    Playback starts with the first frame; each frame extends the play-out deadline by its duration. A frame that
    arrives after the deadline (everything before it has finished playing) ends a gap of silence lasting
    ``arrival - deadline``. Time after the last frame is not silence: the reply is over."""

    sample_rate: int = 16000
    started_at: float | None = None  # arrival of the first frame (the listener hears the reply begin)
    playing_until: float | None = None  # the play-out deadline: when the audio received so far has all played
    gaps: list[float] = field(default_factory=list)  # each stretch of silence after the first frame, in order
    audio_s: float = 0.0  # seconds of audio received

    def frame(self, t: float, nbytes: int) -> None:
        duration = nbytes / 2 / self.sample_rate
        if self.playing_until is None:
            self.started_at = t
        elif t > self.playing_until:
            self.gaps.append(t - self.playing_until)
        self.playing_until = max(t, self.playing_until or t) + duration
        self.audio_s += duration

    @property
    def stalled_s(self) -> float:
        """Total silence between the first frame and the end of the reply."""
        return sum(self.gaps)

    @property
    def longest_gap_s(self) -> float:
        return max(self.gaps, default=0.0)

    def summary(self) -> dict[str, float | int]:
        """The record's fields: stall_s (total silence), stall_max_s (longest gap), stall_count (gaps)."""
        return {
            "stall_s": round(self.stalled_s, 4),
            "stall_max_s": round(self.longest_gap_s, 4),
            "stall_count": len(self.gaps),
        }


def derived_rates(record: dict[str, Any]) -> dict[str, float]:
    """Real-time factors and LLM speed from the server's stage durations."""
    server: dict[str, float] = record.get("server") or {}
    out: dict[str, float] = {}
    utt_s = record.get("server_utterance_s")
    if server.get("stt_s") is not None and utt_s:
        out["stt_rtf"] = round(server["stt_s"] / float(utt_s), 4)
    if server.get("tts_total_s") is not None and record.get("audio_s"):
        out["tts_rtf"] = round(server["tts_total_s"] / float(record["audio_s"]), 4)
    words = len(str(record.get("response", "")).split())
    if server.get("llm_total_s") and words:
        out["llm_words_per_s"] = round(words / server["llm_total_s"], 2)
    n = int(record.get("deltas", 0))
    decode_s = server.get("llm_total_s", 0.0) - server.get("llm_first_token_s", 0.0)
    if n > 1 and decode_s > 0 and "llm_first_token_s" in server:
        out["llm_pieces_per_s"] = round((n - 1) / decode_s, 2)
    return out
