#!/usr/bin/env bash
# The benchmark suite's tiny run (experiments.bench_suite: every registered stage's train step and
# every system's generation, random weights): tests marked `bench`, excluded from the default suite
# because compiling every stage takes minutes on 2 cores. Only coverage and complete rows are
# asserted, not speeds. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash experiments/setup_env.sh
exec .venv/bin/python -m pytest -m bench -q --durations=5 "$@"
