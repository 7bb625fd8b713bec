"""Benchmark servers: start `python -m backend.main` on a free 127.0.0.1 port, or attach to a running one.

Used by scripts/bench/latency.py. Blocking (HTTP polling, process waits): called outside the event loop.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_HOSTS = ("127.0.0.1", "localhost")


@dataclass
class Server:
    mode: str
    base_url: str
    pid: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    health: dict[str, Any] = field(default_factory=dict)
    startup_s: float | None = None  # spawn (or attach) -> models loaded
    spawned_at: float = field(default_factory=time.perf_counter)

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url[len("http") :] + "/ws/voice"

    def rss(self) -> int | None:
        """Resident memory of the server process in bytes (None when the pid is unknown)."""
        if self.pid is None:
            return None
        try:
            return int(psutil.Process(self.pid).memory_info().rss)
        except psutil.Error:
            return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str, timeout: float = 5.0) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # local URLs only (checked by callers)
        data: dict[str, Any] = json.loads(resp.read())
        return data


def start_server(
    mode: str,
    workdir: Path,
    log_dir: Path,
    extra_env: dict[str, str] | None = None,
    *,
    tree: Path = REPO_ROOT,
    name: str | None = None,
) -> Server:
    """Spawn a server in ``mode`` ("streaming" | "sequential") with its own SQLite database; does not wait.
    ``tree``: the checkout whose code and models/cache it runs (another one: an earlier release, for before/after);
    ``name``: labels its database, log and messages (default: the mode)."""
    name = name or mode
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "CM_SERVER__PORT": str(port),
            "CM_SERVER__HOST": "127.0.0.1",
            "CM_DATABASE__URL": f"sqlite:///{workdir / f'bench-{name}.db'}",
            "CM_PIPELINE__MODE": mode,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
    )
    if tree != REPO_ROOT:
        env["PYTHONPATH"] = str(tree)
    env.update(extra_env or {})
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"server-{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "backend.main"],
            cwd=tree,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(name, f"http://127.0.0.1:{port}", proc.pid, proc, log_path)


def wait_ready(server: Server, timeout_s: float = 600.0) -> None:
    """Poll /api/health until models_loaded; raise with the log tail if the process dies or time runs out."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        if server.proc is not None and server.proc.poll() is not None:
            raise RuntimeError(f"{server.mode} server exited with {server.proc.returncode}:\n{_tail(server)}")
        try:
            health = get_json(server.base_url + "/api/health", timeout=2.0)
        except OSError:
            health = {}
        if health.get("models_loaded"):
            server.health = health
            server.startup_s = round(time.perf_counter() - server.spawned_at, 2)
            return
        time.sleep(0.5)
    raise RuntimeError(f"{server.mode} server not ready after {timeout_s} s:\n{_tail(server)}")


def attach(url: str, mode: str, pid: int | None) -> Server:
    """A server already running at ``url`` (127.0.0.1 only); its pid is found from the listening port."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOCAL_HOSTS or parts.port is None:
        raise SystemExit(f"--url must be http://127.0.0.1:<port>, got {url!r}")
    server = Server(mode, f"http://127.0.0.1:{parts.port}", pid or listener_pid(parts.port))
    wait_ready(server, timeout_s=30.0)
    return server


def listener_pid(port: int) -> int | None:
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                return int(conn.pid) if conn.pid is not None else None
    except psutil.Error:
        return None
    return None


def stop_server(server: Server) -> None:
    proc = server.proc
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _tail(server: Server, lines: int = 30) -> str:
    if server.log_path is None or not server.log_path.exists():
        return ""
    return "\n".join(server.log_path.read_text(errors="replace").splitlines()[-lines:])
