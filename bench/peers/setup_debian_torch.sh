#!/usr/bin/env bash
# Install Debian's packaged PyTorch (python3-torch, 1.13.1 on Debian 12) for the
# "torch-debian" peer. It is used through Debian's own interpreter /usr/bin/python3,
# which is distinct from any pyenv/venv python3 that may be first on PATH.
# Idempotent; needs root (apt-get).
set -euo pipefail

DEB_PY=/usr/bin/python3

if ! "$DEB_PY" -c 'import torch' >/dev/null 2>&1; then
  if ! apt-cache policy python3-torch 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    apt-get update >&2
  fi
  if ! apt-cache policy python3-torch | grep -q 'Candidate: [0-9]'; then
    echo "python3-torch is not available from the configured apt sources" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-torch python3-numpy >&2
fi

"$DEB_PY" - <<'PY'
import sys, numpy, torch
print(f"python {sys.version.split()[0]}  ({sys.executable})")
print(f"numpy  {numpy.__version__}")
print(f"torch  {torch.__version__}  ({torch.__file__})")
PY
