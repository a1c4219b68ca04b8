#!/usr/bin/env bash
# The main job on the built-in default data: sets up .venv, then runs experiments.main.
# Extra arguments go to experiments.main (e.g. --workdir=runs/main --variant=tiny).
set -euo pipefail
cd "$(dirname "$0")/.."
bash experiments/setup_env.sh
exec .venv/bin/python -m experiments.main "$@"
