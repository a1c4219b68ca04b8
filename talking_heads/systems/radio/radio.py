"""RADIO's generator stage (`radio`): reconstruction, StyleGAN2 adversarial and frozen sync losses
(paper §3.4, Eq. 2-6; spec §3).

Batch (`pipelines.clips` with `clips.RADIO_AUDIO` and "independent" references; B batch, T = 5
frames, S face size, M = 80 mel bins, F = 20 mel frames = 0.2 s):
  frames      uint8   [B, T, S, S, 3]  aligned target faces f .. f+4 (ground truth, RGB)
  reference   uint8   [B, T, S, S, 3]  one randomly chosen frame of the same video per target
  indiv_mels  float32 [B, T, M, F]     each frame's mel window (the generator's audio)
  mel         float32 [B, M, F]        the window of frame f: the 5 frames' audio (sync loss)
  valid       bool    [B]              eval batches only: False for padding entries
(`masked` of the pipeline is not read: the stage masks the targets itself, in [-1, 1].)

Per frame (T folded into the batch, N = B T): masked = target in [-1, 1] with rows S/2 .. S-1
set to 0, out = G(masked, reference, mel window) in [-1, 1] (StyleGAN2 noise on in training,
off in evaluation and inference).
  L_rec   = mean |target - out| + w_p sum_i lambda_i mean |phi_i(target) - phi_i(out)|
            (VGG19 relu1_1 .. relu5_1, lambda = 1/32 .. 1, pix2pixHD; `losses.perceptual`)
  L_sync  = mean -log p(sync_window(out of the 5 frames), mel), p from the FROZEN `radio_sync`
            discriminator on the differentiable tight crop (`models.radio_sync.sync_window`)
  G       L_rec + w_s L_sync + w_adv softplus(-D(out))             (non-saturating)
  D       softplus(D(out)) + softplus(-D(target)) + R1 (gamma/2 |grad D(target)|^2, lazily every
          `r1_every` of its updates, scaled by it), on the generator's output before its update
The G and D updates are the shared adversarial step (`training.adversarial`, the one LaDTalk's
Wav2Lip GAN uses), with the StyleGAN2 resnet discriminator as its player "visual". Both Adam
(spec §4: lr 1e-4, betas 0.5, 0.999); StyleGAN2's lazy-R1 adjustment of D's lr and betas is not
applied.

Frozen networks: the sync discriminator (`sync_discriminator.workdir`, a trained `radio_sync`
workdir; required when `loss.sync_weight` > 0) and VGG19 (`perceptual.weights_dir`, the public
torchvision file; required when `loss.perceptual_weight` > 0). Their variables are host
constants closed over by the jitted steps, never train state, loaded on first use (the train
iterator asks first, so a missing one fails before any step); restoring a trained generator for
generation needs neither.
Evaluation: l1, PSNR (per 5-frame window, [0, 1]), and with the sync discriminator its BCE
(sync_loss) and mean probability (sync: Table 2's "Sync" column).

Config fields: model{sizes, ablation, vit, dtype}, data{root, image_size, eval_split,
eval_stride, eval_seed, num_workers}, loss{perceptual_weight, sync_weight, adv_weight, r1_gamma,
r1_every}, sync_discriminator{workdir}, perceptual{weights_dir}, gan{optimizer{...}},
optimizer{...}, plus the trainer fields.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from talking_heads.losses import perceptual as perceptual_lib
from talking_heads.metrics import image as image_metrics
from talking_heads.metrics import reduce
from talking_heads.models import radio as radio_lib
from talking_heads.nn import stylegan
from talking_heads.pipelines import clips as clips_pipeline
from talking_heads.systems.images import to_model_range, to_unit_range
from talking_heads.systems.radio import radio_sync
from talking_heads.systems.radio import sizes as sizes_lib
from talking_heads.training import adversarial
from talking_heads.training.optimizers import build_optimizer
from talking_heads.training.stage import Stage
from talking_heads.training.state import AdversarialTrainState, TrainState

STAGE = "radio"
WINDOW = 5
MEL_BINS, MEL_FRAMES = 80, 20
TRAIN_KEYS = ("frames", "reference", "indiv_mels", "mel")
EVAL_KEYS = TRAIN_KEYS + ("valid",)
PLAYER = "visual"
# The adversarial step's metrics of the "visual" player -> this stage's names.
GAN_METRICS = {f"{PLAYER}/g_loss": "adv_loss", f"{PLAYER}/d_loss": "disc_loss",
               f"{PLAYER}/d_loss_real": "disc_real_loss",
               f"{PLAYER}/d_loss_fake": "disc_fake_loss", f"{PLAYER}/r1": "r1",
               f"{PLAYER}/grad_norm": "disc_grad_norm"}

PyTree = Any


def generator_fields(model: ml_collections.ConfigDict) -> dict[str, Any]:
  """`RadioGenerator` keyword arguments of a config's `model`: the variant's sizes, the Table 2
  ablation row ("A" .. "D") and, when `vit` = (n, m), Table 3's ViT(n, m)."""
  if model.ablation not in radio_lib.ABLATIONS:
    raise ValueError(f"model.ablation must be one of {sorted(radio_lib.ABLATIONS)}, got "
                     f"{model.ablation!r}")
  fields = {**sizes_lib.sizes(model.sizes).generator, **radio_lib.ABLATIONS[model.ablation]}
  if model.get("vit"):
    if len(model.vit) != 2 or model.ablation != "D":
      raise ValueError(f"model.vit must be (n, m) with ablation 'D', got {tuple(model.vit)} with "
                       f"{model.ablation!r}")
    fields.update(radio_lib.vit_ablation(*model.vit))
  return {**fields, "dtype": jnp.dtype(model.get("dtype", "float32"))}


