"""Test-only entry point: ``python -m tests.hardening.fake_server`` runs the server the way ``python -m
backend.main`` does (same ``build_server``/``run_server``), with fake models and settings from CM_* variables.

It binds 127.0.0.1 on an ephemeral port and prints ``port N`` first. ``FAKE_LLM_WORD_DELAY_S`` makes the fake
LLM take that long per word (a turn that is still generating when a signal arrives).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from backend.config import get_settings
from backend.engines.protocols import ChatMessage, GenerationOptions
from backend.main import create_app
from backend.server import build_server, run_server
from tests.fakes import FakeLLM, FakeModels


@dataclass
class SlowLLM(FakeLLM):
    word_delay_s: float = 0.0

    def stream(
        self, messages: Sequence[ChatMessage], stop: threading.Event, options: GenerationOptions | None = None
    ) -> Iterator[str]:
        for piece in super().stream(messages, stop):
            if stop.wait(self.word_delay_s):
                return
            yield piece


def main() -> None:
    settings = get_settings()
    settings.server.load_models = False
    fakes = FakeModels(llm=SlowLLM(word_delay_s=float(os.environ.get("FAKE_LLM_WORD_DELAY_S", "0"))))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(f"port {sock.getsockname()[1]}", flush=True)
    started = time.monotonic()
    run_server(build_server(settings, create_app(settings, models=fakes.service(settings))), [sock])
    print(f"exited after {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
