"""PIR component C (`pir_renderer`): the inpainting renderer from the masked frame and the
K-jittered feature image of the frozen component B, L2 + VGG16 + feature matching + 3-scale
PatchGAN (`talking_heads.systems.pir.renderer`).

Launch (component B is a trained workdir of `experiments/configs/pir/triplane.py`):
  python -m experiments.train --config=experiments/configs/pir/renderer.py:demo \
      --config.data.root=runs/main/corpus --config.triplane.workdir=runs/pir_triplane_demo \
      --workdir=runs/pir_renderer_demo
  python -m experiments.train --config=experiments/configs/pir/renderer.py:paper \
      --config.data.root=datasets/hdtf_person --config.data.identities=person \
      --config.triplane.workdir=runs/pir_triplane_person --config.perceptual.weights_dir=~/weights \
      --workdir=runs/pir_renderer_person
Ablation "without jitter": --config.jitter.strength=0.
Variants (network sizes: `talking_heads.systems.pir.sizes`):
  tiny   32 px, the global generator with the local enhancer at widths 4-16, a 3-scale D of 2
         layers and width 4 (tests, CI); the perceptual term off (no VGG16 weights here).
  demo   id01 of the demo corpus at 128 px (shrunk from 512): the global generator alone (F 16,
         3 down-samplings to 16 x 16, 4 residual blocks; no local enhancer at 128 px), D 3 scales
         of 3 layers at width 32, K-jitter s = 3 pixels of the 512 px frame scaled to 128 px
         (0.75); batch 4, Adam 2e-4 (0.5, 0.999) for G and D, 3000 steps (not timed here). The
         perceptual term is on only with --config.perceptual.weights_dir and
         --config.loss.perceptual_weight=1.
  paper  spec §2.3-2.4, §3-4: 512 px, pix2pixHD LocalEnhancer (F 32, global 64, 3 down-samplings,
         4 + 3 residual blocks), I_F 32 x 64 x 64 pooled to the 32 x 32 bottleneck, D 3 scales x
         3 layers x 64 on concat(I_M, I), s = 3, w3 = w4 = 1, unit FM and GAN weights
         (non-saturating log loss), Adam 2e-4 with betas (0.5, 0.999) for G and D, constant
         (pix2pixHD's linear decay over the second half is not one of the trainer's schedules),
         batch 4;
         50 epochs: total_steps = 50 x train frames / 4, here 86k for a 5-minute video without
         its last 25 s (6875 frames); VGG16 weights required.
"""

import ml_collections

from experiments.configs import common
from talking_heads.rendering import camera
from talking_heads.systems.pir import sizes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parsed = common.parse_arg(arg)
  variant = parsed.variant
  c = common.trainer_config("pir_renderer", variant)
  image_size = sizes.sizes(variant).image_size
  c.model = ml_collections.ConfigDict({"sizes": variant, "dtype": "float32"})
  c.data.update({"root": "", "identities": "", "image_size": image_size, "eval_split": "val",
                 "eval_stride": 5, "eval_seed": 0})
  # s pixels of the paper's 512 px frame, in this variant's frame pixels.
  c.jitter = ml_collections.ConfigDict({"strength": camera.JITTER_PIXELS * image_size / 512})
  c.loss = ml_collections.ConfigDict({"l2_weight": 1.0, "perceptual_weight": 1.0,
                                      "fm_weight": 1.0, "gan_weight": 1.0,
                                      "gan": "non_saturating"})
  c.triplane = ml_collections.ConfigDict({"workdir": ""})
  c.perceptual = ml_collections.ConfigDict({"weights_dir": ""})
  c.optimizer.update(learning_rate=2e-4, b1=0.5, b2=0.999)
  c.gan = ml_collections.ConfigDict({"optimizer": c.optimizer.to_dict()})
  if variant == "tiny":
    c.data.update(identities="id0", eval_split="test", eval_stride=4)
    c.loss.perceptual_weight = 0.0
    c.batch_size = 4
  elif variant == "demo":
    c.data.identities = "id01"
    c.loss.perceptual_weight = 0.0
    c.total_steps, c.batch_size, c.eval_batch_size = 3000, 4, 16
    c.eval_every = 100   # the PSNR curve of short runs (the main job's)
  elif variant == "paper":
    c.data.num_workers = 4
    c.total_steps, c.batch_size, c.eval_batch_size = 86_000, 4, 16
  return common.apply_overrides(c, parsed)
