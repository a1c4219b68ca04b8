"""Frame autoencoder (the trainer's reference stage) on a dataset's frames or procedural frames.

Launch:
  python -m experiments.train --config=experiments/configs/frame_autoencoder.py:demo --workdir=runs/frame_ae
  python -m experiments.train --config=experiments/configs/frame_autoencoder.py:demo \
      --config.data.root=datasets/demo --workdir=runs/frame_ae_corpus      # on the synthetic corpus
Variants: tiny (tests, seconds on CPU), demo (minutes on a laptop CPU), paper (GPU/TPU scale;
there is no paper for this stage: it uses the 256x256 size and batch of the VQ stages it precedes).
"""

import ml_collections

from experiments.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parsed = common.parse_arg(arg)
  variant = parsed.variant
  c = common.trainer_config("frame_autoencoder", variant)
  c.model = ml_collections.ConfigDict({"widths": (32, 64), "latent_channels": 8, "dtype": "float32"})
  c.data.update({"root": "", "image_size": 32, "num_frames": 4096, "num_eval_frames": 64,
                 "eval_stride": 25, "seed": 0})
  c.optimizer.learning_rate = 1e-3
  if variant == "tiny":
    c.model.widths, c.model.latent_channels = (8, 16), 4
    c.data.image_size, c.data.num_frames, c.data.num_eval_frames = 16, 256, 16
  elif variant == "demo":
    c.total_steps, c.batch_size, c.eval_batch_size = 1500, 32, 8
    c.optimizer.schedule, c.optimizer.warmup_steps = "warmup_cosine", 100
    c.checkpoint_every, c.eval_every = 500, 500
  elif variant == "paper":
    c.total_steps, c.batch_size = 100_000, 256
    c.model.widths, c.model.latent_channels = (128, 256, 512), 16
    c.data.image_size, c.data.num_frames, c.data.num_eval_frames = 256, 1_000_000, 1024
    c.optimizer.learning_rate, c.optimizer.schedule, c.optimizer.warmup_steps = 4.5e-6 * 256, "warmup_cosine", 5000
  return common.apply_overrides(c, parsed)
