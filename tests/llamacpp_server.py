"""llama.cpp's own OpenAI-compatible server (its C++ ``llama-server``, prebuilt for AVX2 CPUs in the ``xllamacpp``
wheel: nothing to compile) serving the embedded SmolLM2 GGUF with the mentor LoRA (exported to GGUF by
scripts/ops/export_lora_gguf.py) as model "mentor", on 127.0.0.1 and a free port, for the tests of the remote LLM
engine against a server we did not write. The wheel is built without ``-march=native`` (its system info: AVX,
AVX2, F16C, FMA, BMI2; no AVX-512, no AMX kernels), so it runs on these VMs, whose advertised AMX faults.

``python -m tests.llamacpp_server`` runs one in the foreground and prints its base URL (for benchmarks);
``LLAMACPP_PORT`` and ``LLAMACPP_THREADS`` pick the port and the threads.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
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

MODEL_NAME = "mentor"
PACKAGE = "xllamacpp"


def available() -> bool:
    return importlib.util.find_spec(PACKAGE) is not None


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

    def generating(self) -> bool:
        """Whether a slot is generating now (``GET /slots``): False once a cancelled stream has been stopped."""
        slots = httpx.get(f"http://127.0.0.1:{self.port}/slots", timeout=5).json()
        return any(slot.get("is_processing") for slot in slots)


def command(port: int, threads: int = 2) -> list[str]:
    """The server's command line: this module's ``serve`` in a fresh interpreter."""
    return [sys.executable, "-m", "tests.llamacpp_server", "--port", str(port), "--threads", str(threads)]


def server_env() -> dict[str, str]:
    """The server's environment. OMP_WAIT_POLICY=PASSIVE: ggml's OpenMP threads sleep at barriers instead of
    spinning. On a shared 2-core machine spinning threads starve each other: measured here with this wheel,
    decoding fell to 3.3 tokens/s (PASSIVE: 28-48 tokens/s) and a 36-token prefill took 2.6 s (PASSIVE: 0.15 s)."""
    return {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(REPO_ROOT)}


def serve(port: int, threads: int) -> None:
    """Run llama.cpp's server in this process until SIGTERM or SIGINT: the embedded GGUF, the mentor LoRA, one
    slot (one reply at a time; a second request waits for it, none is cut), a 2048-token context, and
    ``/slots`` on (the tests see from it that a cancelled stream stopped generating)."""
    import xllamacpp  # the native library: only in the server's process

    from backend.engines.llm.model_files import embedded_gguf
    from scripts.ops.export_lora_gguf import export

    params = xllamacpp.CommonParams()
    params.model.path = str(embedded_gguf("SmolLM2-135M-Instruct"))
    params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(export()), 1.0)]
    params.model_alias = {MODEL_NAME}
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.n_ctx = 2048
    params.n_parallel = 1
    params.endpoint_slots = True
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})  # the server's threads inherit it
    server = xllamacpp.Server(params)  # listening once this returns
    print(f"llama.cpp server listening on http://127.0.0.1:{port}/v1", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    del server  # stops the HTTP server and the main loop


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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=int(os.environ.get("LLAMACPP_PORT", "0")) or None)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("LLAMACPP_THREADS", "2")))
    args = parser.parse_args()
    if os.environ.get("OMP_WAIT_POLICY") != "PASSIVE":  # read when the native library loads: start afresh
        os.execve(sys.executable, [sys.executable, "-m", "tests.llamacpp_server", *sys.argv[1:]], server_env())
    serve(args.port or _free_port(), args.threads)


if __name__ == "__main__":
    main()
