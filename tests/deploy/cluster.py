"""Several server processes behind a real HAProxy, for the replica and scale tests, all on 127.0.0.1.

The balancer's config is deploy/haproxy.cfg.in rendered by scripts/ops/render_haproxy.py with the test's ports,
plus a stats socket in the test's folder so a test can wait until HAProxy sees a replica up or down.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.config import REPO_ROOT
from scripts.ops.render_haproxy import render


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(port: int, path: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """(status, JSON body or None) of a GET on 127.0.0.1:port."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        try:
            return response.status, json.loads(body)
        except ValueError:
            return response.status, None
    finally:
        conn.close()


def _ready(port: int) -> bool:
    try:
        return http_get(port, "/readyz", timeout=2)[0] == 200
    except OSError:
        return False


@dataclass
class Replica:
    """One server process on a fixed port (restartable on the same port after a kill)."""

    name: str
    port: int
    env: dict[str, str]
    module: str = "tests.deploy.replica_server"
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def start(self, timeout: float = 60.0) -> Replica:
        """Start it and wait until /readyz is 200."""
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "CM_SERVER__PORT": str(self.port), **self.env}
        out = open(self.log, "ab") if self.log is not None else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module], stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env
        )
        deadline = time.monotonic() + timeout
        while not _ready(self.port):
            if self.proc.poll() is not None:
                raise AssertionError(f"replica {self.name} exited with {self.proc.returncode} during startup")
            if time.monotonic() > deadline:
                raise AssertionError(f"replica {self.name} did not become ready")
            time.sleep(0.1)
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


@dataclass
class Balancer:
    """HAProxy started from the repo's config, rendered for ``replicas``."""

    folder: Path
    replicas: list[Replica]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.folder / "haproxy.sock"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/voice"

    def start(self, timeout: float = 30.0) -> Balancer:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(binary).exists():
            raise AssertionError("haproxy is not installed: run scripts/setup.sh --dev")
        config = render(
            f"127.0.0.1:{self.port}",
            [f"127.0.0.1:{r.port}" for r in self.replicas],
            [f"stats socket {self.socket_path} mode 600 level admin"],
        )
        path = self.folder / "haproxy.cfg"
        path.write_text(config)
        log = open(self.folder / "haproxy.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([binary, "-f", str(path), "-db"], stdout=log, stderr=subprocess.STDOUT)
        self.wait_states({f"replica{i}": "UP" for i in range(1, len(self.replicas) + 1)}, timeout)
        return self

    def states(self) -> dict[str, str]:
        """Server name -> HAProxy's status (UP, DOWN, ...) of the replicas backend."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            sock.connect(str(self.socket_path))
            sock.sendall(b"show stat\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        rows = csv.DictReader(io.StringIO(b"".join(chunks).decode().lstrip("# ")))
        servers = [r for r in rows if r["pxname"] == "replicas" and r["svname"] != "BACKEND"]
        return {r["svname"]: r["status"].split()[0] for r in servers}

    def wait_states(self, wanted: dict[str, str], timeout: float) -> None:
        """Wait until every named server has the wanted status (health checks run every 0.5-1 s)."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None and self.proc.poll() is None, "haproxy exited"
            try:
                states = self.states()
            except OSError:
                states = {}
            if all(states.get(name) == state for name, state in wanted.items()):
                return
            assert time.monotonic() < deadline, f"haproxy states {states}, wanted {wanted}"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
