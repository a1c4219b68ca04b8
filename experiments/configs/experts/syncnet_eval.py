"""Independent LSE expert: syncnet_python's network S trained on the corpus (stage `syncnet_eval`).

It scores every LSE number when syncnet_v2.model is not given; no generator trains against it
(the colour `syncnet` expert stays the training expert). See
`talking_heads/systems/experts/syncnet_eval.py` for the objective.

Launch:
  python -m experiments.train --config=experiments/configs/experts/syncnet_eval.py:demo \
      --config.data.root=runs/main/corpus --workdir=runs/syncnet_eval

Its own data order and seed: seed 1 (the colour expert's is 0), its own sampler (every start of
every training clip with 2K+1 audio offsets, not in-sync / off-sync pairs), its own inputs
(whole face crops, or at demo scale the square holding the mouth, and MFCC; not lower halves and
mels).

Variants and deviations from the published S (width 1, 224 px lips, D = 1024):
  paper: the published network (width 1, 224 px: the corpus's 128 px crops are upsampled, as the
    official scorer resizes any crop to 224), max_offset 15 (syncnet_python's vshift), batch 64,
    Adam 1e-4. syncnet_python publishes no training recipe: batch, learning rate, step budget and
    the multi-way objective are ours.
  demo (2 CPU cores, the main job): width 1/8 (conv widths 12-64, FC 64), D = 128, lips 64 px:
    the lower-centre square of the 128 px crops at its native 64 px (`data.lip_region`, rows
    64-128, columns 32-96, which hold every demo clip's mouth landmarks), not the whole crop
    area-resized (the last lip conv's kernel becomes 1x1, the map left at 64 px). Measured on the
    demo corpus (experiments/results/syncnet_eval_demo): with whole crops the held-out offset
    accuracy was 0.080 / 0.049 / 0.162 / 0.177 at steps 300 / 600 / 900 / 1200 (chance 0.077),
    with the mouth square 0.098 / 0.156 / 0.330 / 0.398: the mouth at twice the pixels is found
    sooner. max_offset 6 (13 audio windows a sample: the range the evaluator check plants),
    batch 16, 1200 steps, Adam 1e-3 with warm-up and cosine decay. Cost (issue 16, measured on
    the shared 2-core machine, CPU seconds a step, the colour expert's demo step beside it in the
    same process: 0.74-0.86 s): at width 1/4, D = 256, max_offset 8 it took 1.7 s (by arithmetic
    the audio tower, run on 2K+1 windows a sample, holds most of the FLOPs), hence width 1/8 and
    max_offset 6:
    0.74-0.81 s CPU a step (compile 16 s CPU; 0.15 M parameters), the colour expert's per-step
    cost at half its batch: by its measured 0.63 s a step on two idle cores, about 13 minutes
    for the 1200 steps (still rising at 1200; the experts' main part reports it).
  tiny (tests): width 1/16, D = 32, lips 64 px, max_offset 3, batch 8, Adam 1e-3.
MFCC input (13 x 20, python_speech_features' defaults) is the published one in every variant.
"""

import ml_collections

from experiments.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parsed = common.parse_arg(arg)
  variant = parsed.variant
  c = common.trainer_config("syncnet_eval", variant)
  c.seed = 1
  c.model = ml_collections.ConfigDict({"width": 1.0, "lip_size": 224, "embed_dim": 1024,
                                       "dtype": "float32"})
  c.data.update({"root": "", "max_offset": 15, "lip_region": "face", "eval_split": "val",
                 "eval_stride": 5})
  c.optimizer.learning_rate = 1e-4
  # Held-out per-window offset accuracy over chance the expert needs before LSE tables use it
  # (`sync_expert.lse_scorer`; measured in experiments/results/syncnet_eval_demo). Tiny runs only
  # show the wiring: their experts judge at any accuracy.
  c.judge_min_over_chance = 2.0
  if variant == "tiny":
    c.model.update({"width": 0.0625, "lip_size": 64, "embed_dim": 32})
    c.data.max_offset = 3
    c.optimizer.learning_rate = 1e-3
    c.judge_min_over_chance = 0.0
  elif variant == "demo":
    c.model.update({"width": 0.125, "lip_size": 64, "embed_dim": 128})
    c.data.max_offset, c.data.lip_region = 6, "lower_centre"
    c.total_steps, c.batch_size = 1200, 16
    c.optimizer.learning_rate = 1e-3
    c.optimizer.schedule, c.optimizer.warmup_steps, c.optimizer.end_lr_factor = "warmup_cosine", 100, 0.05
    c.checkpoint_every, c.eval_every, c.image_every = 300, 300, 600
  elif variant == "paper":
    c.total_steps = 300_000
    c.checkpoint_every, c.eval_every, c.image_every = 3000, 3000, 3000
  return common.apply_overrides(c, parsed)
