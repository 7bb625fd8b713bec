"""A scripted OpenAI-compatible chat server for tests of the remote LLM engine: a real uvicorn on 127.0.0.1.

``POST /v1/chat/completions`` streams ``reply`` word by word as server-sent chunks (``word_delay_s`` apart);
with ``hold_after`` it stops after that many words until ``release`` is set, so a test can interrupt a
generation in progress and see the server notice the client leave (``disconnected``). ``fail_statuses`` are
answered (one per request) before streaming resumes; ``silent`` accepts requests and never answers.
``GET /v1/models`` lists ``model``. Every request body and header set is recorded.

``python -m tests.fake_openai`` serves one in a process (a fixed-latency engine for the replica and scale tests):
it prints ``port N`` and takes ``FAKE_OPENAI_WORD_DELAY_S`` and ``FAKE_OPENAI_FIRST_TOKEN_S``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

REPLY = "That sounds hard. You are not alone in this. What feels heaviest right now?"


@dataclass
class FakeOpenAI:
    model: str = "mentor"
    reply: str = REPLY
    word_delay_s: float = 0.0
    first_token_s: float = 0.0
    hold_after: int | None = None
    error_after: int | None = None  # send an OpenAI error event in the stream after this many words
    silent: bool = False
    fail_statuses: list[int] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    disconnected: threading.Event = field(default_factory=threading.Event)
    holding: threading.Event = field(default_factory=threading.Event)
    requested: threading.Event = field(default_factory=threading.Event)  # set when a chat request arrives
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    words_sent: int = 0

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "test"}]}

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            body = await request.json()
            self.requests.append(body)
            self.headers.append(dict(request.headers))
            self.requested.set()
            if self.fail_statuses:
                status = self.fail_statuses.pop(0)
                return JSONResponse({"error": {"message": f"scripted {status}"}}, status_code=status)
            if body.get("model") != self.model:
                return JSONResponse({"error": {"message": f"model {body.get('model')!r} not found"}}, 404)
            if self.silent:
                await asyncio.sleep(3600)
            limit = body.get("max_tokens")
            return StreamingResponse(self._chunks(request, limit), media_type="text/event-stream")

        return app

    async def _chunks(self, request: Request, limit: int | None) -> AsyncIterator[str]:
        words = self.reply.split(" ")[: limit or None]
        done = False
        try:
            if self.first_token_s:
                await asyncio.sleep(self.first_token_s)
            for i, word in enumerate(words):
                if self.error_after is not None and i == self.error_after:
                    yield _sse({"error": {"message": "scripted failure", "type": "server_error"}})
                    done = True
                    return
                if self.hold_after is not None and i == self.hold_after:
                    self.holding.set()
                    while not self.release.is_set():
                        if await request.is_disconnected():
                            return
                        await asyncio.sleep(0.01)
                elif i and self.word_delay_s:
                    await asyncio.sleep(self.word_delay_s)
                piece = word if i == 0 else " " + word
                self.words_sent += 1
                yield _chunk({"content": piece})
            yield _chunk({}, finish_reason="stop")
            yield "data: [DONE]\n\n"
            done = True
        finally:
            if not done:
                self.disconnected.set()


def _chunk(delta: dict[str, str], finish_reason: str | None = None) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    return _sse({"object": "chat.completion.chunk", "choices": [choice]})


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


@dataclass
class Running:
    fake: FakeOpenAI
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@contextmanager
def serve_fake_openai(fake: FakeOpenAI | None = None, port: int = 0) -> Iterator[Running]:
    """Serve ``fake`` on ``port`` (0: an ephemeral one, pre-bound) in a thread until the block ends."""
    fake = fake or FakeOpenAI()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    server = uvicorn.Server(uvicorn.Config(fake.app(), log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the fake OpenAI server did not start"
        thread.join(0.01)
    try:
        yield Running(fake, sock.getsockname()[1])
    finally:
        fake.release.set()
        server.should_exit = True
        thread.join(10)
        sock.close()


def set_when(happened: threading.Event, then: threading.Event, timeout_s: float = 10.0) -> None:
    """Set ``then`` from a helper thread as soon as ``happened`` is set (e.g. stop a turn at its first request)."""

    def wait_then_set() -> None:
        if happened.wait(timeout_s):
            then.set()

    threading.Thread(target=wait_then_set, daemon=True).start()


def dead_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def main() -> None:
    fake = FakeOpenAI(
        word_delay_s=float(os.environ.get("FAKE_OPENAI_WORD_DELAY_S", "0")),
        first_token_s=float(os.environ.get("FAKE_OPENAI_FIRST_TOKEN_S", "0")),
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", int(os.environ.get("FAKE_OPENAI_PORT", "0"))))
    sock.listen(1024)
    print(f"port {sock.getsockname()[1]}", flush=True)
    uvicorn.Server(uvicorn.Config(fake.app(), log_level="warning")).run(sockets=[sock])


if __name__ == "__main__":
    main()
