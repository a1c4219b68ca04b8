"""Wav2Lip's lip-sync expert (SyncNet_color) on a dataset's in-sync / off-sync pairs.

Launch:
  python -m experiments.train --config=experiments/configs/experts/syncnet.py:demo \
      --config.data.root=runs/main/corpus --workdir=runs/syncnet
Variants: tiny (tests: 1/8 width, seconds), demo (1/4 width, CPU minutes on the demo corpus),
paper (the published network and Wav2Lip's recipe: batch 64, Adam 1e-4, evaluation every 3000 steps;
the reference trains until the eval loss is about 0.25 — `total_steps` is a budget, not a paper number).
"""

import ml_collections

from experiments.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parsed = common.parse_arg(arg)
  variant = parsed.variant
  c = common.trainer_config("syncnet", variant)
  c.model = ml_collections.ConfigDict({"width": 1.0, "dtype": "float32"})
  c.data.update({
      "root": "", "image_size": 96, "min_offset": 1, "eval_split": "val", "eval_stride": 5,
      "eval_seed": 0, "bgr": True})
  c.optimizer.learning_rate = 1e-4
  if variant == "tiny":
    c.model.width = 0.125
  elif variant == "demo":
    c.model.width = 0.25
    c.total_steps, c.batch_size = 3000, 32   # the main job's budget (README); 6000 reach BCE 0.33
    c.optimizer.learning_rate = 5e-4
    c.optimizer.schedule, c.optimizer.warmup_steps, c.optimizer.end_lr_factor = "warmup_cosine", 100, 0.05
    c.checkpoint_every, c.eval_every, c.image_every = 500, 500, 1000
  elif variant == "paper":
    c.total_steps = 300_000
    c.checkpoint_every, c.eval_every, c.image_every = 3000, 3000, 3000
  return common.apply_overrides(c, parsed)
