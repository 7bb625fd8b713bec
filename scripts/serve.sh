#!/usr/bin/env bash
# Installs what is missing and starts the server on the embedded default models (no network, no keys).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "${PYTHON:-python3}" -m backend.main "$@"
