#!/usr/bin/env bash
# Create (or refresh) the Python venv used by the training-benchmark peers:
#   build/peers-venv  with the newest torch, brevitas and numpy from PyPI.
# Idempotent: an existing venv is reused and only missing packages are installed.
# Note: the PyPI torch wheel for Linux x86_64 pulls the CUDA runtime libraries
# (several GB) even though the benchmark only uses the CPU.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${PEERS_VENV:-$ROOT/build/peers-venv}"
PY="${PYTHON:-python3}"

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "creating venv at $VENV (python: $("$PY" --version 2>&1))" >&2
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
fi

if ! "$VENV/bin/python" -c 'import torch, brevitas, numpy' >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip install --upgrade pip >&2
  "$VENV/bin/python" -m pip install --upgrade torch brevitas numpy >&2
fi

"$VENV/bin/python" - <<'PY'
import sys, numpy, torch, brevitas
print(f"python   {sys.version.split()[0]}")
print(f"numpy    {numpy.__version__}")
print(f"torch    {torch.__version__}  ({torch.__file__})")
print(f"brevitas {brevitas.__version__}")
PY
