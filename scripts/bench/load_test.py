"""Load and soak test for /ws/voice on 127.0.0.1: memory per idle connection, talking sessions, flat memory.

    python -m scripts.bench.load_test --spawn fake --idle 1000 --talkers 8 --duration 600 --json out.json
    python -m scripts.bench.load_test --url ws://127.0.0.1:8000/ws/voice --pid 1234 --idle 200 --talkers 4 --duration 60

With ``--spawn fake`` (or ``real``) the script starts the server itself in a child process on an ephemeral port
(fake models measure the server, not the LLM); otherwise give the server's ``--url`` and ``--pid``. Only 127.0.0.1
is accepted. Phases: baseline RSS -> open N idle connections -> RSS per idle connection -> K talkers run text and
(fake) voice turns for D seconds while RSS is sampled -> slope of RSS over time (flat memory check). Idle
connections that close before the end count as errors. Prints a summary; ``--json`` writes every figure.
Exit status 0 when there were no errors.

``--serve fake|real`` is the child's entry point (settings from CM_* variables; prints ``port N``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
from websockets.asyncio.client import ClientConnection, connect

REPO = Path(__file__).resolve().parents[2]
RATE = 16000
FRAME = 640  # 20 ms of 16 kHz PCM16
TEXTS = (
    "I keep putting off the hard parts of my project.",
    "How do I stay calm before a difficult conversation?",
    "I feel stuck and I do not know what to do next.",
)


# --- server side (child process) ---------------------------------------------------------------------------


def serve(kind: str) -> None:
    """Child entry: the production server (build_server/run_server) on an ephemeral 127.0.0.1 port."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from backend.config import get_settings
    from backend.main import create_app
    from backend.server import build_server, run_server

    settings = get_settings()
    models = None
    if kind == "fake":
        settings.server.load_models = False
        models = _quiet_fakes().service(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    app = create_app(settings, models=models)
    server = build_server(settings, app, log_level="warning", backlog=4096)
    print(f"port {sock.getsockname()[1]}", flush=True)
    run_server(server, [sock])


def _quiet_fakes() -> Any:
    """tests.fakes models that keep only their last call: the shared fakes record every prompt, text and
    call for assertions, which over thousands of turns looks exactly like a server leak (~4 KiB a turn)."""
    from collections import deque

    from tests.fakes import FakeEmotion, FakeLLM, FakeModels, FakeSTT, FakeTTS

    def last() -> Any:
        return deque(maxlen=1)

    return FakeModels(
        stt=FakeSTT(calls=last()),
        emotion=FakeEmotion(calls=last()),
        llm=FakeLLM(prompts=last()),
        tts=FakeTTS(texts=last()),
    )


@contextlib.contextmanager
def spawned_server(kind: str, max_connections: int) -> Iterator[tuple[str, int]]:
    """Start ``--serve kind`` with a private database and limits that fit the run; yields (url, pid)."""
    with tempfile.TemporaryDirectory(prefix="cm-load-") as tmp:
        env = {
            **os.environ,
            "CM_DATABASE__URL": f"sqlite:///{tmp}/load.db",
            "CM_LIMITS__MAX_CONNECTIONS": str(max_connections),
            "CM_LIMITS__IDLE_TIMEOUT_S": "86400",  # idle connections are the point of the test
            "CM_SERVER__LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(REPO),
        }
        child = subprocess.Popen(
            [sys.executable, "-m", "scripts.bench.load_test", "--serve", kind],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            line = child.stdout.readline()  # blocks until the server has bound (models load before this)
            if not line.startswith("port "):
                raise RuntimeError(f"the server did not start: {line!r}")
            port = int(line.split()[1])
            url = f"ws://127.0.0.1:{port}/ws/voice"
            _wait_ready(port, timeout=600 if kind == "real" else 60)
            yield url, child.pid
        finally:
            child.terminate()
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def _wait_ready(port: int, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).json().get("status") == "ok":
                return
        time.sleep(0.5)
    raise RuntimeError("the server did not become healthy")


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# --- client side -------------------------------------------------------------------------------------------


@dataclass
class Report:
    idle: int
    talkers: int
    duration_s: float
    baseline_rss_mib: float = 0.0
    idle_rss_mib: float = 0.0
    kib_per_idle_connection: float = 0.0
    connect_seconds: float = 0.0
    turns: int = 0  # latency: end of input (text sent, last audio sent) to the turn's metrics event
    voice_turns: int = 0
    errors: list[str] = field(default_factory=list)
    idle_closed: int = 0
    latency_p50_s: float = 0.0
    latency_p95_s: float = 0.0
    latency_max_s: float = 0.0
    rss_samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MiB)
    rss_start_mib: float = 0.0
    rss_end_mib: float = 0.0
    rss_max_mib: float = 0.0
    rss_slope_mib_per_min: float = 0.0


def check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or parts.hostname != "127.0.0.1":
        raise SystemExit(f"refusing {url!r}: this load test only runs against ws://127.0.0.1")


def rss_mib(proc: psutil.Process) -> float:
    return float(proc.memory_info().rss) / 2**20


def slope_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) in MiB per minute."""
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mr = sum(r for _, r in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    if var == 0:
        return 0.0
    return 60.0 * sum((t - mt) * (r - mr) for t, r in samples) / var


def _tone(seconds: float, amplitude: float = 0.5, freq: float = 220.0) -> bytes:
    import numpy as np

    t = np.arange(int(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * freq * t) * amplitude * 32767).astype("<i2").tobytes()


UTTERANCE = b"\x00\x00" * int(0.3 * RATE) + _tone(1.0) + b"\x00\x00" * int(0.8 * RATE)


async def _open(url: str, headers: dict[str, str]) -> ClientConnection:
    ws = await connect(
        url, ping_interval=None, max_size=None, compression=None, open_timeout=30, additional_headers=headers
    )
    first = json.loads(await asyncio.wait_for(ws.recv(), 30))
    if first.get("type") != "session":
        raise RuntimeError(f"expected a session event, got {first.get('type')!r}")
    return ws


async def _until_metrics(ws: ClientConnection, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while True:
            message = await ws.recv()
            if isinstance(message, bytes):
                continue
            event = json.loads(message)
            if event["type"] == "error":
                raise RuntimeError(f"error event {event.get('code')}")
            if event["type"] == "metrics":
                return


async def _talker(
    url: str, headers: dict[str, str], stop_at: float, report: Report, latencies: list[float], voice: bool = True
) -> None:
    try:
        ws = await _open(url, headers)
    except Exception as exc:
        report.errors.append(f"talker connect: {type(exc).__name__}: {exc}")
        return
    i = 0
    try:
        while time.monotonic() < stop_at:
            if i % 2 == 0 or not voice:
                await ws.send(json.dumps({"type": "text", "text": TEXTS[i % len(TEXTS)]}))
                started = time.monotonic()
            else:
                # 100 ms per message at 2x real time: under the server's byte-rate limit (3x real time)
                for j in range(0, len(UTTERANCE), FRAME * 5):
                    await ws.send(UTTERANCE[j : j + FRAME * 5])
                    await asyncio.sleep(0.05)
                started = time.monotonic()  # latency from the end of the audio (VAD hangover included)
            await _until_metrics(ws, 60)
            latencies.append(time.monotonic() - started)
            report.turns += 1
            report.voice_turns += i % 2 if voice else 0
            i += 1
    except Exception as exc:
        report.errors.append(f"talker turn {i}: {type(exc).__name__}: {exc}")
    finally:
        await ws.close()


async def run(
    url: str,
    pid: int,
    idle: int,
    talkers: int,
    duration: float,
    every: float,
    api_key: str | None,
    voice: bool = True,
) -> Report:
    check_url(url)
    headers = {"X-API-Key": api_key} if api_key else {}
    proc = psutil.Process(pid)
    report = Report(idle, talkers, duration)

    warm: list[float] = []
    await _talker(url, headers, time.monotonic() + 0.1, report, warm)  # warm the code paths once
    report.turns = report.voice_turns = 0
    await asyncio.sleep(1.0)
    report.baseline_rss_mib = rss_mib(proc)

    started = time.monotonic()
    idle_conns: list[ClientConnection] = []
    for start in range(0, idle, 50):
        batch = await asyncio.gather(
            *(_open(url, headers) for _ in range(min(50, idle - start))), return_exceptions=True
        )
        for item in batch:
            if isinstance(item, BaseException):
                report.errors.append(f"idle connect: {type(item).__name__}: {item}")
            else:
                idle_conns.append(item)
    report.connect_seconds = round(time.monotonic() - started, 2)
    await asyncio.sleep(2.0)
    report.idle_rss_mib = rss_mib(proc)
    if idle_conns:
        report.kib_per_idle_connection = round(
            (report.idle_rss_mib - report.baseline_rss_mib) * 1024 / len(idle_conns), 1
        )

    latencies: list[float] = []
    t0 = time.monotonic()
    stop_at = t0 + duration
    tasks = [asyncio.create_task(_talker(url, headers, stop_at, report, latencies, voice)) for _ in range(talkers)]
    while time.monotonic() < stop_at:
        report.rss_samples.append((round(time.monotonic() - t0, 1), round(rss_mib(proc), 2)))
        await asyncio.sleep(min(every, max(0.0, stop_at - time.monotonic())))
    await asyncio.gather(*tasks)
    report.rss_samples.append((round(time.monotonic() - t0, 1), round(rss_mib(proc), 2)))

    report.idle_closed = sum(1 for ws in idle_conns if ws.close_code is not None)
    if report.idle_closed:
        report.errors.append(f"{report.idle_closed} idle connections were closed by the server")
    await asyncio.gather(*(ws.close() for ws in idle_conns), return_exceptions=True)

    rss = [r for _, r in report.rss_samples]
    report.rss_start_mib, report.rss_end_mib, report.rss_max_mib = rss[0], rss[-1], max(rss)
    # The slope over the steady part: skip the first 10 % (allocator and caches warming up).
    steady = [s for s in report.rss_samples if s[0] >= duration * 0.1] or report.rss_samples
    report.rss_slope_mib_per_min = round(slope_per_min(steady), 3)
    if latencies:
        ordered = sorted(latencies)
        report.latency_p50_s = round(ordered[len(ordered) // 2], 3)
        report.latency_p95_s = round(ordered[min(len(ordered) - 1, math.ceil(len(ordered) * 0.95) - 1)], 3)
        report.latency_max_s = round(ordered[-1], 3)
    return report


def summary(report: Report) -> str:
    return "\n".join(
        [
            f"idle connections: {report.idle} opened in {report.connect_seconds} s; "
            f"RSS {report.baseline_rss_mib:.1f} -> {report.idle_rss_mib:.1f} MiB = "
            f"{report.kib_per_idle_connection} KiB per idle connection",
            f"talkers: {report.talkers} for {report.duration_s:.0f} s: {report.turns} turns "
            f"({report.voice_turns} voice), turn latency p50 {report.latency_p50_s} s, "
            f"p95 {report.latency_p95_s} s, max {report.latency_max_s} s",
            f"RSS while talking: start {report.rss_start_mib:.1f}, end {report.rss_end_mib:.1f}, "
            f"max {report.rss_max_mib:.1f} MiB, slope {report.rss_slope_mib_per_min} MiB/min "
            f"({len(report.rss_samples)} samples)",
            f"errors: {len(report.errors)}" + "".join(f"\n  {e}" for e in report.errors[:20]),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", choices=["fake", "real"], help=argparse.SUPPRESS)
    parser.add_argument("--spawn", choices=["fake", "real"], help="start the server as a child process")
    parser.add_argument("--url", help="ws://127.0.0.1:PORT/ws/voice of a running server (with --pid)")
    parser.add_argument("--pid", type=int, help="the running server's process id (for RSS)")
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--talkers", type=int, default=8)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of talking")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--api-key", default=os.environ.get("CM_LOAD_API_KEY"))
    parser.add_argument("--json", type=Path, help="write the full report here")
    parser.add_argument("--text-only", action="store_true", help="talkers send text turns only (no audio)")
    args = parser.parse_args(argv)
    if args.serve:
        _raise_fd_limit()
        serve(args.serve)
        return 0
    _raise_fd_limit()
    options = (args.idle, args.talkers, args.duration, args.sample_every, args.api_key, not args.text_only)
    if args.spawn:
        with spawned_server(args.spawn, args.idle + args.talkers + 64) as (url, pid):
            report = asyncio.run(run(url, pid, *options))
    else:
        if not (args.url and args.pid):
            parser.error("give --spawn, or --url and --pid of a running server")
        report = asyncio.run(run(args.url, args.pid, *options))
    print(summary(report), flush=True)
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=1), encoding="utf-8")
    return 0 if not report.errors else 1


if __name__ == "__main__":
    sys.exit(main())
