"""FD2Talk stage 2b (`fd2talk_unet`): the latent diffusion UNet in the frozen frame autoencoder's
latent space, x0 prediction, conditioned on the frame's true motion (phi1) and the reference
latent (phi2) (`talking_heads.systems.fd2talk.unet`).

Launch (the autoencoder is a trained workdir of `experiments/configs/fd2talk/autoencoder.py`):
  python -m experiments.train --config=experiments/configs/fd2talk/unet.py:demo \
      --config.data.root=runs/main/corpus \
      --config.autoencoder.workdir=runs/fd2talk_autoencoder_demo --workdir=runs/fd2talk_unet_demo
  python -m experiments.train --config=experiments/configs/fd2talk/unet.py:paper \
      --config.data.root=datasets/hdtf_vfhq --config.motion.expression_dim=64 \
      --config.autoencoder.workdir=runs/fd2talk_autoencoder --workdir=runs/fd2talk_unet
Ablation "Concatenate UNet Conditions" (Table 2): --config.model.conditioning=concatenated.
Variants (network sizes: `talking_heads.systems.fd2talk.sizes`):
  tiny   32 px (8 x 8 x 3 latent), UNet width 8 at two levels, both cross-attentions everywhere;
         T = 1000, 2 DDIM steps in evaluation; tests, seconds.
  demo   every identity of the demo corpus at 64 px (16 x 16 x 3 latent, f = 4; shrunk from
         256 / 64 x 64), UNet width 32, channel_mult (1, 2, 2), 2 ResBlocks, cross-attention at
         the two lower levels (shrunk from width 256, (1, 2, 3, 4)), batch 8 (shrunk from 32),
         Adam 2e-4 (warm-up, cosine) with gradient clip 1, no EMA (a run of minutes), 1500 steps:
         7.9 min on 2 free CPU cores with compilation and evaluation; held-out PSNR 25.2 dB with
         the true motion against the autoencoder's own 25.9 (400 steps: 18.1 against 18.7, on an
         autoencoder without dead-code restarts); evaluation with 10 DDIM steps (50 at inference).
  paper  spec §2.3, §2.6, §4: 256 px, 64 x 64 x 3 latent, UNet width 256, channel_mult (1, 2, 3,
         4), 2 ResBlocks, cross-attention at 32, 16, 8 px with 32-channel heads, contexts of
         width 128, motion tokenised per coefficient (spec §2.6); T = 1000, LDM "linear" betas
         (sqrt-linear 0.0015 .. 0.0195), DDIM 50 steps ("leading"), eta 0; batch 32, Adam
         2e-6 x 32 = 6.4e-5 with gradient clip 0.1 (DiffTalk's), EMA 0.9999; iterations are not
         given (50k steps). The expression width is the dataset's (Deep3D: 64; the library's
         morphable model: 9, the default).
"""

import ml_collections

from experiments.configs import common
from talking_heads.face import morphable
from talking_heads.systems.fd2talk import sizes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parsed = common.parse_arg(arg)
  variant = parsed.variant
  c = common.trainer_config("fd2talk_unet", variant)
  c.model = ml_collections.ConfigDict({"sizes": variant, "conditioning": "two_attentions",
                                       "motion_tokens": "per_coefficient", "remat": False,
      "dtype": "float32"})
  c.motion = ml_collections.ConfigDict({"expression_dim": len(morphable.EXPRESSION_NAMES),
                                        "pose_dim": 6})
  c.diffusion = ml_collections.ConfigDict({
      "schedule": "scaled_linear", "num_timesteps": 1000, "beta_start": 0.0015,
      "beta_end": 0.0195, "spacing": "leading", "sample_steps": 50, "eval_sample_steps": 20,
      "eta": 0.0, "latent_scale": 1.0})
  c.autoencoder = ml_collections.ConfigDict({"workdir": ""})
  c.data.update({"root": "", "identities": "", "image_size": sizes.sizes(variant).image_size,
                 "eval_split": "test", "eval_stride": 10, "eval_seed": 0})
  c.optimizer.learning_rate = 2e-6 * 32
  if variant == "tiny":
    c.diffusion.eval_sample_steps = 2
    c.data.eval_stride = 4
    c.batch_size = 4
    c.optimizer.learning_rate = 3e-3
  elif variant == "demo":
    c.diffusion.eval_sample_steps = 10
    c.total_steps, c.batch_size, c.eval_batch_size = 1500, 8, 16
    c.optimizer.update(learning_rate=2e-4, schedule="warmup_cosine", warmup_steps=30,
                       end_lr_factor=0.1, grad_clip_norm=1.0)
    c.checkpoint_every, c.eval_every, c.image_every = 500, 500, 1500
    c.data.eval_stride = 25
  elif variant == "paper":
    c.total_steps, c.batch_size, c.eval_batch_size = 50_000, 32, 32
    c.optimizer.grad_clip_norm = 0.1
    # Batch 32 of 64 x 64 latents with attention at three levels: blocks rematerialised.
    c.model.remat = True
    c.ema_decay = 0.9999
  return common.apply_overrides(c, parsed)