def mask_lower_half(faces: jax.Array) -> jax.Array:
  """Faces [..., S, S, 3] in [-1, 1] with rows S/2 .. S-1 set to 0 (the generator's target)."""
  return faces.at[..., faces.shape[-3] // 2:, :, :].set(0.0)


def generate(generator: radio_lib.RadioGenerator, params: PyTree, faces: jax.Array,
             reference: jax.Array, mels: jax.Array, rng: jax.Array | None = None) -> jax.Array:
  """uint8 faces to edit and references [..., S, S, 3] (the faces' lower halves are masked
  here), mel windows [..., M, F] -> out [..., S, S, 3] in [-1, 1], the leading axes folded into
  the generator's batch; StyleGAN2 noise when `rng` is given."""
  lead = faces.shape[:-3]
  flat = lambda x: x.reshape(-1, *x.shape[len(lead):])
  out = generator.apply(
      {"params": params}, mask_lower_half(to_model_range(flat(faces))),
      to_model_range(flat(reference)), flat(jnp.asarray(mels, jnp.float32)),
      add_noise=rng is not None, rngs=None if rng is None else {"noise": rng})
  return out.reshape(*lead, *out.shape[1:])


def dub_faces(generator: radio_lib.RadioGenerator, variables: Mapping[str, Any],
              faces: jax.Array, reference: jax.Array, mels: jax.Array) -> jax.Array:
  """Dubbed faces (pure; jit it): `generate` without noise -> float32 [..., S, S, 3] in
  [0, 1]."""
  return to_unit_range(generate(generator, variables["params"], faces, reference, mels))


class RadioStage(Stage):
  """Trains `models.radio.RadioGenerator` (module docstring for batch, losses and config)."""

  def __init__(self, config: ml_collections.ConfigDict,
               perceptual_variables: Mapping[str, Any] | None = None):
    """`perceptual_variables` overrides loading VGG19 from `perceptual.weights_dir` (tests)."""
    super().__init__(config)
    self.image_size = int(config.data.image_size)
    self.generator = radio_lib.RadioGenerator(**generator_fields(config.model))
    self.generator.check_fields()
    self.generator.check_image_size(self.image_size)
    self.discriminator = stylegan.Discriminator(
        **sizes_lib.sizes(config.model.sizes).discriminator,
        dtype=jnp.dtype(config.model.get("dtype", "float32")))
    self.tx = build_optimizer(config.optimizer, config.total_steps)
    self.disc_tx = build_optimizer(config.gan.optimizer, config.total_steps)
    self._perceptual_variables = perceptual_variables
    self._sync: radio_sync.FrozenSync | None = None

  # --------------------------------------------------------------------------- frozen networks

  @property
  def sync(self) -> radio_sync.FrozenSync:
    """The frozen sync discriminator, loaded once on first use."""
    if self._sync is None:
      self._sync = radio_sync.load_frozen_sync(self.config.sync_discriminator.workdir)
      logging.info("RADIO: frozen sync discriminator from %s.", self._sync.source)
    return self._sync

  @property
  def perceptual_variables(self) -> Mapping[str, Any]:
    """VGG19's frozen variables (pix2pixHD taps), loaded once on first use."""
    if self._perceptual_variables is None:
      self._perceptual_variables = perceptual_lib.make_perceptual_loss(
          "vgg19", self.config.perceptual.weights_dir).variables
    return self._perceptual_variables

  def _load_frozen(self) -> None:
    """Loads the frozen networks the losses need (errors name the missing config field)."""
    if self.config.loss.sync_weight > 0:
      _ = self.sync
    if self.config.loss.perceptual_weight > 0:
      _ = self.perceptual_variables

  # --------------------------------------------------------------------------- generator

  def _generate(self, params: PyTree, frames: jax.Array, reference: jax.Array,
                mels: jax.Array, rng: jax.Array | None = None) -> jax.Array:
    return generate(self.generator, params, frames, reference, mels, rng)

  def generate_faces(self, variables: dict[str, Any], faces: jax.Array, reference: jax.Array,
                     mels: jax.Array) -> jax.Array:
    """`dub_faces` with this stage's generator (pure; jit it)."""
    return dub_faces(self.generator, variables, faces, reference, mels)

  def variables(self, state: AdversarialTrainState) -> dict[str, Any]:
    """Generator variables to evaluate and generate with."""
    return {"params": state.generator.eval_params}

  def _sync_terms(self, generated: jax.Array, mel: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(-log p [B], p [B]) of the frozen sync discriminator on windows [B, T, S, S, 3] in
    [-1, 1] (no clipping: out-of-range pixels keep their gradient)."""
    sync = self.sync
    p = sync.probability(sync.variables, (generated + 1.0) * 0.5, mel)
    return radio_sync.probability_bce(p, jnp.ones_like(p)), p

  def _generate_adversarial(self, params: PyTree, model_state: PyTree,
                            batch: Mapping[str, jax.Array], rng: jax.Array
                            ) -> adversarial.GeneratorOutput:
    del model_state
    loss_cfg = self.config.loss
    generated = self._generate(params, batch["frames"], batch["reference"], batch["indiv_mels"],
                               rng)                                    # [B, T, S, S, 3]
    target = to_model_range(batch["frames"])
    l1 = jnp.mean(jnp.abs(generated - target))
    loss, metrics = l1, {"l1": l1}
    fake, real = (x.reshape(-1, *x.shape[2:]) for x in (generated, target))   # [N, S, S, 3]
    if loss_cfg.perceptual_weight > 0:
      perceptual = perceptual_lib.perceptual_loss(
          self.perceptual_variables, fake, real, layers=perceptual_lib.PIX2PIXHD_LAYERS,
          layer_weights=perceptual_lib.PIX2PIXHD_WEIGHTS, value_range=(-1.0, 1.0),
          variant="vgg19")
      loss, metrics["perceptual"] = loss + loss_cfg.perceptual_weight * perceptual, perceptual
    if loss_cfg.sync_weight > 0:
      sync_loss, p = self._sync_terms(generated, batch["mel"])
      loss = loss + loss_cfg.sync_weight * jnp.mean(sync_loss)
      metrics.update(sync_loss=jnp.mean(sync_loss), sync=jnp.mean(p))
    metrics["psnr"] = jnp.mean(self._window_psnr(generated, batch["frames"]))
    return adversarial.GeneratorOutput(fake=fake, real=real, loss=loss, metrics=metrics)

  @staticmethod
  def _window_psnr(generated: jax.Array, frames: jax.Array) -> jax.Array:
    """PSNR [B] of each 5-frame window as one image in [0, 1]."""
    b, t, s = generated.shape[:3]
    as_image = lambda x: x.reshape(b, t * s, s, 3)
    return image_metrics.psnr(as_image(to_unit_range(generated)),
                              as_image(frames.astype(jnp.float32) / 255.0), data_range=1.0)

  def _disc_logits(self, params: PyTree, model_state: PyTree, faces: jax.Array,
                   batch: Mapping[str, jax.Array], rng: jax.Array
                   ) -> adversarial.DiscriminatorOutput:
    del model_state, batch, rng
    return adversarial.DiscriminatorOutput(self.discriminator.apply({"params": params}, faces))

  def _players(self) -> dict[str, adversarial.Discriminator]:
    loss_cfg = self.config.loss
    return {PLAYER: adversarial.Discriminator(
        self._disc_logits, loss="non_saturating", g_weight=loss_cfg.adv_weight,
        r1_gamma=loss_cfg.r1_gamma, r1_every=loss_cfg.r1_every)}

  # --------------------------------------------------------------------------- training

  def init_state(self, rng: jax.Array) -> AdversarialTrainState:
    s = self.image_size
    g_key, d_key = jax.random.split(rng)
    face = jnp.zeros((1, s, s, 3), jnp.float32)
    g_params = self.generator.init(radio_sync.rbg_init_key(g_key), face, face,
                                   jnp.zeros((1, MEL_BINS, MEL_FRAMES)))["params"]
    d_params = self.discriminator.init(radio_sync.rbg_init_key(d_key), face)["params"]
    generator = TrainState.create(g_params, self.tx, rng=rng,
                                  ema_decay=self.config.get("ema_decay", 0.0))
    return AdversarialTrainState.create(
        generator, {PLAYER: TrainState.create(d_params, self.disc_tx, rng=rng)}, rng=rng)

  def train_step(self, state: AdversarialTrainState, batch: Mapping[str, jax.Array],
                 rng: jax.Array) -> tuple[AdversarialTrainState, dict[str, jax.Array]]:
    state, metrics = adversarial.adversarial_step(state, self._generate_adversarial,
                                                  self._players(), batch, rng)
    return state, {GAN_METRICS.get(k, k): v for k, v in metrics.items()
                   if "/" not in k or k in GAN_METRICS}

  def _clip_args(self, batch_size: int, shard_index: int, shard_count: int) -> dict[str, Any]:
    return dict(batch_size=batch_size, shard_index=shard_index, shard_count=shard_count,
                num_frames=WINDOW, audio=clips_pipeline.RADIO_AUDIO,
                reference_mode="independent", image_size=self.image_size)

  def train_iterator(self, batch_size: int, shard_index: int, shard_count: int):
    self._load_frozen()   # now, so that a missing network fails before any step
    d = self.config.data
    return clips_pipeline.make_clips_iterator(
        d.root, seed=self.config.seed, num_workers=d.num_workers, split="train",
        **self._clip_args(batch_size, shard_index, shard_count))

  # --------------------------------------------------------------------------- evaluation

  def eval_step(self, state: AdversarialTrainState, batch: Mapping[str, jax.Array],
                rng: jax.Array) -> dict[str, jax.Array]:
    del rng
    valid = batch["valid"].astype(jnp.float32)                           # [B]
    generated = self._generate(self.variables(state)["params"], batch["frames"],
                               batch["reference"], batch["indiv_mels"])   # [B, T, S, S, 3]
    target = to_model_range(batch["frames"])
    metrics = {
        "l1": reduce.weighted_mean(jnp.mean(jnp.abs(generated - target), axis=(1, 2, 3, 4)),
                                   valid),
        "psnr": reduce.weighted_mean(self._window_psnr(generated, batch["frames"]), valid),
        "eval_weight": jnp.sum(valid)}
    if self.config.loss.sync_weight > 0:
      sync_loss, p = self._sync_terms(generated, batch["mel"])
      metrics.update(sync_loss=reduce.weighted_mean(sync_loss, valid),
                     sync=reduce.weighted_mean(p, valid))
    return metrics

  def eval_batches(self, batch_size: int, shard_index: int, shard_count: int):
    d = self.config.data
    it = clips_pipeline.make_clips_eval_iterator(
        d.root, seed=d.eval_seed, num_workers=0, split=d.eval_split, stride=d.eval_stride,
        **self._clip_args(batch_size, shard_index, shard_count))
    yield from ({k: b[k] for k in EVAL_KEYS} for b in it)

  def images(self, state: AdversarialTrainState, batch: Mapping[str, jax.Array],
             rng: jax.Array) -> dict[str, jax.Array]:
    del rng
    n = min(4, batch["frames"].shape[0])
    frames, reference = batch["frames"][:n], batch["reference"][:n]
    generated = self._generate(self.variables(state)["params"], frames, reference,
                               batch["indiv_mels"][:n])
    rows = [to_unit_range(x) for x in (to_model_range(frames), mask_lower_half(
        to_model_range(frames)), to_model_range(reference), generated)]
    # Each example: target / masked input / reference / generated rows, the 5 frames side by side.
    strips = [r.transpose(0, 2, 1, 3, 4).reshape(n, self.image_size, -1, 3) for r in rows]
    return {"target_masked_reference_generated": jnp.concatenate(strips, axis=1)}

  def inference(self, state: AdversarialTrainState
                ) -> tuple[Callable[..., jax.Array], tuple[Any, ...]]:
    s, n = self.image_size, self.config.batch_size * WINDOW
    faces = jnp.zeros((n, s, s, 3), jnp.uint8)
    return self.generate_faces, (self.variables(state), faces, faces,
                                 jnp.zeros((n, MEL_BINS, MEL_FRAMES)))
