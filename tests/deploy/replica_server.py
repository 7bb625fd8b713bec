"""Test-only replica: ``python -m tests.deploy.replica_server`` runs the server as ``python -m backend.main``
does (same ``build_server``/``run_server``, settings from CM_* variables: database, auth, port), with engines
of fixed latency that sleep instead of computing (no CPU), so several replicas fit on a small machine.

It listens on ``CM_SERVER__PORT`` (SO_REUSEADDR, so a replica restarted after kill -9 gets its port back) and
prints ``port N``. Latencies, in seconds: ``REPLICA_STT_S``, ``REPLICA_EMOTION_S``, ``REPLICA_LLM_FIRST_S``
(before the first word), ``REPLICA_LLM_WORD_S`` (each further word), ``REPLICA_TTS_S`` (per chunk).
``REPLICA_LLM_URL``: use the remote engine (llm.backend openai, model "mentor") at that base URL instead.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from backend.config import LLMSettings, get_settings
from backend.engines.llm.openai import load as load_remote
from backend.engines.model_service import ModelService
from backend.engines.protocols import (
    ChatMessage,
    EmotionResult,
    FloatAudio,
    GenerationOptions,
    SynthesizedSpeech,
    Transcription,
    VoiceStyle,
)
from backend.main import create_app
from backend.server import build_server, run_server
from tests.fakes import FakeEmotion, FakeLLM, FakeSTT, FakeTTS, FakeVADEngine


def _seconds(name: str, default: float = 0.0) -> float:
    return float(os.environ.get(name, default))


@dataclass
class SleepySTT(FakeSTT):
    latency_s: float = 0.0

    def transcribe(self, audio: FloatAudio) -> Transcription:
        time.sleep(self.latency_s)
        return super().transcribe(audio)


@dataclass
class SleepyEmotion(FakeEmotion):
    latency_s: float = 0.0

    def detect(self, text: str, audio: FloatAudio | None = None) -> EmotionResult:
        time.sleep(self.latency_s)
        return super().detect(text, audio)


@dataclass
class SleepyLLM(FakeLLM):
    first_s: float = 0.0
    word_s: float = 0.0

    def stream(
        self, messages: Sequence[ChatMessage], stop: threading.Event, options: GenerationOptions | None = None
    ) -> Iterator[str]:
        for i, piece in enumerate(super().stream(messages, stop)):
            if stop.wait(self.first_s if i == 0 else self.word_s):
                return
            yield piece


@dataclass
class SleepyTTS(FakeTTS):
    latency_s: float = 0.0

    def synthesize(self, text: str, style: VoiceStyle) -> SynthesizedSpeech:
        time.sleep(self.latency_s)
        return super().synthesize(text, style)


def main() -> None:
    settings = get_settings()
    settings.server.load_models = False
    settings.llm.warm_between_turns = False
    remote_url = os.environ.get("REPLICA_LLM_URL")
    llm = (
        load_remote(LLMSettings.model_validate({"backend": "openai", "model": "mentor", "base_url": remote_url}))
        if remote_url
        else SleepyLLM(first_s=_seconds("REPLICA_LLM_FIRST_S"), word_s=_seconds("REPLICA_LLM_WORD_S"))
    )
    models = ModelService.from_components(
        settings,
        stt=SleepySTT(latency_s=_seconds("REPLICA_STT_S")),
        vad=FakeVADEngine(),
        emotion=SleepyEmotion(latency_s=_seconds("REPLICA_EMOTION_S")),
        llm=llm,
        tts=SleepyTTS(latency_s=_seconds("REPLICA_TTS_S")),
    )
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", settings.server.port))
    sock.listen(1024)
    print(f"port {sock.getsockname()[1]}", flush=True)
    run_server(build_server(settings, create_app(settings, models=models), backlog=1024), [sock])


if __name__ == "__main__":
    main()
