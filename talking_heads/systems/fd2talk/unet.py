"""FD2Talk stage 2b (`fd2talk_unet`): latent diffusion of a frame in the frozen autoencoder's
latent space, conditioned on the frame's motion through phi1 and on the reference latent through
phi2 (§3.3, Eqs. 6-7, 16; spec `shared/reference/systems/fd2talk.md` §2.6, §3, §8).

Per frame F2 with a reference frame F1 of the same clip (`pipelines.frames` with `reference` and
`annotations`; the paper's reference is the clip's first frame, here any other frame of it, as in
stage 2a) and F2's motion m = [expression, pose] (the corpus's morphable parameters: the frame's
true motion, spec §8 item 1's default `cond_source = gt`):
  J0  = s E(F2),  x = s E(F1)              frozen E of `autoencoder.workdir` (a trained
                                           `fd2talk_autoencoder`), s = `diffusion.latent_scale`
                                           (LDM's scale_factor; vq-f4's is 1)
  J_t = sqrt(abar_t) J0 + sqrt(1 - abar_t) eps,  t ~ U{0 .. T - 1}
  L   = mean (J0 - UNet(J_t, t, (m - mu) / sigma, x))^2        (Eq. 16: x0 prediction)
with (mu, sigma) the per-dimension mean and standard deviation of m over the train frames
(`features.motion_statistics`, as stage 1's), computed when the stage is built and
kept in the train state's `model_state` (`motion_mean`, `motion_std`), so a checkpoint carries
them and sampling takes raw motion. `model.conditioning` = "two_attentions" (phi1 on the motion
tokens, then phi2 on the reference tokens) or "concatenated" (Table 2's ablation: one
cross-attention over both); `model.motion_tokens` as `models.fd2talk_unet.MotionContext`.

Training logs `latent_std`, the standard deviation of the batch's s E(F2): the autoencoder is
trained here from scratch, so its latent need not have vq-f4's unit scale; LDM's remedy is s =
1 / std (its `scale_by_std`), which `diffusion.latent_scale` takes.

Sampling (`sample`, `generate`): DDIM with eta = `diffusion.eta` (spec: 0) over
`schedules.make_timesteps(diffusion.spacing, N, T)` in the x0 parameterisation (Eq. 5, see the
package docstring; "leading" gives 980, 960, .., 0 with a final alpha of 1, where LDM's
`make_ddim_timesteps` adds 1), then the frame is D([x, J0] / s).

Evaluation on `data.eval_split` frames (every `data.eval_stride`-th; reference and DDIM noise
fixed by `data.eval_seed`): `loss` at fixed (t, eps) draws, and `psnr`, `ssim` ([0, 1], Wang et
al.) of the frames generated from the true motion and the reference over
`diffusion.eval_sample_steps` DDIM steps against the true frames, beside `psnr_autoencoder`, the
frozen autoencoder's own D([E(F1), E(F2)]) (the ceiling of the generated frames).

Config fields: model{sizes, conditioning, motion_tokens, dtype}, motion{expression_dim,
pose_dim}, diffusion{schedule, num_timesteps, beta_start, beta_end, spacing, sample_steps,
eval_sample_steps, eta, latent_scale}, autoencoder{workdir}, data{root, identities, image_size,
eval_split, eval_stride, eval_seed, num_workers}, optimizer{...}, ema_decay, plus the trainer
fields.

Dimensions: B batch (frames), S frame size, h latent size, d latent channels, D motion width
(expression E + pose 6), N sampling steps.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from talking_heads.diffusion import parameterization as param
from talking_heads.diffusion import samplers
from talking_heads.diffusion import schedules
from talking_heads.io import dataset as dataset_lib
from talking_heads.io.dataset import parse_identities
from talking_heads.metrics import image as image_metrics
from talking_heads.metrics import reduce
from talking_heads.models import fd2talk_unet
from talking_heads.pipelines import frames as frames_pipeline
from talking_heads.systems.fd2talk import autoencoder as autoencoder_lib
from talking_heads.systems.fd2talk import features
from talking_heads.systems.fd2talk import sizes as sizes_lib
from talking_heads.systems.images import to_model_range, to_unit_range
from talking_heads.training.optimizers import build_optimizer
from talking_heads.training.stage import LossStage
from talking_heads.training.state import TrainState

STAGE = "fd2talk_unet"
KEYS = ("image", "reference", "expression", "pose")
_EVAL_RNG_SALT = 23


class UNetStage(LossStage):
  """Trains `LatentUNet` on Eq. 16 in the frozen autoencoder's latent space (module docstring).

  Batch keys (`pipelines.frames`): image, reference uint8 [B, S, S, 3], expression float32
  [B, E], pose float32 [B, 6]; eval batches also valid bool [B].
  """

  def __init__(self, config: ml_collections.ConfigDict,
               motion_stats: tuple[np.ndarray, np.ndarray] | None = None):
    """`motion_stats` (mean, std) [D] overrides computing them from `data.root`'s train split;
    without a `data.root` (building a config; restoring a checkpoint, which carries them) they
    are mean 0, std 1."""
    super().__init__(config)
    m, d, diff = config.model, config.data, config.diffusion
    if m.conditioning not in fd2talk_unet.CONDITIONINGS:
      raise ValueError(f"model.conditioning must be one of {fd2talk_unet.CONDITIONINGS}, got "
                       f"{m.conditioning!r}")
    if m.motion_tokens not in fd2talk_unet.MOTION_TOKENS:
      raise ValueError(f"model.motion_tokens must be one of {fd2talk_unet.MOTION_TOKENS}, got "
                       f"{m.motion_tokens!r}")
    if not diff.latent_scale > 0:
      raise ValueError(f"diffusion.latent_scale must be positive, got {diff.latent_scale}")
    sizes = sizes_lib.sizes(m.sizes)
    self.image_size = int(d.image_size)
    f = 2 ** len(sizes.autoencoder["channels"])
    if self.image_size % f:
      raise ValueError(f"data.image_size={self.image_size} must be a multiple of the "
                       f"autoencoder's factor f = {f} (model.sizes={m.sizes!r})")
    h = self.image_size // f
    self.latent_shape = (h, h, int(sizes.autoencoder["latent_channels"]))
    self.motion_dim = int(config.motion.expression_dim) + int(config.motion.pose_dim)
    self.model = fd2talk_unet.LatentUNet(
        latent_channels=self.latent_shape[-1], motion_dim=self.motion_dim,
        conditioning=m.conditioning, motion_tokens=m.motion_tokens,
        remat=bool(m.get("remat", False)), dtype=jnp.dtype(m.get("dtype", "float32")),
        **sizes.unet)
    self.schedule = schedules.make_schedule(diff.schedule, diff.num_timesteps, diff.beta_start,
                                            diff.beta_end)
    self.step_config = samplers.StepConfig(prediction="x0")   # Eq. 5; latents are not clipped
    self.tx = build_optimizer(config.optimizer, config.total_steps)
    if motion_stats is None and d.root:
      self._check_motion_width()
      motion_stats = features.motion_statistics(d.root, self._identities())
    if motion_stats is None:
      motion_stats = (np.zeros(self.motion_dim, np.float32), np.ones(self.motion_dim, np.float32))
    mean, std = (np.asarray(s, np.float32) for s in motion_stats)
    if mean.shape != (self.motion_dim,) or std.shape != (self.motion_dim,):
      raise ValueError(f"motion statistics have shapes {mean.shape}, {std.shape}; the motion "
                       f"is {self.motion_dim}-d (motion.expression_dim + motion.pose_dim)")
    self.motion_mean, self.motion_std = mean, std
    self._autoencoder: autoencoder_lib.FrozenAutoencoder | None = None

  def _identities(self) -> tuple[str, ...] | None:
    return parse_identities(self.config.data.identities) or None

  def _check_motion_width(self) -> None:
    d, motion = self.config.data, self.config.motion
    names = dataset_lib.Dataset(d.root).expression_names
    if len(names) != motion.expression_dim:
      raise ValueError(f"motion.expression_dim={motion.expression_dim} but {d.root} has "
                       f"{len(names)} expression parameters per frame")
    if motion.pose_dim != len(dataset_lib.POSE_NAMES):
      raise ValueError(f"motion.pose_dim={motion.pose_dim} but the dataset format's pose is "
                       f"{len(dataset_lib.POSE_NAMES)}-d {dataset_lib.POSE_NAMES}")

  # ------------------------------------------------------------------------ frozen networks

  @property
  def autoencoder(self) -> autoencoder_lib.FrozenAutoencoder:
    """The frozen E / D of `autoencoder.workdir`, loaded once on first use."""
    if self._autoencoder is None:
      frozen = autoencoder_lib.load_frozen_autoencoder(self.config.autoencoder.workdir)
      if frozen.image_size != self.image_size or frozen.latent_shape != self.latent_shape:
        raise ValueError(
            f"autoencoder.workdir={self.config.autoencoder.workdir} maps {frozen.image_size} px "
            f"frames to {frozen.latent_shape} latents; this UNet (model.sizes="
            f"{self.config.model.sizes!r}, data.image_size={self.image_size}) diffuses "
            f"{self.latent_shape} latents of {self.image_size} px frames")
      self._autoencoder = frozen
    return self._autoencoder

  def latents(self, frames: jax.Array) -> jax.Array:
    """uint8 frames [B, S, S, 3] -> s E(frames) [B, h, h, d], no gradient."""
    ae = self.autoencoder
    z = ae.encode(ae.params, to_model_range(frames))
    return jax.lax.stop_gradient(z * self.config.diffusion.latent_scale)

  def decode(self, reference: jax.Array, latent: jax.Array) -> jax.Array:
    """Scaled reference and frame latents [B, h, h, d] -> frames [B, S, S, 3] in [0, 1]."""
    ae, s = self.autoencoder, self.config.diffusion.latent_scale
    return to_unit_range(ae.decode(ae.params, reference / s, latent / s))

  # ------------------------------------------------------------------------------ the UNet

  def init_state(self, rng: jax.Array) -> TrainState:
    x = jnp.zeros((1,) + self.latent_shape, jnp.float32)
    params = self.model.init(rng, x, jnp.zeros((1,), jnp.int32),
                             jnp.zeros((1, self.motion_dim), jnp.float32), x)["params"]
    stats = {"motion_mean": jnp.asarray(self.motion_mean),
             "motion_std": jnp.asarray(self.motion_std)}
    return TrainState.create(params, self.tx, rng=rng, model_state=stats,
                             ema_decay=self.config.get("ema_decay", 0.0))

  @staticmethod
  def variables(state: TrainState) -> dict[str, Any]:
    """{"params": EMA parameters, "motion_mean", "motion_std"}: what `sample` and `generate`
    take."""
    return {"params": state.eval_params, **state.model_state}

  @staticmethod
  def motion(variables: Mapping[str, Any], expression: jax.Array, pose: jax.Array) -> jax.Array:
    """Raw expression [B, E] and pose [B, 6] -> the standardised motion [B, D]."""
    m = jnp.concatenate([expression, pose], axis=-1).astype(jnp.float32)
    return (m - variables["motion_mean"]) / variables["motion_std"]

  def predict(self, variables: Mapping[str, Any], j_t: jax.Array, t: jax.Array,
              expression: jax.Array, pose: jax.Array, reference: jax.Array) -> jax.Array:
    """J0_hat [B, h, h, d] of J_t [B, h, h, d] at timesteps t [B], from the raw motion and the
    scaled reference latent x [B, h, h, d] (phi2's context)."""
    return self.model.apply({"params": variables["params"]}, j_t, t,
                            self.motion(variables, expression, pose), reference)

  def _loss(self, variables: Mapping[str, Any], batch: Mapping[str, jax.Array], rng: jax.Array,
            weights: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    j0, reference = self.latents(batch["image"]), self.latents(batch["reference"])
    t_rng, noise_rng = jax.random.split(rng)
    t = schedules.random_timesteps(t_rng, j0.shape[0], self.config.diffusion.num_timesteps)
    noise = jax.random.normal(noise_rng, j0.shape, jnp.float32)
    j_t = param.q_sample(self.schedule, j0, t, noise)
    out = self.predict(variables, j_t, t, batch["expression"], batch["pose"], reference)
    target = param.training_target("x0", self.schedule, j0, noise, t)
    per_example = param.prediction_loss(out, target, "l2")                        # [B]
    w = jnp.ones_like(per_example) if weights is None else weights
    return reduce.weighted_mean(per_example, w), {"latent_std": jnp.std(j0)}

  def loss_fn(self, params: Any, model_state: Any, batch: Mapping[str, jax.Array],
              rng: jax.Array):
    loss, metrics = self._loss({"params": params, **model_state}, batch, rng)
    return loss, (metrics, None)

  # ------------------------------------------------------------------------------ sampling

  def timesteps(self, steps: int | None = None) -> np.ndarray:
    """The [N] DDIM timesteps (largest first); N = diffusion.sample_steps by default."""
    d = self.config.diffusion
    return schedules.make_timesteps(d.spacing, steps or d.sample_steps, d.num_timesteps)

  def sample(self, variables: Mapping[str, Any], expression: jax.Array, pose: jax.Array,
             reference: jax.Array, rng: jax.Array, *, steps: int | None = None,
             shared_noise: bool = False, x_T: jax.Array | None = None) -> jax.Array:
    """J0 [B, h, h, d] by DDIM from the raw motion and the scaled reference latent [B, h, h, d];
    x_T drawn per frame, once for all B frames (`shared_noise`, spec §8 item 6), or given."""
    motion = self.motion(variables, expression, pose)
    model_fn = lambda x, t, motion, reference: self.model.apply(
        {"params": variables["params"]}, x, t, motion, reference)
    return samplers.sample(model_fn, (reference.shape[0],) + self.latent_shape, self.schedule,
                           self.timesteps(steps), rng, method="ddim",
                           eta=self.config.diffusion.eta, config=self.step_config,
                           cond={"motion": motion, "reference": reference}, x_T=x_T,
                           shared_noise=shared_noise)

  def generate(self, variables: Mapping[str, Any], reference_frames: jax.Array,
               expression: jax.Array, pose: jax.Array, rng: jax.Array, *,
               steps: int | None = None, shared_noise: bool = False) -> jax.Array:
    """Frames [B, S, S, 3] in [0, 1] of uint8 reference frames [B, S, S, 3] under the raw
    motion [B, E], [B, 6]: D([x, J0] / s) with J0 from `sample`."""
    reference = self.latents(reference_frames)
    j0 = self.sample(variables, expression, pose, reference, rng, steps=steps,
                     shared_noise=shared_noise)
    return self.decode(reference, j0)

  # -------------------------------------------------------------------------------- data

  def _iterator_options(self) -> dict[str, Any]:
    return dict(image_size=self.image_size, reference=True, annotations=True,
                identities=self._identities())

  def train_iterator(self, batch_size: int, shard_index: int, shard_count: int):
    _ = self.autoencoder   # now, so that a missing autoencoder fails before any step
    d = self.config.data
    return frames_pipeline.make_frames_iterator(
        d.root, batch_size=batch_size, shard_index=shard_index, shard_count=shard_count,
        seed=self.config.seed, num_workers=d.num_workers, split="train",
        **self._iterator_options())

  def eval_batches(self, batch_size: int, shard_index: int, shard_count: int):
    _ = self.autoencoder   # loaded outside any trace (restoring cannot run under jit)
    d = self.config.data
    it = frames_pipeline.make_frames_eval_iterator(
        d.root, batch_size=batch_size, shard_index=shard_index, shard_count=shard_count,
        seed=d.eval_seed, num_workers=0, split=d.eval_split, stride=d.eval_stride,
        **self._iterator_options())
    yield from ({k: b[k] for k in KEYS + ("valid",)} for b in it)

  # ---------------------------------------------------------------------------- evaluation

  def eval_step(self, state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array):
    del rng   # fixed draws, so that evaluations compare
    loss_rng, sample_rng = jax.random.split(
        jax.random.PRNGKey(self.config.data.eval_seed + _EVAL_RNG_SALT))
    variables = self.variables(state)
    w = reduce.example_weights(batch, batch["image"].shape[0])
    loss, _ = self._loss(variables, batch, loss_rng, w)
    out = self.generate(variables, batch["reference"], batch["expression"], batch["pose"],
                        sample_rng, steps=self.config.diffusion.eval_sample_steps)
    target = batch["image"].astype(jnp.float32) / 255.0
    ceiling = self.decode(self.latents(batch["reference"]), self.latents(batch["image"]))
    mean = lambda x: reduce.weighted_mean(x, w)
    return {"loss": loss,
            "psnr": mean(image_metrics.psnr(out, target, data_range=1.0)),
            "ssim": mean(image_metrics.ssim(out, target, data_range=1.0)),
            "psnr_autoencoder": mean(image_metrics.psnr(ceiling, target, data_range=1.0)),
            "eval_weight": jnp.sum(w)}

  def images(self, state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array):
    """reference | true frame | frame generated from its motion, [N, S, 3 S, 3]."""
    small = {k: batch[k][:4] for k in KEYS}
    out = self.generate(self.variables(state), small["reference"], small["expression"],
                        small["pose"], rng, steps=self.config.diffusion.eval_sample_steps)
    panels = [small["reference"].astype(jnp.float32) / 255.0,
              small["image"].astype(jnp.float32) / 255.0, out]
    return {"reference_target_generated": jnp.concatenate(panels, axis=2)}

  def inference(self, state: TrainState) -> tuple[Callable[..., jax.Array], tuple[Any, ...]]:
    """`batch_size` frames generated by DDIM over diffusion.sample_steps and decoded, from their
    reference frames and motion (the reference's encoding included)."""
    _ = self.autoencoder   # loaded outside any trace (restoring cannot run under jit)
    b, s = self.config.batch_size, self.image_size
    e, p = self.config.motion.expression_dim, self.config.motion.pose_dim
    fn = jax.jit(lambda variables, rng, expression, pose, frames: self.generate(
        variables, frames, expression, pose, rng))
    # The frames last: the benchmark counts items along the last argument's leading axis.
    return fn, (self.variables(state), jax.random.PRNGKey(0), jnp.zeros((b, e)),
                jnp.zeros((b, p)), jnp.zeros((b, s, s, 3), jnp.uint8))
