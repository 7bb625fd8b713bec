#!/usr/bin/env bash
# Installs what is missing and runs the whole test suite: lint, types, fast, real-model and browser tiers.
# Pass pytest arguments to narrow it, e.g. scripts/test.sh -m fast
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
bash scripts/setup.sh --dev
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
echo "== ruff"; $PY -m ruff check backend scripts tests test_client.py
echo "== mypy"; $PY -m mypy
echo "== import-linter (layering)"; $PY -c "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True))"
echo "== pytest"; $PY -m pytest "$@"
