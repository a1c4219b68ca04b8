"""FD2Talk stage 1 (`fd2talk_motion`): the Exp or Pose diffusion transformer, or the joint
single-DiT ablation (`model.motion`), x0 prediction on audio features with the alignment mask
and, for expressions, the frozen lip expert's L_sync (`talking_heads.systems.fd2talk.motion`).

Launch (the lip expert is a trained workdir of `experiments/configs/fd2talk/lip_expert.py` on
the same audio config; L_sync needs it whenever loss.sync_weight > 0):
  python -m experiments.train --config=experiments/configs/fd2talk/motion.py:demo \
      --config.data.root=runs/main/corpus \
      --config.lip_expert.workdir=runs/fd2talk_lip_expert_demo \
      --workdir=runs/fd2talk_expression_demo
  python -m experiments.train --config=experiments/configs/fd2talk/motion.py:demo \
      --config.data.root=runs/main/corpus --config.model.motion=pose \
      --workdir=runs/fd2talk_pose_demo
  python -m experiments.train --config=experiments/configs/fd2talk/motion.py:paper \
      --config.data.root=datasets/hdtf --config.lip_expert.workdir=runs/fd2talk_lip_expert \
      --workdir=runs/fd2talk_expression
Ablations: Table 2's single DiT --config.model.motion=joint; Table 3's "w/o alignment"
--config.model.alignment_mask=false and "w/o L_sync" --config.loss.sync_weight=0.
Variants (network sizes: `talking_heads.systems.fd2talk.sizes`):
  tiny   2 layers of width 16 on 8-frame windows, 5 DDIM steps in evaluation (tests, CI; the
         tiny synthetic corpus), evaluated on the test split; mel features.
  demo   every train identity of the demo corpus (4, 13k frames); the paper's 6 layers at
         width 64 (4 heads), F = 25, k = 3, T = 1000, 50 DDIM steps in evaluation; shrunk: the
         RADIO mel stacked per frame (no wav2vec2 weights here), batch 16 (the paper's 1) for
         3000 steps at Adam 1e-3 with gradient clip 1, lambda_sync 0.01, evaluation every 1000
         steps. Measured against the demo lip expert on 2 free CPU cores: 2.5 minutes with
         compilation and evaluation (Pose Transformer 1.9); val clips at the end: x0_mse 0.45,
         DDIM-50 sampled_mse 0.70, mouth-opening correlation 0.78 (without L_sync 0.44, 0.77,
         0.78; without the alignment mask 0.62, 1.83, -0.03; experiments/results/fd2talk_demo).
  paper  spec §2.2-2.3, §3-4: 6 layers, W 256, 8 heads, MLP 1024, k = 3, F = 25, batch 1,
         T = 1000 linear betas 1e-4 .. 0.02, DDIM 50 steps with eta 0, Adam 1e-4 (0.9, 0.999),
         lambda_sync 0.01 (the spec's starting point; the paper gives no lambdas), wav2vec2
         XLSR-53 features (1024-d) interpolated to 25 fps. Iterations are not given
         (UNSPECIFIED): the trainer's 50k steps.
"""

import ml_collections

from experiments.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parsed = common.parse_arg(arg)
  variant = parsed.variant
  c = common.trainer_config("fd2talk_motion", variant)
  c.model = ml_collections.ConfigDict({"sizes": variant, "motion": "expression",
                                       "alignment_mask": True, "mask_window": 3,
                                       "self_attention": True, "remat": False,
      "dtype": "float32"})
  c.diffusion = ml_collections.ConfigDict({"num_timesteps": 1000, "schedule": "linear",
                                           "beta_start": 1e-4, "beta_end": 0.02})
  c.sampling = ml_collections.ConfigDict({"steps": 50, "spacing": "leading", "eta": 0.0})
  c.loss = ml_collections.ConfigDict({"sync_weight": 0.01})
  c.lip_expert = ml_collections.ConfigDict({"workdir": ""})
  c.audio = ml_collections.ConfigDict({"frontend": "mel", "weights": "", "layer": -1, "dim": 0})
  c.data.update({"root": "", "identities": "", "window": 25, "eval_split": "val",
                 "eval_seed": 0})
  c.optimizer.learning_rate = 1e-4
  if variant == "tiny":
    c.data.update(window=8, eval_split="test")
    c.sampling.steps = 5
    c.optimizer.learning_rate = 1e-3
  elif variant == "demo":
    c.total_steps, c.batch_size, c.eval_batch_size = 3000, 16, 16
    c.eval_every = 1000
    # Unclipped, the Exp Transformer with L_sync and the joint DiT blew up once (gradient norm
    # 7-16, the loss back at its start) and had not recovered at 3000 steps.
    c.optimizer.update(learning_rate=1e-3, grad_clip_norm=1.0)
  elif variant == "paper":
    c.audio.update(frontend="wav2vec2", weights="jonatasgrosman/wav2vec2-large-xlsr-53-english",
                   dim=1024)
    c.batch_size, c.eval_batch_size = 1, 8
  return common.apply_overrides(c, parsed)
