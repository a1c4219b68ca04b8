#!/usr/bin/env bash
# Creates .venv in the repository root and installs requirements.txt into it (idempotent:
# reinstalls only when requirements.txt changed). Needs Python >= 3.11 as python3 (or $PYTHON).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "talking_heads needs Python >= 3.11; $PYTHON is $("$PYTHON" --version 2>&1)." >&2; exit 1; }
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "Setting up .venv (installing requirements.txt; about a minute)..." >&2
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >&2
.venv/bin/python -m pip install -q -r requirements.txt >&2
# Compile librosa's numba kernels before anything runs in parallel (see experiments/warm_caches.py).
.venv/bin/python -m experiments.warm_caches >&2
echo "$want" > "$stamp"
