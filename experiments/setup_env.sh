#!/usr/bin/env bash
# Makes .venv in the repository root hold requirements.txt (idempotent: rebuilt only when
# requirements.txt or the interpreter changed; built environments are shared by the machine's
# clones, see experiments/venv_cache.sh). Needs Python >= 3.11 as python3 (or $PYTHON).
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/venv_cache.sh
PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "talking_heads needs Python >= 3.11; $PYTHON is $("$PYTHON" --version 2>&1)." >&2; exit 1; }

build() {
  echo "Setting up $1 (installing requirements.txt; about a minute)..." >&2
  [ -x "$1/bin/python" ] || "$PYTHON" -m venv "$1"
  "$1/bin/python" -m pip install -q --upgrade pip >&2
  "$1/bin/python" -m pip install -q -r requirements.txt >&2
  # Compile librosa's numba kernels before anything runs in parallel (see experiments/warm_caches.py).
  "$1/bin/python" -m experiments.warm_caches >&2
}
ensure_venv .venv env "$(cat requirements.txt <("$PYTHON" --version) | sha256sum | cut -d' ' -f1)" build
