#!/usr/bin/env bash
# The benchmark suite's tiny run (experiments.bench_suite: every registered stage's train step and
# every system's generation, random weights), the bfloat16 loss curves and the remat gradients: tests
# marked `bench`, excluded from the default suite because their compilations take minutes on 2 cores.
# Speeds are not asserted, only coverage and complete rows. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash experiments/setup_env.sh
exec .venv/bin/python -m pytest -m bench -q --durations=5 "$@"
