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
         16 x 16 x 3 latent), widths (32, 64), 512 codes restarted when dead, batch 8 (shrunk
         from 32), Adam 5e-4 (warm-up, cosine; the taming rate at this batch would be 3.6e-5, too
         slow for a from-scratch run of minutes), 1200 steps: 10.2 min on 2 free CPU cores;
         held-out PSNR 21.9 / 24.9 / 25.7 / 25.9 dB at 300 / 600 / 900 / 1200 steps (300 steps of
         a 300-step schedule: 18.8 dB; without restarts 18.7 dB with 12 of 512 codes in use).
         The perceptual term is off: no LPIPS weights on this machine (on with
         --config.perceptual.weights_dir=... and --config.loss.perceptual_weight=1).
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
  # Dead-code restarts (systems/fd2talk/autoencoder.py): every restart_every steps, a code
  # chosen by fewer than restart_threshold latent vectors a step (moving average) moves onto a
  # latent of the batch.
  c.codebook = ml_collections.ConfigDict({"restart_threshold": 1.0, "restart_every": 10,
                                          "usage_decay": 0.99})
  c.perceptual = ml_collections.ConfigDict({"kind": "lpips", "weights_dir": ""})
  c.data.update({"root": "", "identities": "", "image_size": sizes.sizes(variant).image_size,
                 "eval_split": "test", "eval_stride": 10, "eval_seed": 0})
  if variant == "tiny":
    c.loss.perceptual_weight = 0.0
    c.data.eval_stride = 4
    c.optimizer.learning_rate = 3e-3
  elif variant == "demo":
    c.loss.perceptual_weight = 0.0
    c.total_steps, c.batch_size, c.eval_batch_size = 1200, 8, 16
    c.optimizer.update(learning_rate=5e-4, schedule="warmup_cosine", warmup_steps=30,
                       end_lr_factor=0.1)
    c.checkpoint_every, c.eval_every, c.image_every = 300, 300, 1200
    c.data.eval_stride = 25
  elif variant == "paper":
    c.batch_size, c.eval_batch_size = 32, 32
    c.optimizer.learning_rate = 4.5e-6 * 32
  return common.apply_overrides(c, parsed)
