# Sourced by scripts/setup.sh, serve.sh and test.sh (from the repository root): the Python they install into and
# run. $PYTHON when set (.ci/run points it at a fresh virtual environment); otherwise the repository's own
# virtual environment .venv/, made on the first run (Debian's system Python refuses pip installs: PEP 668).
if [ -z "${PYTHON:-}" ]; then
  if [ ! -x .venv/bin/python ]; then
    if ! python3 -c "import ensurepip" 2>/dev/null; then  # Debian splits venv support into python3-venv
      SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
    fi
    echo "setup: creating the virtual environment .venv/"
    python3 -m venv .venv
  fi
  PYTHON=$PWD/.venv/bin/python
fi
export PYTHON
PY=$PYTHON
