r"""Trains one stage from a config file.

  python -m experiments.train --config=experiments/configs/frame_autoencoder.py:tiny --workdir=runs/ae
  python -m experiments.train --config=...:demo --config.total_steps=200 --workdir=...

Relaunching with the same workdir resumes from its newest checkpoint; a launch on a workdir that
another live run is training fails at once, naming it (`<workdir>/.lock`). For multi-host runs
(TPU pods, GPU clusters) add `--config.distributed.enabled=true` on every process.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.logs import quiet_library_logs
from talking_heads import compilation_cache
from talking_heads.training import distributed, loop, workdir_lock

_CONFIG = config_flags.DEFINE_config_file("config", None, "Stage config file with variant, e.g. path.py:tiny.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and images.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  quiet_library_logs()
  compilation_cache.enable()
  config = _CONFIG.value
  d = config.distributed
  distributed.maybe_initialize(d.enabled, d.coordinator_address or None, d.num_processes or None,
                               None if d.process_id < 0 else d.process_id)
  try:
    result = loop.train_and_evaluate(config, _WORKDIR.value)
  except workdir_lock.WorkdirLockedError as e:
    sys.exit(f"train: {e}")
  if result.history:
    logging.info("Finished at step %d: %s", result.step, result.history[-1])


if __name__ == "__main__":
  app.run(main)
