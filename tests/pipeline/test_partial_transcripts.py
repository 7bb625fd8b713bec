"""Partial transcripts: what was heard so far is sent while the person speaks, one transcription at a time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.engines.protocols import Transcription
from backend.main import create_app
from backend.pipeline.events import PipelineEvent, TranscriptPartial
from backend.pipeline.partial_transcripts import PartialTranscripts
from tests.api.wsutil import receive_until
from tests.conftest import make_settings
from tests.fakes import FakeModels, silence_pcm, tone_pcm

pytestmark = pytest.mark.fast


class _Scripted:
    """transcribe() answers with the next scripted text once ``release`` is set."""

    def __init__(self, *texts: str) -> None:
        self.texts = list(texts)
        self.calls: list[int] = []
        self.release = asyncio.Event()

    async def __call__(self, audio: bytes) -> Transcription:
        self.calls.append(len(audio))
        await self.release.wait()
        return Transcription(self.texts.pop(0), "en", len(audio) / 32000)


def test_due_every_interval_one_at_a_time_and_only_changes_are_sent() -> None:
    """Due after each interval of speech but never while one runs; an unchanged text is not sent again."""

    async def scenario() -> list[PipelineEvent]:
        sent: list[PipelineEvent] = []

        async def emit(event: PipelineEvent) -> None:
            sent.append(event)

        stt = _Scripted("I feel", "I feel", "I feel tired")
        partials = PartialTranscripts(stt, emit, interval_s=0.5)
        assert not partials.due("u1", 0.4)
        assert partials.due("u1", 0.5)
        partials.start("u1", b"\x00" * 16000, 0.5)
        assert not partials.due("u1", 1.2)  # the first is still running
        stt.release.set()
        for seconds in (1.2, 1.8):
            while not partials.due("u1", seconds):
                await asyncio.sleep(0)
            partials.start("u1", b"\x00" * 16000, seconds)
        while stt.texts:
            await asyncio.sleep(0)
        for _ in range(5):
            await asyncio.sleep(0)
        return sent

    sent = asyncio.run(scenario())
    assert sent == [TranscriptPartial("u1", "I feel"), TranscriptPartial("u1", "I feel tired")]


def test_reset_drops_a_late_result_and_a_new_utterance_starts_over() -> None:
    """A transcription still running when the utterance ends is cancelled and never sent."""

    async def scenario() -> tuple[list[PipelineEvent], bool]:
        sent: list[PipelineEvent] = []

        async def emit(event: PipelineEvent) -> None:
            sent.append(event)

        stt = _Scripted("late words")
        partials = PartialTranscripts(stt, emit, interval_s=0.3)
        partials.start("u1", b"\x00" * 9600, 0.3)
        await asyncio.sleep(0)
        partials.reset()
        stt.release.set()
        for _ in range(5):
            await asyncio.sleep(0)
        return sent, partials.due("u2", 0.3)

    sent, due_again = asyncio.run(scenario())
    assert sent == []
    assert due_again


def test_off_when_the_interval_is_zero() -> None:
    """partial_transcript_ms = 0 never starts a transcription."""

    async def emit(event: PipelineEvent) -> None:
        raise AssertionError("nothing should be emitted")

    partials = PartialTranscripts(_Scripted(), emit, interval_s=0.0)
    assert not partials.due("u1", 10.0)


def test_voice_turn_sends_transcript_delta_before_the_final_transcript(tmp_path: Path) -> None:
    """Over /ws/voice a 2 s utterance gets transcript.delta events (what was heard so far) between speech_started
    and speech_stopped, then the turn's transcript as before."""
    settings = make_settings(tmp_path, pipeline__partial_transcript_ms=500, pipeline__early_start=False)
    fakes = FakeModels()
    with TestClient(create_app(settings, models=fakes.service(settings))) as client:
        with client.websocket_connect("/ws/voice") as ws:
            ws.receive_json()
            audio = silence_pcm(0.2) + tone_pcm(2.0) + silence_pcm(0.8)
            for i in range(0, len(audio), 640):
                ws.send_bytes(audio[i : i + 640])
            got = receive_until(ws, "metrics")
    types = [e["type"] for e in got.events]
    deltas = [e for e in got.events if e["type"] == "transcript.delta"]
    assert deltas, types
    assert types.index("speech_started") < types.index("transcript.delta") < types.index("transcript")
    assert deltas[0]["text"] == fakes.stt.transcript
    assert deltas[0]["turn_id"] == next(e for e in got.events if e["type"] == "speech_started")["turn_id"]
    assert len(deltas) == 1  # the fake always hears the same words: unchanged text is not repeated
    assert len(fakes.stt.calls) >= 2  # previews plus the turn's own transcription


def test_a_preview_is_skipped_under_load_and_tried_again_an_interval_later() -> None:
    """While ``allowed`` says no (another preview runs, or several replies are being generated) no preview
    starts; the next try is an interval of speech later, not at every frame."""
    load = {"busy": True}

    async def transcribe(audio: bytes) -> Transcription:
        return Transcription("hi", "en", 0.1)

    async def emit(event: PipelineEvent) -> None:
        return None

    partial = PartialTranscripts(transcribe, emit, 0.7, allowed=lambda: not load["busy"])
    assert not partial.due("u1", 0.7)  # busy: skipped
    load["busy"] = False
    assert not partial.due("u1", 1.0)  # not yet an interval after the skipped try
    assert partial.due("u1", 1.4)


def test_the_server_allows_one_preview_at_a_time_and_none_while_replies_are_generated(tmp_path: Path) -> None:
    """PipelineServices.preview_allowed: no while a preview runs or two replies hold the LLM."""
    import threading

    from tests.pipeline.recording import pipeline_harness, run_async

    with pipeline_harness(tmp_path) as h:
        services = h.pipeline.services

        async def scenario() -> list[bool]:
            seen = [services.preview_allowed()]
            future = services.transcribe_soon(silence_pcm(0.2), preview=True)
            seen.append(services.preview_allowed())
            await future
            seen.append(services.preview_allowed())
            async with services.llm_scheduler.generation(threading.Event(), pausable=False):
                seen.append(services.preview_allowed())
                async with services.llm_scheduler.generation(threading.Event(), pausable=False):
                    seen.append(services.preview_allowed())
            return seen

        assert run_async(scenario()) == [True, False, True, True, False]
