#!/usr/bin/env bash
# Runs the parity tests (pytest -m parity: comparisons with reference torch modules, diffusers, cpbd and
# dlib) in .venv-extras, which experiments/setup_extras.sh creates; there a parity test that skips fails.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash experiments/setup_extras.sh
exec .venv-extras/bin/python -m pytest -n 2 -q -m parity --strict-parity -rs "$@"
