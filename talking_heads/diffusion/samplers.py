"""DDIM / DDPM sampling, DDIM inversion and classifier-free guidance, as `lax.scan` loops.

Dimension legend: B batch (for a video decoder: its frames), ... trailing data dimensions,
N sampling steps.

The model is `model_fn(x, t, **cond) -> output` with x [B, ...] float32, t [B] int32 training
timesteps, and output [B, ...] in the parameterisation of `StepConfig.prediction`. Everything
here is pure and traceable: wrap a call in `jax.jit` (closing over the parameters), e.g.
`jax.jit(lambda params, rng: sample(functools.partial(apply, params), shape, schedule, ts, rng))`.

One step from timestep t to its previous timestep t' (see `schedules.previous_timesteps`), with
a = abar_t, a' = abar_{t'} (the final alpha when t' < 0) and (x0_hat, eps_hat) from the output:
  DDIM (Song et al. 2021; diffusers' `DDIMScheduler.step`, diffae's `ddim_sample`):
    sigma = eta sqrt((1 - a') / (1 - a) (1 - a / a'))
    x_t' = sqrt(a') x0_hat + sqrt(1 - a' - sigma^2) eps_hat + sigma z
  DDPM ancestral (diffusers' `DDPMScheduler.step`, diffae's `p_sample`), beta = 1 - a / a':
    x_t' = sqrt(a') beta / (1 - a) x0_hat + sqrt(1 - beta) (1 - a') / (1 - a) x_t + sqrt(var) z
    var = max((1 - a') / (1 - a) beta, 1e-20) ("fixed_small") or beta ("fixed_large").
  DDPM adds no noise on the final step (diffae's `nonzero_mask`; diffusers adds none at t = 0).
  DDIM with eta = 1 and DDPM "fixed_small" are the same update.
  DDIM inversion (diffae's `ddim_reverse_sample`, eta = 0), from t up to the next larger t'':
    x_t'' = sqrt(a'') x0_hat + sqrt(1 - a'') eps_hat.

Shared noise (DAE-Talker decodes every frame of a video from one x_T): `shared_noise=True` draws
x_T as [1, ...] and broadcasts it over B. With eta > 0 (or DDPM) each step also draws noise z;
`shared_step_noise=True` draws that as [1, ...] too, so a frame-independent model then gives
identical frames for any eta; with it False the frames start equal and diverge through z.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal, Mapping, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from talking_heads.diffusion import parameterization as param
from talking_heads.diffusion import schedules

ModelFn = Callable[..., jax.Array]
Method = Literal["ddim", "ddpm"]
Variance = Literal["fixed_small", "fixed_large"]

METHODS = ("ddim", "ddpm")
VARIANCES = ("fixed_small", "fixed_large")
MIN_POSTERIOR_VARIANCE = 1e-20  # diffusers' clamp, so the log variance stays finite at t = 0.


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """How a model output becomes (x0_hat, eps_hat) and which alpha each step moves to.

  Attributes:
    prediction: the model's parameterisation, "epsilon", "x0" or "v".
    clip_x0: clamp x0_hat to [-clip_x0, clip_x0] (diffusers' `clip_sample_range`, diffae's
      `clip_denoised` with 1.0); None for latent models.
    threshold_ratio: Imagen dynamic thresholding percentile instead of clipping; None disables.
    threshold_max: upper bound of the dynamic threshold (diffusers' `sample_max_value`).
    recompute_eps: after clipping or thresholding, recompute eps_hat from the processed x0_hat
      (diffae; diffusers' `use_clipped_model_output`). diffusers' default is False.
    set_alpha_to_one: the final alpha is 1.0 (True) or abar_0 (False).
    prev_rule: "sequence" (next entry of the timesteps) or "stride" (t - T // N, diffusers' DDIM).
  """

  prediction: param.Prediction = "epsilon"
  clip_x0: float | None = None
  threshold_ratio: float | None = None
  threshold_max: float = 1.0
  recompute_eps: bool = False
  set_alpha_to_one: bool = True
  prev_rule: schedules.PrevRule = "sequence"

  def __post_init__(self):
    param.check_prediction(self.prediction)
    if self.clip_x0 is not None and self.clip_x0 <= 0:
      raise ValueError(f"StepConfig.clip_x0 must be positive, got {self.clip_x0}")
    if self.threshold_ratio is not None and not 0 < self.threshold_ratio <= 1:
      raise ValueError(f"StepConfig.threshold_ratio must be in (0, 1], got {self.threshold_ratio}")
    if self.clip_x0 is not None and self.threshold_ratio is not None:
      raise ValueError("StepConfig: choose clip_x0 or threshold_ratio, not both")
    if self.prev_rule not in schedules.PREV_RULES:
      raise ValueError(f"StepConfig.prev_rule must be one of {schedules.PREV_RULES}, "
                       f"got {self.prev_rule!r}")


@flax.struct.dataclass
class GuidanceConfig:
  """Classifier-free guidance: out = out(null_cond) + scale (out(cond) - out(null_cond)).

  The weights sum to one and every parameterisation is affine in the output at fixed (x_t, t),
  so mixing raw outputs equals mixing eps_hat (and x0_hat) whatever the model predicts.

  Attributes:
    scale: guidance scale s (1 reproduces the conditional model); a pytree leaf, so it can vary
      under jit without recompiling.
    null_cond: keyword arguments of the unconditional call (e.g. zeroed audio features).
    joint_batch: evaluate both branches in one call on a doubled batch (every cond leaf must
      then have the batch as its leading axis) instead of two calls.
  """

  scale: float | jax.Array
  null_cond: Mapping[str, Any] = flax.struct.field(default_factory=dict)
  joint_batch: bool = flax.struct.field(pytree_node=False, default=False)


class Trajectory(NamedTuple):
  """Per-step states of a sampling or inversion loop, in loop order.

  Attributes:
    x: [N, B, ...] the state after each step.
    x0: [N, B, ...] the x0_hat each step used.
  """

  x: jax.Array
  x0: jax.Array


def model_output(model_fn: ModelFn, x: jax.Array, t: jax.Array, cond: Mapping[str, Any],
                 guidance: GuidanceConfig | None = None) -> jax.Array:
  """The (optionally guided) model output at x [B, ...], t [B]."""
  if guidance is None:
    return model_fn(x, t, **cond)
  if jax.tree_util.tree_structure(dict(cond)) != jax.tree_util.tree_structure(
      dict(guidance.null_cond)):
    raise ValueError("GuidanceConfig.null_cond must have the same keys and structure as cond; got "
                     f"{sorted(guidance.null_cond)} vs {sorted(cond)}")
  if guidance.joint_batch:
    both = jax.tree_util.tree_map(lambda c, u: jnp.concatenate([c, u]), dict(cond),
                                  dict(guidance.null_cond))
    out = model_fn(jnp.concatenate([x, x]), jnp.concatenate([t, t]), **both)
    out_cond, out_uncond = jnp.split(out, 2)
  else:
    out_cond = model_fn(x, t, **cond)
    out_uncond = model_fn(x, t, **guidance.null_cond)
  out_cond, out_uncond = out_cond.astype(jnp.float32), out_uncond.astype(jnp.float32)
  return out_uncond + guidance.scale * (out_cond - out_uncond)


def denoise(config: StepConfig, output: jax.Array, x_t: jax.Array,
            abar_t: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(x0_hat, eps_hat) from a model output, with the configured clipping / thresholding."""
  x0, eps = param.to_x0_eps(config.prediction, output, x_t, abar_t)
  if config.threshold_ratio is not None:
    x0 = param.dynamic_threshold(x0, config.threshold_ratio, config.threshold_max)
  elif config.clip_x0 is not None:
    x0 = param.clip_x0(x0, config.clip_x0)
  else:
    return x0, eps
  if config.recompute_eps:
    eps = param.eps_from_x0(x_t, x0, abar_t)
  return x0, eps


def _step_beta(abar_t: jax.Array, abar_prev: jax.Array) -> jax.Array:
  # 1 - a / a' written as (a' - a) / a': the float32 difference is exact (Sterbenz), so small
  # steps near t = 0 keep their precision instead of cancelling.
  return (abar_prev - abar_t) / abar_prev


def ddim_sigma(abar_t: jax.Array, abar_prev: jax.Array, eta: float | jax.Array) -> jax.Array:
  """DDIM noise scale eta sqrt((1 - a') / (1 - a) (1 - a / a'))."""
  variance = (1.0 - abar_prev) / (1.0 - abar_t) * _step_beta(abar_t, abar_prev)
  return eta * jnp.sqrt(variance)


def ddim_step(config: StepConfig, output: jax.Array, x_t: jax.Array, abar_t: jax.Array,
              abar_prev: jax.Array, *, eta: float | jax.Array = 0.0,
              noise: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """One DDIM update; returns (x_prev, x0_hat). abar_t, abar_prev: scalars or [B].

  `noise` (z, broadcastable to x_t) is required when eta may be nonzero.
  """
  x_t = x_t.astype(jnp.float32)
  x0, eps = denoise(config, output, x_t, abar_t)
  sigma = param.broadcast_to_data(ddim_sigma(abar_t, abar_prev, eta), x_t.ndim)
  a_prev = param.broadcast_to_data(abar_prev, x_t.ndim)
  # The clamp only absorbs float32 rounding (1 - a' - sigma^2 >= 0 exactly for eta <= 1).
  direction = jnp.sqrt(jnp.maximum(1.0 - a_prev - sigma ** 2, 0.0)) * eps
  x_prev = jnp.sqrt(a_prev) * x0 + direction
  if noise is not None:
    x_prev = x_prev + sigma * noise
  return x_prev, x0


def posterior_variance(abar_t: jax.Array, abar_prev: jax.Array,
                       variance: Variance = "fixed_small") -> jax.Array:
  """DDPM step variance: clamped posterior variance ("fixed_small") or beta ("fixed_large")."""
  beta = _step_beta(abar_t, abar_prev)
  if variance == "fixed_small":
    return jnp.maximum((1.0 - abar_prev) / (1.0 - abar_t) * beta, MIN_POSTERIOR_VARIANCE)
  if variance == "fixed_large":
    return beta
  raise ValueError(f"unknown DDPM variance {variance!r}; expected one of {VARIANCES}")


def ddpm_step(config: StepConfig, output: jax.Array, x_t: jax.Array, abar_t: jax.Array,
              abar_prev: jax.Array, *, variance: Variance = "fixed_small",
              noise: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """One DDPM ancestral update; returns (x_prev, x0_hat). No noise is added when `noise` is None."""
  x_t = x_t.astype(jnp.float32)
  x0, _ = denoise(config, output, x_t, abar_t)
  a = param.broadcast_to_data(abar_t, x_t.ndim)
  a_prev = param.broadcast_to_data(abar_prev, x_t.ndim)
  beta = _step_beta(a, a_prev)
  mean = (jnp.sqrt(a_prev) * beta / (1.0 - a)) * x0 + (jnp.sqrt(a / a_prev) * (1.0 - a_prev) /
                                                       (1.0 - a)) * x_t
  if noise is None:
    return mean, x0
  var = param.broadcast_to_data(posterior_variance(abar_t, abar_prev, variance), x_t.ndim)
  return mean + jnp.sqrt(var) * noise, x0


def ddim_inversion_step(config: StepConfig, output: jax.Array, x_t: jax.Array, abar_t: jax.Array,
                        abar_next: jax.Array) -> tuple[jax.Array, jax.Array]:
  """One deterministic DDIM encoding step to a noisier level; returns (x_next, x0_hat)."""
  x_t = x_t.astype(jnp.float32)
  x0, eps = denoise(config, output, x_t, abar_t)
  a_next = param.broadcast_to_data(abar_next, x_t.ndim)
  return jnp.sqrt(a_next) * x0 + jnp.sqrt(1.0 - a_next) * eps, x0


def _timesteps(timesteps: Any, num_train_timesteps: int) -> jax.Array:
  if isinstance(timesteps, (np.ndarray, list, tuple)):
    return jnp.asarray(schedules.check_timesteps(timesteps, num_train_timesteps))
  return jnp.asarray(timesteps, jnp.int32)


def _is_zero(value: Any) -> bool:
  return isinstance(value, (int, float)) and value == 0


def sample(model_fn: ModelFn, shape: tuple[int, ...], schedule: schedules.NoiseSchedule,
           timesteps: Any, rng: jax.Array, *, method: Method = "ddim",
           eta: float | jax.Array = 0.0, variance: Variance = "fixed_small",
           config: StepConfig = StepConfig(), cond: Mapping[str, Any] | None = None,
           guidance: GuidanceConfig | None = None, x_T: jax.Array | None = None,
           shared_noise: bool = False, shared_step_noise: bool = False,
           return_trajectory: bool = False) -> jax.Array | tuple[jax.Array, Trajectory]:
  """Samples x_0 [B, ...] = `shape` from x_T by DDIM (eta) or DDPM (variance) over `timesteps`.

  Args:
    model_fn: `model_fn(x, t, **cond)`, see the module docstring.
    shape: (B, ...) of the samples.
    schedule: the training noise schedule.
    timesteps: [N] strictly decreasing training timesteps (`schedules.make_timesteps`); numpy
      input is validated, traced input is trusted.
    rng: split into (x_T key, step key); step i draws its noise from fold_in(step key, i).
    method: "ddim" or "ddpm".
    eta: DDIM stochasticity in [0, 1]; a Python 0 skips drawing step noise.
    variance: DDPM variance, "fixed_small" or "fixed_large".
    config: parameterisation, x0 clipping and final-alpha handling.
    cond: keyword arguments for the model (leading axis B where they are per frame).
    guidance: classifier-free guidance, or None.
    x_T: initial noise [B, ...] or [1, ...] (broadcast over B); drawn from rng when None.
    shared_noise: draw x_T as [1, ...] for all B (ignored when x_T is given).
    shared_step_noise: draw each step's noise as [1, ...] for all B.
    return_trajectory: also return the per-step `Trajectory`.

  Returns:
    x_0 [B, ...] float32, and the trajectory when asked.
  """
  if method not in METHODS:
    raise ValueError(f"unknown sampling method {method!r}; expected one of {METHODS}")
  if variance not in VARIANCES:
    raise ValueError(f"unknown DDPM variance {variance!r}; expected one of {VARIANCES}")
  if isinstance(eta, (int, float)) and not 0 <= eta <= 1:
    raise ValueError(f"eta must be in [0, 1], got {eta}")
  if method == "ddpm" and not _is_zero(eta):
    raise ValueError(f"eta={eta} applies to DDIM only; DDPM's noise is set by `variance`")
  shape = tuple(int(d) for d in shape)
  if not shape:
    raise ValueError("shape must have a leading batch axis, got ()")
  cond = {} if cond is None else dict(cond)
  batch, noise_shape = shape[0], (1,) + shape[1:]
  ts = _timesteps(timesteps, schedule.num_train_timesteps)
  prev = schedules.previous_timesteps(ts, schedule.num_train_timesteps, config.prev_rule)
  abar_t = schedules.alpha_bar(schedule, ts, config.set_alpha_to_one)
  abar_prev = schedules.alpha_bar(schedule, prev, config.set_alpha_to_one)

  key_init, key_steps = jax.random.split(rng)
  if x_T is None:
    x = jax.random.normal(key_init, noise_shape if shared_noise else shape, jnp.float32)
  else:
    if tuple(x_T.shape) not in (shape, noise_shape):
      raise ValueError(f"x_T shape {tuple(x_T.shape)} must be {shape} or {noise_shape}")
    x = jnp.asarray(x_T, jnp.float32)
  x = jnp.broadcast_to(x, shape)
  step_noise_shape = noise_shape if shared_step_noise else shape
  stochastic = method == "ddpm" or not _is_zero(eta)

  def body(x, inputs):
    i, t, a, a_prev, not_final = inputs
    out = model_output(model_fn, x, jnp.full((batch,), t, jnp.int32), cond, guidance)
    noise = None
    if stochastic:
      noise = jax.random.normal(jax.random.fold_in(key_steps, i), step_noise_shape, jnp.float32)
    if method == "ddim":
      x, x0 = ddim_step(config, out, x, a, a_prev, eta=eta, noise=noise)
    else:
      x, x0 = ddpm_step(config, out, x, a, a_prev, variance=variance,
                        noise=noise * not_final.astype(jnp.float32))
    return x, Trajectory(x, x0) if return_trajectory else None

  steps = jnp.arange(ts.shape[0], dtype=jnp.int32)
  x, trajectory = jax.lax.scan(body, x, (steps, ts, abar_t, abar_prev, prev >= 0))
  return (x, trajectory) if return_trajectory else x


def ddim_invert(model_fn: ModelFn, x0: jax.Array, schedule: schedules.NoiseSchedule,
                timesteps: Any, *, config: StepConfig = StepConfig(),
                cond: Mapping[str, Any] | None = None, guidance: GuidanceConfig | None = None,
                to_pure_noise: bool = False,
                return_trajectory: bool = False) -> jax.Array | tuple[jax.Array, Trajectory]:
  """Deterministic DDIM encoding of x0 [B, ...] into the x_T that `sample` (eta = 0) starts from.

  `timesteps` are given in sampling order (largest first), as for `sample`. x0 is taken as the
  state at the smallest timestep t_0 (diffae: the image is x at index 0) and moved up through
  t_1 .. t_{N-1} with the model evaluated at the current level: N - 1 model calls ending at the
  level `sample` starts from, so `sample(x_T=ddim_invert(x0))` retraces the chain back to t_0
  before its final step. `to_pure_noise=True` adds diffae's last step to abar = 0 (x_T =
  eps_hat at t_{N-1}, N calls), which `sample` then reads as the state at t_{N-1}.
  The prediction, clipping and `recompute_eps` options of `config` apply; its final-alpha
  and previous-timestep options do not.
  """
  cond = {} if cond is None else dict(cond)
  ts = _timesteps(timesteps, schedule.num_train_timesteps)[::-1]
  abar_t = schedules.alpha_bar(schedule, ts)
  abar_next = jnp.concatenate([abar_t[1:], jnp.zeros((1,), jnp.float32)])
  if not to_pure_noise:
    ts, abar_t, abar_next = ts[:-1], abar_t[:-1], abar_next[:-1]
  batch = x0.shape[0]

  def body(x, inputs):
    t, a, a_next = inputs
    out = model_output(model_fn, x, jnp.full((batch,), t, jnp.int32), cond, guidance)
    x, x0_hat = ddim_inversion_step(config, out, x, a, a_next)
    return x, Trajectory(x, x0_hat) if return_trajectory else None

  x, trajectory = jax.lax.scan(body, jnp.asarray(x0, jnp.float32), (ts, abar_t, abar_next))
  return (x, trajectory) if return_trajectory else x
