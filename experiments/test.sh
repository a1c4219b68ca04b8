#!/usr/bin/env bash
# Runs the test suite (heavy checks marked `slow` are excluded; run them with -m slow).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash experiments/setup_env.sh
exec .venv/bin/python -m pytest -n 2 -q --durations=15 "$@"
