#!/usr/bin/env bash
# The README's main job end to end on its tiny variant (every system's part, the report opened in
# headless Chromium, a rerun that resumes): tests marked `main_job`, excluded from the default suite
# because the five systems' tiny parts take 10-20 minutes on 2 cores. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash experiments/setup_env.sh
exec .venv/bin/python -m pytest -m main_job -q --durations=5 "$@"
