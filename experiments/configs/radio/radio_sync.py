"""RADIO's grayscale sync discriminator on in-sync / off-sync windows of tight mouth crops.

Launch:
  python -m experiments.train --config=experiments/configs/radio/radio_sync.py:demo \
      --config.data.root=runs/main/corpus --workdir=runs/radio_sync_demo
Variants (network sizes: `talking_heads.systems.radio.sizes`): tiny (tests: 32 px faces, 16 px
crops, seconds), demo (96 px faces, the paper's ablation scale; 48 px crops, 1/8 widths), paper
(192 px faces, 144 px crops, the spec's widths; Adam 1e-4, batch 64 (spec §4); the recommended
stop is a held-out BCE of about 0.25, so `total_steps` is a budget, not a paper number).
"""

import ml_collections

from experiments.configs import common
from talking_heads.systems.radio import sizes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parsed = common.parse_arg(arg)
  variant = parsed.variant
  c = common.trainer_config("radio_sync", variant)
  c.model = ml_collections.ConfigDict({"sizes": variant, "probability": "relu",
                                       "dtype": "float32"})
  c.data.update({
      "root": "", "image_size": sizes.sizes(variant).image_size, "min_offset": 1,
      "eval_split": "val", "eval_stride": 5, "eval_seed": 0})
  c.optimizer.learning_rate = 1e-4
  if variant == "tiny":
    c.total_steps = 4
    c.log_every, c.checkpoint_every, c.eval_every, c.image_every = 2, 2, 4, 4
  elif variant == "demo":
    c.total_steps, c.batch_size = 3000, 32
    c.optimizer.learning_rate = 5e-4
    c.optimizer.schedule, c.optimizer.warmup_steps, c.optimizer.end_lr_factor = (
        "warmup_cosine", 100, 0.05)
    c.checkpoint_every, c.eval_every, c.image_every = 500, 500, 1000
  elif variant == "paper":
    c.total_steps = 300_000
    c.checkpoint_every, c.eval_every, c.image_every = 3000, 3000, 3000
  return common.apply_overrides(c, parsed)
