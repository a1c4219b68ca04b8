"""PIR's component C stage (`pir_renderer`): the inpainting renderer of the frame from the masked
frame and the feature image of the frozen, trained component B, against a 3-scale PatchGAN
(paper §3.3, Eqs. 1, 4-6; spec §2.3-2.4, §3).

Per frame of one person (`data.identities`; `pipelines.heads` at S = `data.image_size`):
  I_M   the frame with the inpaint mask zeroed (dilated head mask + jaw box, `pipelines.heads`),
        in [-1, 1];
  I_F   B(alpha, expression, camera(pose, K')) of the frozen B (`triplane.workdir`, a trained
        `pir_triplane` workdir; evenly spaced samples), where in training K' is K jittered by
        x1, x2, x3 ~ U(-s, s) frame pixels per example (Eq. 1, s = `jitter.strength`, paper 3;
        `rendering.camera.jitter_intrinsics`) and in evaluation K itself;
  I     = C(I_M, I_F) in [-1, 1], against the frame I_GT in [-1, 1].

  L_rec = w3 mean (I - I_GT)^2 + w4 sum_l mean (phi_l(I) - phi_l(I_GT))^2   (VGG16, Johnson, p = 2)
  L_FM  = sum_k sum_i mean |D_k^(i)(I) - D_k^(i)(I_GT)|                     (every layer but the logits)
  G     = L_rec + w_fm L_FM + w_gan sum_k g(D_k(I))
  D_k   d(D_k(I_GT), D_k(sg(I)))
with D_k the PatchGAN (`models.pir_renderer.NLayerDiscriminator`) on the pair concat(I_M, x)
average-pooled k times (3x3/2, count_include_pad=False), k = 0 .. num_scales - 1, i.e. pix2pixHD's
MultiscaleDiscriminator (spec §2.3: the condition I_M concatenated, 6 channels), each scale one
player of the shared adversarial step (`training.adversarial`; one Adam per scale is Adam over
all of them); `loss.gan` = "non_saturating" (the paper's log loss in its non-saturating form,
spec §3) or "least_squares" (pix2pixHD's). The step's feature matching is the mean over a
player's maps, so each player's weight is w_fm times its number of maps (the paper's sum).

Evaluation on `data.eval_split` frames of the person, K unjittered: `l2`, `psnr` (the whole
frame, [0, 1]) and `psnr_inpainted` (inside the inpaint mask).

Frozen networks: component B (`triplane.workdir`, required) and VGG16 (`perceptual.weights_dir`,
required when `loss.perceptual_weight` > 0), loaded on first use before any step; their
variables are host constants closed over by the jitted steps, never train state.

Config fields: model{sizes, dtype}, data{root, identities, image_size, eval_split, eval_stride,
eval_seed, num_workers}, jitter{strength}, loss{l2_weight, perceptual_weight, fm_weight,
gan_weight, gan}, triplane{workdir}, perceptual{weights_dir}, gan{optimizer{...}},
optimizer{...}, plus the trainer fields.

Dimensions: B batch, S frame size, r I_F size, C I_F channels.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from talking_heads.io.dataset import parse_identities
from talking_heads.losses import perceptual as perceptual_lib
from talking_heads.metrics import image as image_metrics
from talking_heads.models import pir_renderer
from talking_heads.models import triplane as triplane_lib
from talking_heads.pipelines import heads
from talking_heads.rendering import camera as camera_lib
from talking_heads.systems.images import to_model_range, to_unit_range
from talking_heads.systems.pir import sizes as sizes_lib
from talking_heads.systems.pir import triplane
from talking_heads.training import adversarial, restore
from talking_heads.training.optimizers import build_optimizer
from talking_heads.training.stage import Stage
from talking_heads.training.state import AdversarialTrainState, TrainState

STAGE = "pir_renderer"
KEYS = ("image", "masked", "inpaint_mask", "alpha", "expression", "pose", "K")
GAN_LOSSES = ("non_saturating", "least_squares")

PyTree = Any


def player_name(scale: int) -> str:
  return f"scale{scale}"


class FrozenTriplane:
  """Component B of a trained `pir_triplane` workdir: its generator and parameters."""

  def __init__(self, workdir: str):
    if not workdir:
      raise ValueError("triplane.workdir is empty: the renderer needs a trained 'pir_triplane' "
                       "workdir (component B); it never trains against a random B")
    try:
      stage, state, step = restore.restore_stage(workdir, expected_stage=triplane.STAGE)
    except FileNotFoundError as e:
      raise FileNotFoundError(f"triplane.workdir={workdir} is not a trained "
                              f"'{triplane.STAGE}' workdir: {e}") from None
    self.generator = stage.generator
    self.image_size = stage.image_size
    self.params = jax.device_get(state.eval_params["generator"])
    self.source = f"{workdir} step {step}"


def feature_images(frozen: FrozenTriplane, batch: Mapping[str, jax.Array], image_size: int,
                   jitter: jax.Array | None = None) -> jax.Array:
  """I_F [B, r, r, C] of the batch's frames under K (jittered by `jitter` [B, 3] pixels)."""
  camera = triplane.frame_camera(batch["pose"], batch["K"], image_size, jitter)
  rendered = triplane.feature_image(frozen.generator, frozen.params, batch["alpha"],
                                    batch["expression"], camera)
  return jax.lax.stop_gradient(rendered.image)


