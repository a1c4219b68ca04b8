"""DAE-Talker's image side: the diffusion autoencoder stage and its DDIM encode / decode / invert.

DAE-Talker (§3.1, §4.1.2) trains a diffusion autoencoder (diffae) on the frames of one speaker:
a semantic encoder maps a frame x0 to a 512-d latent z and a conditional UNet predicts the noise
of x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps given (t, z). Loss: L1 between the predicted and
the true noise (the paper; L2 option), t uniform over T = 1000 steps of a linear beta schedule
(1e-4 .. 0.02). Adam 1e-4, batch 32, 80k steps; parameters evaluated from an EMA copy (diffae:
decay 0.9999). Frames decode by DDIM (eta 0) over 100 of the 1000 timesteps (diffae's evenly
spaced `space_timesteps`, i.e. "linspace"), x0_hat clipped to [-1, 1] with eps recomputed from
it (diffae's `clip_denoised`). `diffusion.prediction` also trains on x0 or v (the network then
predicts that and DDIM converts), which the demo config uses: at CPU scale an eps model barely
reads the latent at high noise (see `experiments/configs/dae_talker/dae.py`).

`DAEStage` trains that model; its `encode`, `decode` and `invert` are the pieces the pipeline
(`dae_talker_pipeline`) and the experiments compose. They take the model's flax variables,
`DAEStage.variables(state)`: {"params": EMA parameters} plus {"latent_stats": ...} when the
model centres its latent (`model.latent_centering`, see `models.dae.ConditionalUNet`):
  encode  uint8 frames [B, H, W, 3] -> z [B, Z]
  decode  z [B, Z] -> frames in [0, 1] by DDIM from x_T: drawn per frame, drawn once and shared by
          all B frames (DAE-Talker §3.3), or given (e.g. from `invert`)
  invert  (frames, z) -> x_T by deterministic DDIM inversion (diffae's stochastic encoding), from
          which `decode` reconstructs the frames almost exactly

Evaluation (every `eval_every` steps): noise-prediction loss on held-out frames at fixed (t,
eps) draws, and PSNR/SSIM of DDIM reconstructions from their latents with a fixed random x_T
over `diffusion.eval_sample_steps` steps (fewer than the 100 of Table 3, which
`experiments.dae_talker.tables` measures).

Config fields: model{width, channel_mult, encoder_channel_mult, num_res_blocks,
encoder_num_res_blocks, attention_resolutions, num_heads, embed_dim, latent_dim, dropout,
norm_groups, latent_centering, dtype}, diffusion{schedule, num_timesteps, beta_start, beta_end, prediction, loss,
sample_steps, spacing, eval_sample_steps}, data{root, identities, image_size, eval_split,
eval_stride, eval_seed, num_workers}, ema_decay, optimizer{...}, plus the trainer fields.

Dimensions: B batch (frames), H = W = image_size, Z latent width, N sampling steps.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from talking_heads.diffusion import parameterization as param
from talking_heads.diffusion import samplers
from talking_heads.diffusion import schedules
from talking_heads.metrics import image as image_metrics
from talking_heads.metrics import reduce
from talking_heads.models.dae import DiffusionAutoencoder
from talking_heads.pipelines import frames as frames_pipeline
from talking_heads.io.dataset import parse_identities
from talking_heads.systems.images import to_model_range, to_unit_range
from talking_heads.training.optimizers import build_optimizer
from talking_heads.training.stage import LossStage
from talking_heads.training.state import TrainState

_EVAL_RNG_SALT = 17


def build_model(model_config: ml_collections.ConfigDict) -> DiffusionAutoencoder:
  m = model_config
  return DiffusionAutoencoder(
      width=m.width, channel_mult=tuple(m.channel_mult),
      encoder_channel_mult=tuple(m.encoder_channel_mult), num_res_blocks=m.num_res_blocks,
      encoder_num_res_blocks=m.encoder_num_res_blocks,
      attention_resolutions=tuple(m.attention_resolutions), num_heads=m.num_heads,
      embed_dim=m.embed_dim, latent_dim=m.latent_dim, dropout=m.dropout,
      norm_groups=m.norm_groups, latent_centering=bool(m.get("latent_centering", False)),
      remat=bool(m.get("remat", False)), dtype=jnp.dtype(m.get("dtype", "float32")))


class DAEStage(LossStage):
  """Trains `DiffusionAutoencoder` on noise prediction (module docstring).

  Batch keys (from `pipelines.frames`): image uint8 [B, H, W, 3]; eval batches also valid [B].
  """

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    d = config.diffusion
    if d.prediction not in param.PREDICTIONS:
      raise ValueError(f"diffusion.prediction must be one of {param.PREDICTIONS}, "
                       f"got {d.prediction!r}")
    if d.loss not in param.LOSS_NORMS:
      raise ValueError(f"diffusion.loss must be one of {param.LOSS_NORMS}, got {d.loss!r}")
    self.model = build_model(config.model)
    self.schedule = schedules.make_schedule(d.schedule, d.num_timesteps, d.beta_start, d.beta_end)
    # diffae's DDIM: x0_hat clipped to the image range, eps recomputed from the clipped x0_hat.
    self.step_config = samplers.StepConfig(prediction=d.prediction, clip_x0=1.0,
                                           recompute_eps=True)
    self.tx = build_optimizer(config.optimizer, config.total_steps)

  @property
  def image_size(self) -> int:
    return self.config.data.image_size

  def timesteps(self, steps: int | None = None):
    """The [N] DDIM timesteps (largest first); N = diffusion.sample_steps by default."""
    d = self.config.diffusion
    return schedules.make_timesteps(d.spacing, steps or d.sample_steps, d.num_timesteps)

  # ------------------------------------------------------------------------------------ state

  def init_state(self, rng: jax.Array) -> TrainState:
    x = jnp.zeros((1, self.image_size, self.image_size, 3), jnp.float32)
    t = jnp.zeros((1,), jnp.int32)
    variables = self.model.init(rng, x, t, x0=x)
    model_state = {k: v for k, v in variables.items() if k != "params"}    # latent_stats
    return TrainState.create(variables["params"], self.tx, rng=rng, model_state=model_state,
                             ema_decay=self.config.ema_decay)

  @staticmethod
  def variables(state: TrainState) -> dict[str, Any]:
    """The flax variables that encode / decode / invert take: EMA parameters + model state."""
    return {"params": state.eval_params, **state.model_state}

  # ----------------------------------------------------------------------------------- losses

  def _loss(self, params: Any, model_state: Any, x0: jax.Array, rng: jax.Array, train: bool
            ) -> tuple[jax.Array, tuple[dict[str, jax.Array], Any]]:
    """(loss, (metrics, model state after the step: the running latent mean moves in training))."""
    d = self.config.diffusion
    t_rng, noise_rng, dropout_rng = jax.random.split(rng, 3)
    t = schedules.random_timesteps(t_rng, x0.shape[0], d.num_timesteps)          # [B]
    noise = jax.random.normal(noise_rng, x0.shape, jnp.float32)
    x_t = param.q_sample(self.schedule, x0, t, noise)
    mutable = list(model_state) if train and model_state else False
    output = self.model.apply({"params": params, **model_state}, x_t, t, x0=x0, train=train,
                              rngs={"dropout": dropout_rng}, mutable=mutable)
    if mutable:
      output, model_state = output                                               # [B, H, W, 3]
    target = param.training_target(d.prediction, self.schedule, x0, noise, t)
    loss = jnp.mean(param.prediction_loss(output, target, d.loss))
    return loss, ({"loss": loss}, model_state)

  def loss_fn(self, params: Any, model_state: Any, batch: dict[str, jax.Array], rng: jax.Array):
    return self._loss(params, model_state, to_model_range(batch["image"]), rng, True)

  # ------------------------------------------------------------------- encode / decode / invert

  def _model_fn(self, variables: Any) -> Callable[..., jax.Array]:
    return lambda x, t, z: self.model.apply(variables, x, t, z=z)

  def encode(self, variables: Any, images: jax.Array) -> jax.Array:
    """uint8 frames [B, H, W, 3] -> semantic latents z [B, Z]."""
    return self.model.apply(variables, to_model_range(images), method=DiffusionAutoencoder.encode)

  def decode(self, variables: Any, z: jax.Array, rng: jax.Array, *, steps: int | None = None,
             shared_noise: bool = True, x_T: jax.Array | None = None) -> jax.Array:
    """Latents z [B, Z] -> frames [B, H, W, 3] in [0, 1] by DDIM (eta 0).

    x_T is drawn from `rng` once for all B frames (`shared_noise`, DAE-Talker) or per frame,
    unless given ([B, H, W, 3] or [1, H, W, 3]).
    """
    shape = (z.shape[0], self.image_size, self.image_size, 3)
    x0 = samplers.sample(self._model_fn(variables), shape, self.schedule, self.timesteps(steps),
                         rng, config=self.step_config, cond={"z": z}, x_T=x_T,
                         shared_noise=shared_noise)
    return to_unit_range(x0)

  def invert(self, variables: Any, images: jax.Array, z: jax.Array, *,
             steps: int | None = None) -> jax.Array:
    """Deterministic DDIM inversion: (uint8 frames [B, H, W, 3], z [B, Z]) -> x_T [B, H, W, 3]."""
    return samplers.ddim_invert(self._model_fn(variables), to_model_range(images), self.schedule,
                                self.timesteps(steps), config=self.step_config, cond={"z": z})

  def reconstruct(self, variables: Any, images: jax.Array, rng: jax.Array, *,
                  steps: int | None = None, inverted: bool = False) -> jax.Array:
    """Frames -> z -> DDIM decode, from a random x_T (per frame) or the frames' inverted x_T."""
    z = self.encode(variables, images)
    x_T = self.invert(variables, images, z, steps=steps) if inverted else None
    return self.decode(variables, z, rng, steps=steps, shared_noise=False, x_T=x_T)

  # --------------------------------------------------------------------------------- evaluation

  def eval_step(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
    rng = jax.random.PRNGKey(self.config.data.eval_seed + _EVAL_RNG_SALT)
    loss_rng, sample_rng = jax.random.split(rng)
    x0 = to_model_range(batch["image"])
    _, (loss_metrics, _) = self._loss(state.eval_params, state.model_state, x0, loss_rng, False)
    recon = self.reconstruct(self.variables(state), batch["image"], sample_rng,
                             steps=self.config.diffusion.eval_sample_steps)
    target = batch["image"].astype(jnp.float32) / 255.0
    w = reduce.example_weights(batch, target.shape[0])
    return {"loss": loss_metrics["loss"],
            "psnr": reduce.weighted_mean(image_metrics.psnr(recon, target, data_range=1.0), w),
            "ssim": reduce.weighted_mean(image_metrics.ssim(recon, target, data_range=1.0), w),
            "eval_weight": jnp.sum(w)}

  # -------------------------------------------------------------------------------------- data

  def _identities(self) -> tuple[str, ...] | None:
    return parse_identities(self.config.data.identities) or None

  def train_iterator(self, batch_size: int, shard_index: int, shard_count: int):
    d = self.config.data
    return frames_pipeline.make_frames_iterator(
        d.root, batch_size=batch_size, shard_index=shard_index, shard_count=shard_count,
        seed=self.config.seed, num_workers=d.num_workers, split="train", image_size=d.image_size,
        identities=self._identities())

  def eval_batches(self, batch_size: int, shard_index: int, shard_count: int):
    return frames_pipeline.image_eval_batches(self.config.data, batch_size, shard_index,
                                              shard_count, self._identities())

  # --------------------------------------------------------------------------- images, bench

  def images(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
    """frame | DDIM reconstruction from its latent and a random x_T, [N, H, 2 W, 3]."""
    frames = batch["image"][:8]
    recon = self.reconstruct(self.variables(state), frames, rng,
                             steps=self.config.diffusion.eval_sample_steps)
    return {"reconstruction": jnp.concatenate([frames.astype(jnp.float32) / 255.0, recon],
                                              axis=2)}

  def inference(self, state: TrainState) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """Decoding `batch_size` frames from latents with one shared x_T over sample_steps steps."""
    z = jnp.zeros((self.config.batch_size, self.config.model.latent_dim), jnp.float32)
    # The frames last: the benchmark counts items along the last argument's leading axis.
    decode = jax.jit(lambda variables, rng, z: self.decode(variables, z, rng, shared_noise=True))
    return decode, (self.variables(state), jax.random.PRNGKey(0), z)
