"""LaDTalk's SOVQAE (per-identity VQ autoencoder with the codebook regulariser) on one identity.

Launch:
  python -m experiments.train --config=experiments/configs/ladtalk/sovqae.py:demo \
      --config.data.root=/tmp/demo_corpus --workdir=runs/sovqae_id01
  python -m experiments.train --config=experiments/configs/ladtalk/sovqae.py:paper \
      --config.data.root=datasets/usual --config.data.identities=obama \
      --config.perceptual.weights_dir=~/weights --workdir=runs/sovqae_obama
Variants:
  tiny   tests: 32 px, 2 levels, 32 codes of width 8, the GAN on from step 2; seconds on CPU.
  demo   id01 of the demo corpus (2.3 min of train video) at its 128 px, m = 3 (f = 8: a 16 x 16
         latent; f = 16 would leave 8 x 8 codes for a 128 px face), widths (16, 32, 64), N = 512
         codes of width 64, batch 8, Adam 5e-4 (warm-up, cosine), 1100 steps: about 25 min on
         2 CPU cores (31.1 dB held-out PSNR; experiments/results/ladtalk_demo). No perceptual loss (no VGG weights
         needed) and no PatchGAN (disc_weight 0): once enabled the discriminator runs in every
         step (about +35% time) and the demo's targets are PSNR;
         --config.loss.disc_weight=0.8 --config.loss.disc_start=1300 turns it on.
  paper  LaDTalk App. F: 256 px, N = 1024, c = 256, m = 4 (f = 16), theta = 1, beta = 1 (Eq. 12
         weighs both VQ terms by 1; taming uses 0.25), L2 reconstruction. Widths from taming's f16
         faces VQGAN (ch 128, ch_mult (1, 1, 2, 2, 4), five levels, 2 ResBlocks each, the last
         level without Downsample): Table 6 has four {ResBlock, Downsample} levels, so one
         ResBlock per level with widths (128, 128, 256, 512) = ch x (1, 1, 2, 4) (taming's second
         2x level dropped), keeping taming's first width C' = 128 and latent width C'' = 512.
         taming's loss settings: LPIPS-VGG perceptual weight 1, disc_weight 0.8, disc_start
         30001, hinge loss, Adam betas (0.5, 0.9), lr 4.5e-6 x batch. The paper gives neither
         batch nor step count: batch 8 (fits a 24 GB RTX 4090 at 256 px) and 50 epochs of a
         ~8,000-frame training video (10:1 split of ~8,843 frames) = 50,000 steps.
         `data.identities` and `data.root` must be set.
"""

import ml_collections

from experiments.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parsed = common.parse_arg(arg)
  variant = parsed.variant
  c = common.trainer_config("sovqae", variant)
  c.model = ml_collections.ConfigDict({
      "channels": (128, 128, 256, 512), "num_codes": 1024, "code_dim": 256, "dtype": "float32"})
  c.quantizer = ml_collections.ConfigDict({"beta": 1.0, "legacy": False})
  c.regulariser = ml_collections.ConfigDict({"mode": "minimal", "theta": 1.0, "weight": 1.0})
  c.loss = ml_collections.ConfigDict({
      "reconstruction": "l2", "perceptual_weight": 1.0, "codebook_weight": 1.0,
      "disc_weight": 0.8, "disc_start": 30001, "disc_loss": "hinge"})
  c.perceptual = ml_collections.ConfigDict({"weights_dir": "", "net": "lpips"})
  c.discriminator = ml_collections.ConfigDict({"base_features": 64, "num_layers": 3})
  c.data.update({
      "root": "", "identities": "", "image_size": 256, "degrade": False, "eval_split": "test",
      "eval_stride": 10, "eval_seed": 0})
  c.optimizer.update(b1=0.5, b2=0.9)
  c.disc_optimizer = ml_collections.ConfigDict(c.optimizer.to_dict())
  if variant == "tiny":
    c.model.update(channels=(8, 16), num_codes=32, code_dim=8)
    c.discriminator.base_features = 8
    c.loss.update(perceptual_weight=0.0, disc_start=2)
    c.data.update(identities="id0", image_size=32, eval_stride=3)
    c.optimizer.learning_rate = c.disc_optimizer.learning_rate = 1e-3
  elif variant == "demo":
    c.model.update(channels=(16, 32, 64), num_codes=512, code_dim=64)
    c.discriminator.base_features = 16
    c.loss.update(perceptual_weight=0.0, disc_weight=0.0)
    c.data.update(identities="id01", image_size=128, eval_stride=4)
    c.optimizer.update(learning_rate=5e-4, schedule="warmup_cosine", warmup_steps=100,
                       end_lr_factor=0.05)
    c.total_steps, c.eval_batch_size = 600, 16
  elif variant == "paper":
    c.optimizer.learning_rate = c.disc_optimizer.learning_rate = 4.5e-6 * 8
    c.batch_size, c.eval_batch_size = 8, 8
  return common.apply_overrides(c, parsed)
