#!/usr/bin/env bash
# The smoke run in Colab's environment (Python 3.13, the newest jax/flax/optax/orbax/grain; .venv-colab from
# experiments/setup_colab_env.sh): a subset of the unit tests that covers what moves between jax releases
# (sharding, train steps, checkpoints and resume, audio features, video, a system's tiny stage), then the
# quickstart notebook end to end (corpus, training, generation, evaluation) in that environment's kernel. Extra arguments go to pytest. The pinned Python 3.11 suite is experiments/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash experiments/setup_colab_env.sh
SMOKE_TESTS=(
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
bash experiments/test_notebooks.sh --python .venv-colab/bin/python quickstart
