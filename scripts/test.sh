#!/usr/bin/env bash
# Installs what is missing and runs the whole test suite: lint, types, fast, real-model and browser tiers.
# Pass pytest arguments to narrow it, e.g. scripts/test.sh -m fast
# Runs in $PYTHON's environment, else in .venv/ (made on the first run; scripts/python_env.sh). With CI set, a
# test that would skip for a missing tool or package fails instead (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/python_env.sh
bash scripts/setup.sh --dev
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
echo "== ruff"; "$PY" -m ruff check backend scripts tests test_client.py
echo "== mypy"; "$PY" -m mypy
echo "== import-linter (layering)"; "$PY" -c "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True))"
echo "== pytest"; "$PY" -m pytest "$@"
