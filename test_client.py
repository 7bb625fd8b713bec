"""Automated WebSocket client for ClarityMentor's /ws/voice (protocol v1).

Sends one turn (a WAV file, espeak-ng speech, silence, or a text message), prints every message as it
arrives with the seconds since the end of the user's speech, then a summary. Exit status: 0 when a turn
completed (or, for silence, when no speech was detected and no error came), 1 on an ``error`` event,
2 on timeout, connection failure, or speech the server never picked up.

    python test_client.py --say "I feel stressed about my exams." --out reply.wav
    python test_client.py --wav question.wav --commit --fast
    python test_client.py --text "I feel sad today." --session SESSION_ID
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlencode, urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection

from backend.core.audio_utils import TARGET_RATE, read_wav, resample_pcm16, write_wav
from scripts.common.espeak import speak_pcm

CHUNK_MS = 20
QUIET_AFTER_REPLY_S = 1.0  # without audio.end, a reply counts as complete after this much quiet


@dataclass
class TurnState:
    text_turn: bool
    silence_input: bool
    speech_end: float | None = None  # monotonic time the user's speech ended (or the text was sent)
    sent_all: float | None = None
    session_id: str | None = None
    output_rate: int | None = None
    turn_started: bool = False
    transcript: str | None = None
    emotion: dict[str, Any] | None = None
    response: str | None = None
    deltas: list[str] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    first_audio_s: float | None = None
    audio_end: bool = False
    metrics: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    last_message: float = field(default_factory=time.monotonic)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="ws://127.0.0.1:8000/ws/voice")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--wav", help="a 16-bit WAV file to send (resampled to 16 kHz)")
    source.add_argument("--say", help="text spoken by espeak-ng and sent as audio")
    source.add_argument("--text", help="send a text turn instead of audio")
    p.add_argument("--voice", default="en-us", help="espeak-ng voice for --say")
    p.add_argument("--session", help="resume this session id")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--realtime", dest="realtime", action="store_true", default=True, help="pace audio (default)")
    pace.add_argument("--fast", dest="realtime", action="store_false", help="send audio as fast as possible")
    p.add_argument("--trailing-silence", type=float, default=1.0, help="seconds of silence after the speech")
    p.add_argument("--commit", action="store_true", help="send input.commit after the audio")
    p.add_argument("--out", help="write the received reply audio to this WAV file")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for the whole exchange")
    p.add_argument("--silence-wait", type=float, default=3.0, help="seconds to wait for a turn after sending")
    p.add_argument("--api-key", help="sent as ?api_key= and as the X-API-Key header")
    return p.parse_args(argv)


def load_input(args: argparse.Namespace) -> bytes:
    """The user's speech as 16 kHz PCM16 mono (empty for a text turn). Blocking."""
    if args.text is not None:
        return b""
    if args.wav:
        pcm, rate = read_wav(args.wav)
        return resample_pcm16(pcm, rate, TARGET_RATE)
    if args.say:
        return speak_pcm(args.say, voice=args.voice, sample_rate=TARGET_RATE)
    return bytes(2 * TARGET_RATE * 2)  # the seed's default: 2 s of silence


def _with_api_key(url: str, api_key: str | None) -> str:
    if not api_key:
        return url
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode({"api_key": api_key})) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


