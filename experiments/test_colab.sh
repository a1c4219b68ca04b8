#!/usr/bin/env bash
# The smoke run in Colab's environment (Python 3.13, the newest jax/flax/optax/orbax/grain; .venv-colab from
# experiments/setup_colab_env.sh): the tiny main job end to end and a fast subset of the unit tests that covers
# what moves between jax releases (sharding, train steps, checkpoints and resume, audio features, the systems'
# tiny stages, video inference). Extra arguments go to pytest. The pinned Python 3.11 suite is experiments/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash experiments/setup_colab_env.sh
SMOKE_TESTS=(
  tests/experiments/main_test.py::test_main_job_tiny
  tests/training/sharding_test.py
  tests/training/state_test.py
  tests/training/steps_test.py
  tests/training/loop_test.py
  tests/training/optimizers_test.py
  tests/audio
  tests/io/video_test.py
  tests/systems/frame_autoencoder
  tests/systems/plugin_test.py
)
.venv-colab/bin/python -m pytest -n 2 -q "${SMOKE_TESTS[@]}" "$@"
# Notebooks in this environment (Colab's): experiments/test_notebooks.sh --python .venv-colab/bin/python NAMES
COLAB_NOTEBOOKS=()
if [ ${#COLAB_NOTEBOOKS[@]} -gt 0 ]; then
  bash experiments/test_notebooks.sh --python .venv-colab/bin/python "${COLAB_NOTEBOOKS[@]}"
fi
