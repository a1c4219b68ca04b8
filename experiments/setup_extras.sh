#!/usr/bin/env bash
# Creates .venv-extras in the repository root: requirements.txt plus the parity tests' reference
# implementations in requirements-extras.txt (torch CPU, diffusers, cpbd, dlib). Idempotent: reinstalls
# only when either file changed. Needs Python >= 3.11 as python3 (or $PYTHON).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "talking_heads needs Python >= 3.11; $PYTHON is $("$PYTHON" --version 2>&1)." >&2; exit 1; }
venv=.venv-extras
stamp=$venv/.requirements.sha256
want=$(cat requirements.txt requirements-extras.txt | sha256sum | cut -d' ' -f1)
if [ -x $venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "Setting up $venv (requirements-extras.txt: torch CPU, diffusers, cpbd, dlib; a few minutes)..." >&2
[ -x $venv/bin/python ] || "$PYTHON" -m venv $venv
$venv/bin/python -m pip install -q --upgrade pip >&2
$venv/bin/python -m pip install -q -r requirements-extras.txt >&2
$venv/bin/python -m experiments.warm_caches >&2
echo "$want" > "$stamp"