class Client:
    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.args = args
        self.out = out
        self.state = TurnState(text_turn=args.text is not None, silence_input=not (args.wav or args.say))
        self.changed = asyncio.Event()

    def log(self, what: str) -> None:
        end = self.state.speech_end
        stamp = f"{time.monotonic() - end:+8.3f}s" if end is not None else "   -.---s"
        print(f"[{stamp}] {what}", file=self.out, flush=True)

    # --- receiving ---------------------------------------------------------------------------------------

    def on_message(self, message: str | bytes) -> None:
        s = self.state
        s.last_message = time.monotonic()
        if isinstance(message, bytes):
            self.log(f"[audio {len(message)} bytes]")
            if s.first_audio_s is None and s.speech_end is not None:
                s.first_audio_s = time.monotonic() - s.speech_end
            s.audio.extend(message)
        else:
            self.log(message if len(message) <= 400 else message[:400] + "...")
            try:
                event = json.loads(message)
            except json.JSONDecodeError:
                event = {}
            self.on_event(event if isinstance(event, dict) else {})
        self.changed.set()

    def on_event(self, event: dict[str, Any]) -> None:
        s, kind = self.state, event.get("type")
        if kind not in (None, "session", "error"):
            s.turn_started = True  # speech_started, status, transcript...: the server took up a turn
        if kind == "session":
            s.session_id = event.get("session_id")
            s.output_rate = s.output_rate or event.get("output_sample_rate")
        elif kind == "audio.start":
            s.output_rate = event.get("sample_rate") or s.output_rate
        elif kind == "audio.end":
            s.audio_end = True
        elif kind == "transcript":
            s.transcript = event.get("text")
        elif kind == "emotion":
            s.emotion = event.get("data")
        elif kind == "response.delta":
            s.deltas.append(str(event.get("text", "")))
        elif kind == "response":
            s.response = event.get("text")
        elif kind == "metrics":
            s.metrics = event.get("timings")
        elif kind == "error":
            s.error = event

    async def receive(self, ws: ClientConnection) -> None:
        async for message in ws:
            self.on_message(message)

    # --- sending -----------------------------------------------------------------------------------------

    async def send(self, ws: ClientConnection, speech: bytes) -> None:
        start: dict[str, Any] = {"type": "session.start", "sample_rate": TARGET_RATE}
        if self.args.session:
            start["session_id"] = self.args.session
        await ws.send(json.dumps(start))
        if self.state.text_turn:
            await ws.send(json.dumps({"type": "text", "text": self.args.text}))
            self.state.speech_end = self.state.sent_all = time.monotonic()
            return
        trailing = bytes(2 * int(self.args.trailing_silence * TARGET_RATE))
        chunk = 2 * TARGET_RATE * CHUNK_MS // 1000
        begin = time.monotonic()
        sent = 0
        for part, audio in enumerate((speech, trailing)):
            for i in range(0, len(audio), chunk):
                piece = audio[i : i + chunk]
                if self.args.realtime:  # pacing a client's microphone: sleep until this chunk is due
                    await asyncio.sleep(max(0.0, begin + sent / (2 * TARGET_RATE) - time.monotonic()))
                await ws.send(piece)
                sent += len(piece)
            if part == 0:
                self.state.speech_end = time.monotonic()
        if self.args.commit:
            await ws.send(json.dumps({"type": "input.commit"}))
        self.state.sent_all = time.monotonic()

    # --- deciding when the turn is over ------------------------------------------------------------------

    def verdict(self) -> int | None:
        """Exit status once known, else None."""
        s, now = self.state, time.monotonic()
        if s.error is not None:
            return 1
        if s.audio_end:
            return 0
        replied = s.response is not None and (bool(s.audio) or s.text_turn)
        if replied and (s.metrics is not None or now - s.last_message >= QUIET_AFTER_REPLY_S):
            return 0
        if s.sent_all is not None and not s.turn_started and now - s.sent_all >= self.args.silence_wait:
            return 0 if s.silence_input else 2
        return None

    async def wait_for_verdict(self) -> int:
        while True:
            result = self.verdict()
            if result is not None:
                return result
            self.changed.clear()
            with contextlib.suppress(TimeoutError):  # re-check the clock-based conditions
                await asyncio.wait_for(self.changed.wait(), timeout=0.1)

    async def run(self) -> int:
        args = self.args
        speech = await asyncio.to_thread(load_input, args)
        url = _with_api_key(args.url, args.api_key)
        headers = {"X-API-Key": args.api_key} if args.api_key else None
        try:
            async with asyncio.timeout(args.timeout):
                async with websockets.connect(url, additional_headers=headers, proxy=None, max_size=None) as ws:
                    return await self._exchange(ws, speech)
        except TimeoutError:
            self.log(f"timed out after {args.timeout:g} s")
            return 2
        except (OSError, websockets.exceptions.WebSocketException) as exc:
            self.log(f"connection failed: {exc}")
            return 2

    async def _exchange(self, ws: ClientConnection, speech: bytes) -> int:
        receiver = asyncio.create_task(self.receive(ws))
        sender = asyncio.create_task(self.send(ws, speech))
        judge = asyncio.create_task(self.wait_for_verdict())
        tasks = (sender, receiver, judge)
        try:
            done, _ = await asyncio.wait({receiver, judge, sender}, return_when=asyncio.FIRST_COMPLETED)
            if sender in done and sender.exception() is None:  # all sent: now wait for the reply
                done, _ = await asyncio.wait({receiver, judge}, return_when=asyncio.FIRST_COMPLETED)
            if judge in done:
                return judge.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        code = self.verdict()
        if code is not None:
            return code
        self.log("connection closed before the turn completed")
        return 2

    def summary(self, code: int) -> None:
        s = self.state
        print("---- summary ----", file=self.out)
        rate = s.output_rate or 22050
        rows = [
            ("session", s.session_id),
            ("transcript", s.transcript),
            ("emotion", (s.emotion or {}).get("label") if s.emotion else None),
            ("response", s.response if s.response is not None else ("".join(s.deltas) or None)),
            ("first audio", f"{s.first_audio_s:.3f} s after end of speech" if s.first_audio_s is not None else None),
            ("audio", f"{len(s.audio)} bytes, {len(s.audio) / 2 / rate:.2f} s at {rate} Hz" if s.audio else None),
            ("metrics", json.dumps(s.metrics) if s.metrics else None),
            ("error", f"{s.error.get('code')}: {s.error.get('message')}" if s.error else None),
        ]
        for name, value in rows:
            if value is not None:
                print(f"{name:>12}: {value}", file=self.out)
        if s.sent_all is not None and not s.turn_started and s.error is None and not s.text_turn:
            print(f"{'result':>12}: no speech detected", file=self.out)
        print(f"{'exit':>12}: {code}", file=self.out, flush=True)


def run_client(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run one exchange and print it to ``out`` (stdout by default); returns the exit status. Blocking."""
    client = Client(args, out or sys.stdout)
    code = asyncio.run(client.run())
    if args.out and client.state.audio:
        write_wav(args.out, bytes(client.state.audio), client.state.output_rate or 22050)
        print(f"{'wrote':>12}: {args.out}", file=client.out)
    client.summary(code)
    return code


def main() -> None:
    sys.exit(run_client(parse_args()))


if __name__ == "__main__":
    main()
