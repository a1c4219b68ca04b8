"""RADIO's generator: L1 + VGG19 pyramid perceptual, StyleGAN2 GAN with R1, frozen sync loss.

Launch (the sync discriminator is a workdir of `experiments/configs/radio/radio_sync.py`):
  python -m experiments.train --config=experiments/configs/radio/radio.py:demo \
      --config.data.root=runs/main/corpus --config.sync_discriminator.workdir=runs/radio_sync_demo \
      --workdir=runs/radio_demo
  python -m experiments.train --config=experiments/configs/radio/radio.py:paper \
      --config.data.root=... --config.sync_discriminator.workdir=... \
      --config.perceptual.weights_dir=~/weights --workdir=...
Ablations: `--config.model.ablation=A` .. `D` (Table 2; D is RADIO) and
the config argument `radio.py:demo,model.vit=(1,2)` (Table 3's ViT(n, m), with ablation D;
an empty tuple field takes no `--config.` override flag).
Variants (network sizes: `talking_heads.systems.radio.sizes`):
  tiny   32 px, widths 4-32, 4 steps (tests); the perceptual term off (no VGG19 weights here).
  demo   96 px, the paper's ablation scale (Tables 2-3 trained 210k iterations, batch 16) at 1/8
         widths, batch 8, Adam 2e-3 (0, 0.99) for G and D (StyleGAN2's, below); the perceptual
         term is on only with `perceptual.weights_dir` (the public vgg19-dcbb9e9d.pth cannot be
         downloaded on the project's machines).
  paper  192 px, the full model; spec §3-4: lambda_adv 0.1, lambda_s 0.03, R1 gamma 10 every 16 D
         updates, Adam 1e-4 (betas 0.5, 0.999) for G and D, batch 16, 400k iterations (the
         spec's recommended budget; the paper states none for the full model); VGG19 weights
         required.
"""

import ml_collections

from experiments.configs import common
from talking_heads.systems.radio import sizes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parsed = common.parse_arg(arg)
  variant = parsed.variant
  c = common.trainer_config("radio", variant)
  c.model = ml_collections.ConfigDict({"sizes": variant, "ablation": "D", "vit": (),
                                       "dtype": "float32"})
  c.data.update({
      "root": "", "image_size": sizes.sizes(variant).image_size, "eval_split": "val",
      "eval_stride": 5, "eval_seed": 0})
  c.loss = ml_collections.ConfigDict({
      "perceptual_weight": 1.0, "sync_weight": 0.03, "adv_weight": 0.1, "r1_gamma": 10.0,
      "r1_every": 16})
  c.sync_discriminator = ml_collections.ConfigDict({"workdir": ""})
  c.perceptual = ml_collections.ConfigDict({"weights_dir": ""})
  c.optimizer.update(learning_rate=1e-4, b1=0.5, b2=0.999)
  c.gan = ml_collections.ConfigDict({"optimizer": c.optimizer.to_dict()})
  if variant == "tiny":
    c.loss.perceptual_weight = 0.0
    c.total_steps = 4
    c.log_every, c.checkpoint_every, c.eval_every, c.image_every = 2, 2, 4, 4
  elif variant == "demo":
    c.loss.perceptual_weight = 0.0
    c.sync_discriminator.workdir = "runs/radio_sync_demo"
    c.data.eval_stride = 10
    c.total_steps = 2000
    # StyleGAN2's optimiser (the spec's second recommendation, §4): with equalised learning
    # rates a weight moves about lr of its unit scale a step, so 1e-4 barely moves the
    # generator in a CPU run (eval PSNR 17.6 dB after 250 steps; 2e-3: 17.5 after 50, 19.3
    # after 100; experiments/results/radio_demo).
    c.optimizer.update(learning_rate=2e-3, b1=0.0, b2=0.99)
    c.gan.optimizer.update(learning_rate=2e-3, b1=0.0, b2=0.99)
  elif variant == "paper":
    c.total_steps, c.batch_size, c.eval_batch_size = 400_000, 16, 16
    c.checkpoint_every, c.eval_every, c.image_every = 5000, 5000, 5000
  return common.apply_overrides(c, parsed)
