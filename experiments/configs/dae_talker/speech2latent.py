"""DAE-Talker's speech2latent (speech -> diffusion-autoencoder latents and head pose), one speaker.

Launch (after training the DAE and writing its latents with experiments.dae_talker.precompute_latents):
  python -m experiments.train --config=experiments/configs/dae_talker/speech2latent.py:demo \
      --config.data.root=/tmp/demo_corpus --workdir=runs/speech2latent_demo
  python -m experiments.train --config=experiments/configs/dae_talker/speech2latent.py:paper \
      --config.data.root=datasets/obama --config.data.identities=obama \
      --config.data.latents=dae_obama --workdir=runs/speech2latent_obama
Table 2's ablation ("w/o data aug"): --config.data.sampling=fixed_segments.
Variants:
  tiny   tests: width 16, 1 + 1 blocks, latent 16 (the tiny DAE's), 8-16 frame windows.
  demo   id01 of the demo corpus (2.3 min of train video in clips of 2-8 s) and the latents of
         the demo DAE (`dae_demo`, 512-d). Its clips are shorter than the paper's 5-20 s
         pseudo-sentences, which cannot come from one clip, so the sampling is scaled down:
         pseudo-sentences of 1-4 s (25-100 frames) inside a clip, and 4 s fixed segments for the
         ablation. Width 128, 2 heads, 2 + 2 Conformer blocks (FFN 512, kernel 13), pose predictor
         128 channels, dropout 0.1 (1.8M parameters); batch 8, Adam 3e-4 (warm-up, cosine),
         1500 steps: 0.44 s/step measured on 2 CPU cores shared with other jobs (load ~6), so
         about 11 min (the paper's sizes, 13.6M parameters: 3.1 s/step).
  paper  §4.1.2: 4 + 4 Conformer blocks, 2 heads, d = 256, kernel 13, pose predictor of two
         Conv1d k3 with 384 channels, Adam 1e-4, batch 16, 5-20 s pseudo-sentences (125-500
         frames). The paper's wav2vec2 XLSR features cannot be used here (no weights can be
         downloaded): the RADIO mel (100 fps, stride 4) replaces them. Not given by the paper,
         chosen here: FFN 1024 (4 d), dropout 0.1, alpha 1, 50k steps, pose_scale 0.1 rad (set it
         near the speaker's pose spread), latents standardised per dimension.
"""

import ml_collections

from experiments.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parsed = common.parse_arg(arg)
  variant = parsed.variant
  c = common.trainer_config("speech2latent", variant)
  c.model = ml_collections.ConfigDict({
      "features": "radio_mel", "model_dim": 256, "num_heads": 2, "encoder_blocks": 4,
      "decoder_blocks": 4, "ffn_dim": 1024, "kernel_size": 13, "input_kernel": 0,
      "pose_channels": 384, "pose_kernel": 3, "latent_dim": 512, "dropout": 0.1,
      "dtype": "float32"})
  c.loss = ml_collections.ConfigDict({"alpha": 1.0, "standardise_latents": True})
  c.data.update({
      "root": "", "identities": "", "latents": "", "sampling": "pseudo_sentence",
      "min_length": 125, "max_length": 500, "pose_scale": 0.1, "eval_split": "val",
      "eval_seed": 0})
  c.optimizer.learning_rate = 1e-4
  if variant == "tiny":
    c.model.update(model_dim=16, encoder_blocks=1, decoder_blocks=1, ffn_dim=32, kernel_size=3,
                   pose_channels=8, latent_dim=16, dropout=0.0)
    c.data.update(identities="id0", latents="dae_tiny", min_length=8, max_length=16,
                  pose_scale=0.05, eval_split="test")
    c.optimizer.learning_rate = 3e-3
  elif variant == "demo":
    c.model.update(model_dim=128, encoder_blocks=2, decoder_blocks=2, ffn_dim=512,
                   pose_channels=128)
    c.data.update(identities="id01", latents="dae_demo", min_length=25, max_length=100,
                  pose_scale=0.01)
    c.optimizer.update(learning_rate=3e-4, schedule="warmup_cosine", warmup_steps=100,
                       end_lr_factor=0.1)
    c.total_steps, c.eval_batch_size = 600, 8
  elif variant == "paper":
    c.data.num_workers = 4
    c.batch_size, c.eval_batch_size, c.eval_every = 16, 16, 2500
  return common.apply_overrides(c, parsed)
