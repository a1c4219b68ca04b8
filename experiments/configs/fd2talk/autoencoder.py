"""FD2Talk stage 2a (`fd2talk_autoencoder`): the frame autoencoder whose decoder reads [E(F1),
E(F2)], L2 + perceptual + VQ terms on pairs of frames of one clip
(`talking_heads.systems.fd2talk.autoencoder`).

Launch:
  python -m experiments.train --config=experiments/configs/fd2talk/autoencoder.py:demo \
      --config.data.root=runs/main/corpus --workdir=runs/fd2talk_autoencoder_demo
  python -m experiments.train --config=experiments/configs/fd2talk/autoencoder.py:paper \
      --config.data.root=datasets/hdtf_vfhq --config.perceptual.weights_dir=~/weights \
      --workdir=runs/fd2talk_autoencoder
Variants (network sizes: `talking_heads.systems.fd2talk.sizes`):
  tiny   32 px, widths (8, 16), 32 codes (8 x 8 x 3 latent); perceptual term off (no weights here);
         tests, seconds.
  demo   every identity of the demo corpus at 64 px (shrunk from 256; f = 4 as the paper: a
         16 x 16 x 3 latent), widths (32, 64), 512 codes, batch 8 (shrunk from 32), Adam 5e-4
         (warm-up, cosine; the taming rate at this batch would be 3.6e-5, too slow for a
         from-scratch run of minutes), 300 steps: 0.7 steps/s on 2 CPU cores shared with other
         jobs (load ~10; measured over 40 steps), about 7 min. The perceptual term is off: no
         LPIPS weights on this machine (on with --config.perceptual.weights_dir=... and
         --config.loss.perceptual_weight=1).
  paper  spec §2.5, §3-4: 256 px, 64 x 64 x 3 latent (f = 4), widths (128, 256) (the library's
         stand-in for vq-f4, `models.fd2talk_autoencoder`), 8192 codes, L2 + LPIPS-VGG with
         weights 1, 1 (Eq. 15; taming's perceptual weight), VQ beta 0.25, batch 32 (stage 2's),
         Adam at taming's 4.5e-6 x batch = 1.44e-4; iterations are not given (50k steps).
         Requires the LPIPS weights in `perceptual.weights_dir`.
"""

import ml_collections

from experiments.configs import common
from talking_heads.systems.fd2talk import sizes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parsed = common.parse_arg(arg)
  variant = parsed.variant
  c = common.trainer_config("fd2talk_autoencoder", variant)
  c.model = ml_collections.ConfigDict({"sizes": variant, "dtype": "float32"})
  c.loss = ml_collections.ConfigDict({"l2_weight": 1.0, "perceptual_weight": 1.0,
                                      "vq_weight": 1.0, "beta": 0.25})
  c.perceptual = ml_collections.ConfigDict({"kind": "lpips", "weights_dir": ""})
  c.data.update({"root": "", "identities": "", "image_size": sizes.sizes(variant).image_size,
                 "eval_split": "test", "eval_stride": 10, "eval_seed": 0})
  if variant == "tiny":
    c.loss.perceptual_weight = 0.0
    c.data.eval_stride = 4
    c.optimizer.learning_rate = 3e-3
  elif variant == "demo":
    c.loss.perceptual_weight = 0.0
    c.total_steps, c.batch_size, c.eval_batch_size = 300, 8, 16
    c.optimizer.update(learning_rate=5e-4, schedule="warmup_cosine", warmup_steps=30,
                       end_lr_factor=0.1)
    c.checkpoint_every, c.eval_every, c.image_every = 150, 300, 300
    c.data.eval_stride = 25
  elif variant == "paper":
    c.batch_size, c.eval_batch_size = 32, 32
    c.optimizer.learning_rate = 4.5e-6 * 32
  return common.apply_overrides(c, parsed)
