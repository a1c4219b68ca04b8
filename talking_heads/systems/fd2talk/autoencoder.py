"""FD2Talk stage 2a (`fd2talk_autoencoder`): the frame autoencoder E / D whose decoder reads the
reference latent beside the frame's own, trained on pairs of frames of one video (§3.3, Eqs.
13-15; spec `shared/reference/systems/fd2talk.md` §2.5, §3).

Per pair (F1 the reference, F2 the target: two random frames of one clip, `pipelines.frames`
with `reference=True`), frames in [-1, 1]:
  F2_hat = D([E(F1), E(F2)])                                   (`models.fd2talk_autoencoder`)
  L      = w_rec mean (F2 - F2_hat)^2                          (Eq. 13)
         + w_per perceptual(F2_hat, F2)                        (Eq. 14; LPIPS-VGG by default)
         + w_vq (codebook + beta commitment)                   (both latents are quantised)
The paper fine-tunes a pre-trained vq-f4 and says nothing of the codebook; no pre-trained weights
reach this machine, so the codebook is learned here from scratch with taming's VQ terms (beta
0.25) rather than frozen with the commitment term alone (spec §3's recommendation for a
pre-trained codebook). Learned from scratch, a codebook of 3-d codes collapses (the demo run
without restarts: 12 of 512 codes in use, reconstructions at 18.7 dB after 300 steps), so dead
codes are restarted on the batch's latents after the first update and every
`codebook.restart_every`-th (`losses.vq.restart_dead_codes`; `codebook.restart_threshold`
vectors per step, 0 switches it off; the usage average is the state's
`model_state["code_usage"]`).

Perceptual term: the public weights (`perceptual.weights_dir`, `losses.perceptual`: "lpips" or
"vgg16") are required when `loss.perceptual_weight` > 0 and are loaded before any step; without
them the stage stops with the file's name. Nothing runs with random perceptual weights: the tiny
and demo configs switch the term off.

Evaluation on `data.eval_split` pairs (every `data.eval_stride`-th frame, its reference fixed by
`data.eval_seed`): `l2`, `psnr` and `ssim` ([0, 1], Wang et al.) of F2_hat against F2.

The trained autoencoder is what the latent UNet stage (`systems.fd2talk.unet`) diffuses in and
decodes with: `load_frozen_autoencoder(workdir)`.

Config fields: model{sizes, dtype}, loss{l2_weight, perceptual_weight, vq_weight, beta},
codebook{restart_threshold, restart_every, usage_decay}, perceptual{kind, weights_dir},
data{root, identities, image_size, eval_split, eval_stride, eval_seed, num_workers},
optimizer{...}, plus the trainer fields.

Dimensions: B batch, S frame size, h = S / f latent size, d latent channels.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from talking_heads.io.dataset import parse_identities
from talking_heads.losses import perceptual as perceptual_lib
from talking_heads.losses import vq as vq_losses
from talking_heads.metrics import image as image_metrics
from talking_heads.metrics import reduce
from talking_heads.models import fd2talk_autoencoder
from talking_heads.pipelines import frames as frames_pipeline
from talking_heads.systems.fd2talk import sizes as sizes_lib
from talking_heads.systems.images import to_model_range, to_unit_range
from talking_heads.training import steps
from talking_heads.training.optimizers import build_optimizer
from talking_heads.training.stage import LossStage
from talking_heads.training.state import TrainState

STAGE = "fd2talk_autoencoder"
PERCEPTUAL_KINDS = ("lpips", "vgg16")
KEYS = ("image", "reference")


def build_model(model_config: ml_collections.ConfigDict) -> fd2talk_autoencoder.FrameAutoencoder:
  return fd2talk_autoencoder.FrameAutoencoder(
      **sizes_lib.sizes(model_config.sizes).autoencoder,
      dtype=jnp.dtype(model_config.get("dtype", "float32")))


class AutoencoderStage(LossStage):
  """Trains `FrameAutoencoder` on frame pairs of one clip (module docstring).

  Batch keys (`pipelines.frames`, `reference=True`): image, reference uint8 [B, S, S, 3]; eval
  batches also valid bool [B].
  """

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    if config.perceptual.kind not in PERCEPTUAL_KINDS:
      raise ValueError(f"perceptual.kind must be one of {PERCEPTUAL_KINDS}, got "
                       f"{config.perceptual.kind!r}")
    self.model = build_model(config.model)
    self.image_size = int(config.data.image_size)
    f = 2 ** len(self.model.channels)
    if self.image_size % f:
      raise ValueError(f"data.image_size={self.image_size} must be a multiple of the "
                       f"autoencoder's factor f = {f} (model.sizes={config.model.sizes!r})")
    self.tx = build_optimizer(config.optimizer, config.total_steps)
    self._perceptual: perceptual_lib.PerceptualLoss | None = None

  @property
  def perceptual(self) -> perceptual_lib.PerceptualLoss:
    """The perceptual loss on the public weights, loaded once (module docstring); its variables
    are host constants closed over by the jitted step, never train state."""
    if self._perceptual is None:
      self._perceptual = perceptual_lib.make_perceptual_loss(
          self.config.perceptual.kind, self.config.perceptual.weights_dir)
    return self._perceptual

  # ------------------------------------------------------------------------------ training

  def init_state(self, rng: jax.Array) -> TrainState:
    x = jnp.zeros((1, self.image_size, self.image_size, 3), jnp.float32)
    params = self.model.init(rng, x, x)["params"]
    usage = jnp.zeros((self.model.num_codes,), jnp.float32)   # module docstring: restarts
    return TrainState.create(params, self.tx, rng=rng, model_state={"code_usage": usage},
                             ema_decay=self.config.get("ema_decay", 0.0))

  @staticmethod
  def variables(state: TrainState) -> dict[str, Any]:
    return {"params": state.eval_params}

  def reconstruct(self, params: Any, batch: Mapping[str, jax.Array]
                  ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    """(F2_hat, F2 in [-1, 1], the decoder's aux) of a batch's pairs, [B, S, S, 3]."""
    target = to_model_range(batch["image"])
    out, aux = self.model.apply({"params": params}, to_model_range(batch["reference"]), target)
    return out, target, aux

  def loss_fn(self, params: Any, model_state: Any, batch: Mapping[str, jax.Array],
              rng: jax.Array):
    del rng   # deterministic: the pairs are drawn by the pipeline
    loss_cfg = self.config.loss
    out, target, aux = self.reconstruct(params, batch)
    l2 = jnp.mean(jnp.square(out - target))
    codebook, commitment = vq_losses.codebook_and_commitment(aux["z_e"], aux["z_q"])
    vq = vq_losses.vq_loss(codebook, commitment, loss_cfg.beta)
    loss = loss_cfg.l2_weight * l2 + loss_cfg.vq_weight * vq
    metrics = {"l2": l2, "vq_loss": vq, "commitment_loss": commitment,
               "psnr": jnp.mean(image_metrics.psnr(to_unit_range(out), to_unit_range(target),
                                                   data_range=1.0)),
               **vq_losses.codebook_stats(aux["indices"], self.model.num_codes)}
    if loss_cfg.perceptual_weight > 0:
      perceptual = self.perceptual(out, target)
      loss, metrics["perceptual"] = loss + loss_cfg.perceptual_weight * perceptual, perceptual
    usage = vq_losses.code_usage(model_state["code_usage"], jax.lax.stop_gradient(aux["indices"]),
                                 self.config.codebook.usage_decay)
    return loss, (metrics, {"code_usage": usage})

  def train_step(self, state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array
                 ) -> tuple[TrainState, dict[str, jax.Array]]:
    """One update on `loss_fn`; after the first update and every `codebook.restart_every`-th,
    dead codes restarted on the updated encoder's latents of the batch's frames (module
    docstring). Only those steps pay for the extra encoder pass (25 % of a step at demo size)."""
    loss_rng, restart_rng = jax.random.split(rng)
    state, metrics = steps.gradient_step(state, self.loss_fn, batch, loss_rng)
    cfg = self.config.codebook
    if cfg.restart_threshold <= 0:
      return state, metrics

    def restart(state):
      frames = jnp.concatenate([to_model_range(batch["reference"]),
                                to_model_range(batch["image"])])
      latents = self.model.apply({"params": state.params}, frames,
                                 method=fd2talk_autoencoder.FrameAutoencoder.encode)  # [2B, h, w, d]
      quantizer = state.params["quantizer"]
      codebook, usage, restarted = vq_losses.restart_dead_codes(
          quantizer["codebook"], state.model_state["code_usage"],
          latents.reshape(-1, latents.shape[-1]), restart_rng, float(cfg.restart_threshold))
      params = {**state.params, "quantizer": {**quantizer, "codebook": codebook}}
      return state.replace(params=params, model_state={"code_usage": usage}), restarted

    due = (state.step - 1) % int(cfg.restart_every) == 0
    state, restarted = jax.lax.cond(due, restart, lambda s: (s, jnp.zeros((), jnp.float32)),
                                    state)
    return state, {**metrics, "restarted_codes": restarted}

  def _identities(self) -> tuple[str, ...] | None:
    return parse_identities(self.config.data.identities) or None

  def train_iterator(self, batch_size: int, shard_index: int, shard_count: int):
    if self.config.loss.perceptual_weight > 0:
      _ = self.perceptual   # now, so that missing weights fail before any step
    d = self.config.data
    return frames_pipeline.make_frames_iterator(
        d.root, batch_size=batch_size, shard_index=shard_index, shard_count=shard_count,
        seed=self.config.seed, num_workers=d.num_workers, split="train",
        image_size=self.image_size, reference=True, identities=self._identities())

  # ---------------------------------------------------------------------------- evaluation

  def eval_step(self, state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array):
    del rng
    out, target, _ = self.reconstruct(state.eval_params, batch)
    out, target = to_unit_range(out), to_unit_range(target)
    w = reduce.example_weights(batch, target.shape[0])
    return {"l2": reduce.weighted_mean(jnp.mean(jnp.square(out - target), axis=(1, 2, 3)), w),
            "psnr": reduce.weighted_mean(image_metrics.psnr(out, target, data_range=1.0), w),
            "ssim": reduce.weighted_mean(image_metrics.ssim(out, target, data_range=1.0), w),
            "eval_weight": jnp.sum(w)}

  def eval_batches(self, batch_size: int, shard_index: int, shard_count: int):
    d = self.config.data
    it = frames_pipeline.make_frames_eval_iterator(
        d.root, batch_size=batch_size, shard_index=shard_index, shard_count=shard_count,
        seed=d.eval_seed, num_workers=0, split=d.eval_split, stride=d.eval_stride,
        image_size=self.image_size, reference=True, identities=self._identities())
    yield from ({k: b[k] for k in KEYS + ("valid",)} for b in it)

  def images(self, state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array):
    """reference F1 | target F2 | D([E(F1), E(F2)]), [N, S, 3 S, 3]."""
    del rng
    small = {k: batch[k][:4] for k in KEYS}
    out, target, _ = self.reconstruct(state.eval_params, small)
    panels = [to_model_range(small["reference"]), target, out]
    return {"reference_target_reconstruction": jnp.concatenate(
        [to_unit_range(p) for p in panels], axis=2)}

  def inference(self, state: TrainState) -> tuple[Callable[..., jax.Array], tuple[Any, ...]]:
    """D([E(F1), E(F2)]) of `batch_size` pairs."""
    s = self.image_size
    frames = jnp.zeros((self.config.batch_size, s, s, 3), jnp.float32)
    fn = jax.jit(lambda params, f1, f2: self.model.apply({"params": params}, f1, f2)[0])
    return fn, (state.eval_params, frames, frames)


# ------------------------------------------------------------------------------ frozen use


@dataclasses.dataclass(frozen=True)
class FrozenAutoencoder:
  """A trained frame autoencoder: its module, host parameters, the frame size S it trained on
  and where it came from. Frames are in [-1, 1]."""
  model: fd2talk_autoencoder.FrameAutoencoder
  params: Any
  image_size: int
  source: str

  @property
  def latent_shape(self) -> tuple[int, int, int]:
    """(h, w, d) of one frame's latent."""
    h = self.image_size // 2 ** len(self.model.channels)
    return h, h, self.model.latent_channels

  def encode(self, params: Any, frames: jax.Array) -> jax.Array:
    """Frames [B, S, S, 3] in [-1, 1] -> pre-quantisation latents [B, h, w, d]."""
    return self.model.apply({"params": params}, frames,
                            method=fd2talk_autoencoder.FrameAutoencoder.encode)

  def decode(self, params: Any, reference: jax.Array, latent: jax.Array) -> jax.Array:
    """Reference and frame latents [B, h, w, d] -> frames [B, S, S, 3] (model range)."""
    return self.model.apply({"params": params}, reference, latent,
                            method=fd2talk_autoencoder.FrameAutoencoder.decode)


def load_frozen_autoencoder(workdir: str, step: int | None = None,
                            name: str = "autoencoder.workdir") -> FrozenAutoencoder:
  """The autoencoder of a trained `fd2talk_autoencoder` workdir (`name` says where it was set).

  Raises:
    ValueError: no workdir given, or it trained another stage.
    FileNotFoundError: not a trained workdir (no config or checkpoint, or only step 0).
  """
  # Imported here: restoring pulls in the training registry, which the stage itself does not need.
  from talking_heads.training import restore  # pylint: disable=g-import-not-at-top
  hint = ("train one with `python -m experiments.train "
          "--config=experiments/configs/fd2talk/autoencoder.py:demo --workdir=...`")
  if not workdir:
    raise ValueError(f"FD2Talk's latent UNet needs its trained frame autoencoder and {name} is "
                     f"empty: {hint}; it never diffuses in a random autoencoder's latent space")
  try:
    stage, state, restored = restore.restore_stage(workdir, step, expected_stage=STAGE)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"{name}={workdir!r} is not a trained {STAGE!r} workdir ({e}); "
                            f"{hint}") from e
  logging.info("FD2Talk: frozen frame autoencoder from %s step %d.", workdir, restored)
  return FrozenAutoencoder(stage.model, jax.device_get(stage.variables(state)["params"]),
                           stage.image_size, f"{workdir} step {restored}")
