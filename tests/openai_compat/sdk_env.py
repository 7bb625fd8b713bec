"""The OpenAI SDK clients' own virtual environment, ``.venv-sdk/``, made from requirements_sdk.txt.

The SDKs pin websockets below the server's, so they live apart. Made once and reused while the requirements
file is unchanged (a hash stamp, as scripts/setup.sh does); the client scripts run there as subprocesses.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from backend.config import REPO_ROOT

SDK_VENV = REPO_ROOT / ".venv-sdk"
REQUIREMENTS = REPO_ROOT / "requirements_sdk.txt"
CLIENTS = Path(__file__).resolve().parent / "clients"


def sdk_python() -> Path:
    """The venv's interpreter, creating or refreshing the venv first when the requirements changed."""
    python = SDK_VENV / "bin" / "python"
    stamp = SDK_VENV / f".stamp-{hashlib.sha1(REQUIREMENTS.read_bytes()).hexdigest()[:12]}"
    if not (stamp.exists() and python.exists()):
        shutil.rmtree(SDK_VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(SDK_VENV)], check=True, timeout=300)
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True, timeout=1200)
        stamp.touch()
    return python


def run_client(python: Path, script: str, *args: str, timeout: float = 300.0) -> dict[str, Any]:
    """Run ``clients/<script>`` in the SDK venv; its last stdout line is its JSON summary."""
    proc = subprocess.run(
        [str(python), str(CLIENTS / script), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{script} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"{script} printed nothing:\n{proc.stderr[-4000:]}"
    summary: dict[str, Any] = json.loads(lines[-1])
    summary["stderr"] = proc.stderr
    return summary
