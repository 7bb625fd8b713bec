#!/usr/bin/env bash
# Installs what is missing and starts the server on the embedded default models (no network, no keys).
# Runs in $PYTHON's environment, else in .venv/ (made on the first run; scripts/python_env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/python_env.sh
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$PY" -m backend.main "$@"