class RendererStage(Stage):
  """Trains component C (module docstring for batch, losses and config).

  Batch keys (`pipelines.heads`): image, masked uint8 [B, S, S, 3], inpaint_mask float32
  [B, S, S, 1], alpha [B, A], expression [B, E], pose [B, 6], K [B, 3, 3]; eval batches also
  valid bool [B].
  """

  def __init__(self, config: ml_collections.ConfigDict,
               perceptual_variables: Mapping[str, Any] | None = None):
    """`perceptual_variables` overrides loading VGG16 from `perceptual.weights_dir` (tests)."""
    super().__init__(config)
    if config.loss.gan not in GAN_LOSSES:
      raise ValueError(f"loss.gan must be one of {GAN_LOSSES}, got {config.loss.gan!r}")
    if config.jitter.strength < 0:
      raise ValueError(f"jitter.strength must be >= 0 pixels, got {config.jitter.strength}")
    sizes = sizes_lib.sizes(config.model.sizes)
    dtype = jnp.dtype(config.model.get("dtype", "float32"))
    self.image_size = int(config.data.image_size)
    self.renderer = pir_renderer.InpaintingRenderer(**sizes.renderer, dtype=dtype)
    # The per-scale PatchGAN of pix2pixHD's multi-scale discriminator at this variant's sizes.
    multiscale = pir_renderer.MultiscaleDiscriminator(**sizes.discriminator)
    self.num_scales = multiscale.num_scales
    self.discriminator = pir_renderer.NLayerDiscriminator(
        multiscale.base_features, multiscale.num_layers, dtype=dtype)
    # I_F's size, from B's sizes of the same variant (the frozen B's own is checked on loading).
    b = triplane_lib.TriplaneGenerator(**sizes.triplane)
    self.feature_shape = (b.neural_resolution, b.neural_resolution, b.plane_channels)
    self.tx = build_optimizer(config.optimizer, config.total_steps)
    self.disc_tx = build_optimizer(config.gan.optimizer, config.total_steps)
    self._perceptual_variables = perceptual_variables
    self._triplane: FrozenTriplane | None = None

  # ------------------------------------------------------------------------ frozen networks

  @property
  def frozen_triplane(self) -> FrozenTriplane:
    """Component B, loaded once on first use."""
    if self._triplane is None:
      frozen = FrozenTriplane(self.config.triplane.workdir)
      if frozen.image_size != self.image_size or (
          frozen.generator.neural_resolution, frozen.generator.plane_channels) != (
              self.feature_shape[0], self.feature_shape[2]):
        raise ValueError(
            f"triplane.workdir={self.config.triplane.workdir} renders I_F "
            f"{frozen.generator.plane_channels} x {frozen.generator.neural_resolution}^2 for "
            f"{frozen.image_size} px frames; this renderer ({self.config.model.sizes!r}) takes "
            f"{self.feature_shape[2]} x {self.feature_shape[0]}^2 for {self.image_size} px")
      logging.info("PIR C: frozen component B from %s.", frozen.source)
      self._triplane = frozen
    return self._triplane

  @property
  def perceptual_variables(self) -> Mapping[str, Any]:
    if self._perceptual_variables is None:
      self._perceptual_variables = perceptual_lib.make_perceptual_loss(
          "vgg16", self.config.perceptual.weights_dir, p=2).variables
    return self._perceptual_variables

  def _load_frozen(self) -> None:
    _ = self.frozen_triplane
    if self.config.loss.perceptual_weight > 0:
      _ = self.perceptual_variables

  # ---------------------------------------------------------------------------- generator

  def render(self, params: PyTree, masked: jax.Array, features: jax.Array) -> jax.Array:
    """uint8 I_M [B, S, S, 3] and I_F [B, r, r, C] -> I [B, S, S, 3] in [-1, 1]."""
    return self.renderer.apply({"params": params}, to_model_range(masked), features)

  def _generate_adversarial(self, params: PyTree, model_state: PyTree,
                            batch: Mapping[str, jax.Array], rng: jax.Array
                            ) -> adversarial.GeneratorOutput:
    del model_state
    loss_cfg = self.config.loss
    jitter = camera_lib.sample_jitter(rng, batch["K"].shape[0], self.config.jitter.strength)
    features = feature_images(self.frozen_triplane, batch, self.image_size, jitter)
    out = self.render(params, batch["masked"], features)
    target = to_model_range(batch["image"])
    l2 = jnp.mean(jnp.square(out - target))
    loss, metrics = loss_cfg.l2_weight * l2, {"l2": l2}
    if loss_cfg.perceptual_weight > 0:
      perceptual = perceptual_lib.perceptual_loss(
          self.perceptual_variables, out, target, distance="l2", value_range=(-1.0, 1.0))
      loss, metrics["perceptual"] = loss + loss_cfg.perceptual_weight * perceptual, perceptual
    condition = to_model_range(batch["masked"])
    metrics["psnr"] = jnp.mean(self._psnr(out, batch["image"]))
    return adversarial.GeneratorOutput(
        fake=jnp.concatenate([condition, out], axis=-1),
        real=jnp.concatenate([condition, target], axis=-1), loss=loss, metrics=metrics)

  @staticmethod
  def _psnr(out: jax.Array, frames: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """PSNR [B] in [0, 1] of I against the frames (inside `mask` [B, S, S, 1] only: the mean
    squared error over its pixels)."""
    a, b = to_unit_range(out), frames.astype(jnp.float32) / 255.0
    if mask is None:
      return image_metrics.psnr(a, b, data_range=1.0)
    weight = jnp.broadcast_to(mask, a.shape)
    mse = jnp.sum(weight * jnp.square(a - b), axis=(1, 2, 3)) / jnp.maximum(
        jnp.sum(weight, axis=(1, 2, 3)), 1.0)
    return 10.0 * jnp.log10(1.0 / jnp.maximum(mse, 1e-10))

  # ------------------------------------------------------------------------ discriminators

  def _disc_outputs(self, scale: int, params: PyTree, model_state: PyTree, pairs: jax.Array,
                    batch: Mapping[str, jax.Array], rng: jax.Array
                    ) -> adversarial.DiscriminatorOutput:
    del model_state, batch, rng
    x = pairs
    for _ in range(scale):
      x = pir_renderer.downsample_avg(x)
    outputs = self.discriminator.apply({"params": params}, x)
    return adversarial.DiscriminatorOutput(outputs[-1], features=list(outputs[:-1]))

  def _players(self) -> dict[str, adversarial.Discriminator]:
    loss_cfg = self.config.loss
    maps = self.discriminator.num_layers + 1      # feature maps per scale (all but the logits)
    return {player_name(k): adversarial.Discriminator(
        functools.partial(self._disc_outputs, k), loss=loss_cfg.gan,
        g_weight=loss_cfg.gan_weight, feature_matching=loss_cfg.fm_weight * maps)
            for k in range(self.num_scales)}

  # ------------------------------------------------------------------------------ training

  def init_state(self, rng: jax.Array) -> AdversarialTrainState:
    s = self.image_size
    g_key, d_key = jax.random.split(rng)
    g_params = self.renderer.init(g_key, jnp.zeros((1, s, s, 3)),
                                  jnp.zeros((1,) + self.feature_shape))["params"]
    generator = TrainState.create(g_params, self.tx, rng=rng,
                                  ema_decay=self.config.get("ema_decay", 0.0))
    players = {}
    for k in range(self.num_scales):
      side = s
      for _ in range(k):
        side = (side + 1) // 2
      params = self.discriminator.init(jax.random.fold_in(d_key, k),
                                       jnp.zeros((1, side, side, 6)))["params"]
      players[player_name(k)] = TrainState.create(params, self.disc_tx, rng=rng)
    return AdversarialTrainState.create(generator, players, rng=rng)

  def train_step(self, state: AdversarialTrainState, batch: Mapping[str, jax.Array],
                 rng: jax.Array) -> tuple[AdversarialTrainState, dict[str, jax.Array]]:
    state, metrics = adversarial.adversarial_step(state, self._generate_adversarial,
                                                  self._players(), batch, rng)
    names = [player_name(k) for k in range(self.num_scales)]
    total = lambda key: sum(metrics[f"{n}/{key}"] for n in names)
    # Sums over the scales (Eqs. 5-6), each scale's term a mean over its patches / maps.
    summary = {k: v for k, v in metrics.items() if "/" not in k}
    summary.update(adv_loss=total("g_loss"), feature_matching=total("feature_matching"),
                   disc_loss=total("d_loss"))
    return state, summary

  def variables(self, state: AdversarialTrainState) -> dict[str, Any]:
    return {"params": state.generator.eval_params}

  def _options(self) -> dict[str, Any]:
    return dict(image_size=self.image_size,
                identities=parse_identities(self.config.data.identities) or None)

  def train_iterator(self, batch_size: int, shard_index: int, shard_count: int):
    self._load_frozen()   # now, so that a missing network fails before any step
    d = self.config.data
    return heads.make_head_iterator(d.root, batch_size=batch_size, shard_index=shard_index,
                                    shard_count=shard_count, seed=self.config.seed,
                                    num_workers=d.num_workers, split="train", **self._options())

  # ---------------------------------------------------------------------------- evaluation

  def eval_step(self, state: AdversarialTrainState, batch: Mapping[str, jax.Array],
                rng: jax.Array) -> dict[str, jax.Array]:
    del rng
    valid = batch["valid"].astype(jnp.float32)
    features = feature_images(self.frozen_triplane, batch, self.image_size)
    out = self.render(self.variables(state)["params"], batch["masked"], features)
    mean = lambda x: jnp.sum(x * valid) / jnp.maximum(jnp.sum(valid), 1.0)
    target = to_model_range(batch["image"])
    return {"l2": mean(jnp.mean(jnp.square(out - target), axis=(1, 2, 3))),
            "psnr": mean(self._psnr(out, batch["image"])),
            "psnr_inpainted": mean(self._psnr(out, batch["image"], batch["inpaint_mask"])),
            "eval_weight": jnp.sum(valid)}

  def eval_batches(self, batch_size: int, shard_index: int, shard_count: int):
    d = self.config.data
    it = heads.make_head_eval_iterator(d.root, batch_size=batch_size, shard_index=shard_index,
                                       shard_count=shard_count, seed=d.eval_seed, num_workers=0,
                                       split=d.eval_split, stride=d.eval_stride, **self._options())
    yield from ({k: b[k] for k in KEYS + ("valid",)} for b in it)

  def images(self, state: AdversarialTrainState, batch: Mapping[str, jax.Array],
             rng: jax.Array) -> dict[str, jax.Array]:
    """Per frame, side by side: I_GT, I_M, I_F's first 3 channels (resized to S), I."""
    del rng
    n = min(4, batch["image"].shape[0])
    small = {k: batch[k][:n] for k in KEYS}
    features = feature_images(self.frozen_triplane, small, self.image_size)
    out = self.render(self.variables(state)["params"], small["masked"], features)
    s = self.image_size
    features = jax.image.resize(features[..., :3], (n, s, s, 3), "nearest")
    panels = [small["image"].astype(jnp.float32) / 255.0,
              small["masked"].astype(jnp.float32) / 255.0, to_unit_range(features),
              to_unit_range(out)]
    return {"target_masked_features_rendered": jnp.concatenate(panels, axis=2)}

  # ----------------------------------------------------------------------------- benchmark

  def inference(self, state: AdversarialTrainState
                ) -> tuple[Callable[..., jax.Array], tuple[Any, ...]]:
    """C of `batch_size` frames from their masked frames and I_F (B not included)."""
    b, s = self.config.batch_size, self.image_size
    fn = jax.jit(self.render)
    return fn, (self.variables(state)["params"], jnp.zeros((b, s, s, 3), jnp.uint8),
                jnp.zeros((b,) + self.feature_shape))
