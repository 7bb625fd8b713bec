"""Browser tier: the real server (real models) in a thread, speech WAVs from espeak-ng, headless Chromium."""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backend.config import REPO_ROOT, Settings

DEBIAN_CHROMIUM = Path("/usr/lib/chromium/chromium")


def find_chromium() -> Path | None:
    """Chromium's binary: Debian's (``/usr/bin/chromium`` is a wrapper script around it), else ``chromium`` or
    ``chromium-browser`` on PATH; None when there is none."""
    if DEBIAN_CHROMIUM.exists():
        return DEBIAN_CHROMIUM
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found is not None:
            return Path(found)
    return None


CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (not on PATH nor at /usr/lib/chromium; apt-get install chromium)",
)
ARTIFACTS = REPO_ROOT / "artifacts" / "browser"
SERVER_START_TIMEOUT_S = 600.0  # first run converts the LLM into models/cache/


def chromium_args(wav: Path) -> list[str]:
    """The flags shown to work here (see BROWSER_TESTING.md): fake microphone fed once from ``wav``."""
    return [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        "--autoplay-policy=no-user-gesture-required",
    ]


# --- speech files ---------------------------------------------------------------------------------------


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


def espeak_wav(text: str, out: Path) -> Path:
    """``text`` spoken by espeak-ng, as 16 kHz mono 16-bit PCM (a 24-bit or odd file records silence)."""
    raw = out.with_suffix(".raw.wav")
    _run("espeak-ng", "-v", "en-us", "-s", "160", "-w", str(raw), text)
    _run("sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(out))
    return out


def padded_wav(src: Path, out: Path, before_s: float, after_s: float) -> Path:
    _run("sox", str(src), "-r", "16000", "-c", "1", "-b", "16", str(out), "pad", str(before_s), str(after_s))
    return out


# --- what the server received ---------------------------------------------------------------------------


@dataclass
class AudioTally:
    """Binary frames the server received on /ws/voice, counted by an ASGI wrapper in front of the app."""

    byte_count: int = 0
    sum_squares: float = 0.0
    samples: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, data: bytes) -> None:
        pcm = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float64)
        with self.lock:
            self.byte_count += len(data)
            self.sum_squares += float(np.dot(pcm, pcm))
            self.samples += pcm.size

    @property
    def rms(self) -> float:
        return math.sqrt(self.sum_squares / self.samples) if self.samples else 0.0

    def reset(self) -> None:
        with self.lock:
            self.byte_count, self.sum_squares, self.samples = 0, 0.0, 0


class TallyingApp:
    """ASGI wrapper: passes everything through, tallying binary WebSocket messages from clients."""

    def __init__(self, app: Any, tally: AudioTally) -> None:
        self.app = app
        self.tally = tally

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return

        async def counting_receive() -> Any:
            message = await receive()
            data = message.get("bytes")
            if message["type"] == "websocket.receive" and data:
                self.tally.add(data)
            return message

        await self.app(scope, counting_receive, send)


# --- the server -----------------------------------------------------------------------------------------


@dataclass
class LiveServer:
    url: str
    tally: AudioTally


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The real app (real models) under uvicorn in a thread, on a socket already bound to 127.0.0.1:0."""
    import uvicorn

    from backend.main import create_app

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    tmp = tmp_path_factory.mktemp("browser-db")
    settings = Settings()
    settings.database.url = f"sqlite:///{tmp}/b.db"
    tally = AudioTally()
    app = TallyingApp(create_app(settings), tally)
    config = uvicorn.Config(
        app,
        ws="websockets-sansio",
        ws_max_size=settings.limits.ws_max_message_bytes,
        ws_per_message_deflate=False,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not server.started:  # the server's own flag; the thread ends early if startup failed
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the real server did not start (see the log above)")
        thread.join(0.1)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", tally)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng and sox are needed to make the test speech")
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="module")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
