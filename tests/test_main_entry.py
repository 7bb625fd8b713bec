"""``uvicorn backend.main:app`` (the seed product's command, --reload included) serves the same app as
``python -m backend.main``, with settings read at startup."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import backend.main

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.fast
def test_module_app_reads_settings_at_startup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Environment set after ``backend.main`` was imported still reaches the module-level app."""
    monkeypatch.setenv("CM_DATABASE__URL", f"sqlite:///{tmp_path / 'late.db'}")
    monkeypatch.setenv("CM_SERVER__LOAD_MODELS", "false")
    monkeypatch.setenv("CM_LIMITS__MAX_TEXT_CHARS", "123")
    with TestClient(backend.main.app) as client:
        assert backend.main.app.state.settings.limits.max_text_chars == 123
        assert client.get("/api/health").status_code == 200
    assert (tmp_path / "late.db").exists()


def _get_json(url: str, deadline: float) -> dict[str, object]:
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body: dict[str, object] = json.loads(response.read())
                return body
        except OSError as exc:
            last = exc
            time.sleep(0.2)  # polling a child process we cannot wait on otherwise
    raise AssertionError(f"{url} never answered: {last}")


@pytest.mark.slow
@pytest.mark.parametrize("reload", [False, True], ids=["plain", "reload"])
def test_uvicorn_command_serves_the_app(tmp_path: Path, reload: bool) -> None:
    """``python -m uvicorn backend.main:app [--reload]`` starts, answers /api/health and opens its database."""
    port = _free_port()
    env = {
        **os.environ,
        "CM_DATABASE__URL": f"sqlite:///{tmp_path / 'uvicorn.db'}",
        "CM_SERVER__LOAD_MODELS": "false",
    }
    cmd = [sys.executable, "-m", "uvicorn", "backend.main:app", "--host", "127.0.0.1", "--port", str(port)]
    if reload:
        cmd += ["--reload", "--reload-dir", str(REPO / "backend")]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        health = _get_json(f"http://127.0.0.1:{port}/api/health", time.monotonic() + 60)
        assert health["models_loaded"] is False and health["status"] == "starting"
        assert (tmp_path / "uvicorn.db").exists()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
