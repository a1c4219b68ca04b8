"""PIR component A (`pir_audio2exp`): audio -> expression coefficients of one person, teacher-forced
MSE, autoregressive evaluation (`talking_heads.systems.pir.audio2exp`).

Launch:
  python -m experiments.train --config=experiments/configs/pir/audio2exp.py:demo \
      --config.data.root=runs/main/corpus --workdir=runs/pir_audio2exp_demo
  python -m experiments.train --config=experiments/configs/pir/audio2exp.py:paper \
      --config.data.root=datasets/hdtf_person --config.data.identities=person \
      --config.audio.weights_dir=~/weights --workdir=runs/pir_audio2exp_person
The paper's front end reads wav2vec2 features cached once per clip:
  python -m experiments.precompute_audio_features --dataset=datasets/hdtf_person \
      --frontend=wav2vec2 --weights=facebook/wav2vec2-large-xlsr-53 --weights_dir=~/weights \
      --alignment=interpolate
Variants (network sizes: `talking_heads.systems.pir.sizes`):
  tiny   width 16, 8-frame windows of identity id0 of a test dataset, mel features (tests, CI).
  demo   id01 of the demo corpus (about 2.3 min of train video, clips of 2-8 s) at the demo width
         (128, 4 heads, FFN 256, 1 layer); shrunk from the paper: k = 50 frames (2 s; k = 100
         would drop the clips shorter than 4 s), the RADIO mel instead of wav2vec2 (no weights
         here), batch 8, Adam 1e-4, 1000 steps (about 115 epochs of its ~3450 train frames in
         50-frame windows, the paper's 120; not timed here).
  paper  spec §2.1, §4: D 1024, 4 heads, FFN 2048, 1 decoder layer, dropout 0.1, k = 100,
         wav2vec2 large (XLSR-53, 1024-d) features interpolated to 25 fps, Adam 1e-4, batch 1
         window; 120 epochs: total_steps = 120 x train frames / 100, here 8250 for a 5-minute
         video without its last 25 s (HDTF, 6875 frames); set it for yours.
"""

import ml_collections

from experiments.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parsed = common.parse_arg(arg)
  variant = parsed.variant
  c = common.trainer_config("pir_audio2exp", variant)
  c.model = ml_collections.ConfigDict({"sizes": variant, "dropout": 0.1, "dtype": "float32"})
  c.audio = ml_collections.ConfigDict({"frontend": "mel", "weights": "", "weights_dir": "",
                                       "layer": -1, "dim": 0})
  c.data.update({"root": "", "identities": "", "window": 100, "eval_split": "val",
                 "eval_seed": 0})
  c.optimizer.learning_rate = 1e-4
  if variant == "tiny":
    c.model.dropout = 0.0
    c.data.update(identities="id0", window=8, eval_split="test")
    c.optimizer.learning_rate = 3e-3
  elif variant == "demo":
    c.data.update(identities="id01", window=50)
    c.total_steps, c.eval_batch_size = 1000, 8
  elif variant == "paper":
    c.audio.update(frontend="wav2vec2", weights="facebook/wav2vec2-large-xlsr-53", dim=1024)
    c.data.num_workers = 4
    c.total_steps, c.batch_size, c.eval_batch_size = 8250, 1, 8
    c.eval_every = c.checkpoint_every = c.image_every = 1000
  return common.apply_overrides(c, parsed)
