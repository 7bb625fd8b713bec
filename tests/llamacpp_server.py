"""llama.cpp's OpenAI-compatible server (``python -m llama_cpp.server`` from llama-cpp-python[server]) serving the
embedded SmolLM2 GGUF with the mentor LoRA (exported to GGUF by scripts/export_lora_gguf.py) as model "mentor",
on 127.0.0.1 and a free port, for the tests of the remote LLM engine against a server we did not write.

``python -m tests.llamacpp_server`` runs one in the foreground and prints its base URL (for benchmarks).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from backend.config import REPO_ROOT
from backend.engines.llm.model_files import embedded_gguf
from scripts.export_lora_gguf import export

MODEL_NAME = "mentor"


def available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("sse_starlette") is not None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LlamaCppServer:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def command(port: int, threads: int = 2) -> list[str]:
    """The server's command line: the embedded GGUF, the mentor LoRA, one request at a time without one
    request interrupting another (llama-cpp-python's default ``interrupt_requests`` would cut a running reply)."""
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(embedded_gguf("SmolLM2-135M-Instruct")),
        "--lora_path",
        str(export()),
        "--model_alias",
        MODEL_NAME,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_threads",
        str(threads),
        "--n_ctx",
        "2048",
        "--interrupt_requests",
        "False",
    ]


def server_env() -> dict[str, str]:
    """The server's environment. OMP_WAIT_POLICY=PASSIVE: ggml's OpenMP threads sleep at barriers instead of
    spinning. On a shared 2-core machine spinning threads starve each other: measured here, decoding fell to
    1-1.5 tokens/s (PASSIVE: 48 tokens/s) and a 155-token prefill took 4.5-10 s (PASSIVE: 1.4 s)."""
    return {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}


@contextmanager
def llamacpp_server(log: Path, threads: int = 2, startup_s: float = 120.0) -> Iterator[LlamaCppServer]:
    """Start the server, wait until ``GET /v1/models`` answers, stop it at the end of the block."""
    port = _free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command(port, threads), stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=server_env()
        )
    server = LlamaCppServer(proc, port, log)
    try:
        deadline = time.monotonic() + startup_s
        while True:
            assert proc.poll() is None, f"llama.cpp's server exited: {server.log_text()[-2000:]}"
            try:
                if httpx.get(f"{server.base_url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "llama.cpp's server did not start"
            time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    port = int(os.environ.get("LLAMACPP_PORT", "0")) or _free_port()
    print(f"http://127.0.0.1:{port}/v1", flush=True)
    os.execve(sys.executable, command(port, int(os.environ.get("LLAMACPP_THREADS", "2"))), server_env())


if __name__ == "__main__":
    main()
