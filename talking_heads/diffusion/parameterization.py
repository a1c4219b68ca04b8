"""Forward noising, model parameterisations (epsilon / x0 / v), their conversions and losses.

Dimension legend: B batch (frames), ... any trailing data dimensions (H, W, C or a feature D).

With a = sqrt(abar_t) and s = sqrt(1 - abar_t) (see `schedules`):
  x_t = a x0 + s eps                  (forward noising, `q_sample`)
  v   = a eps - s x0                  (Salimans & Ho 2022; diffusers' `get_velocity`)
  x0  = (x_t - s eps) / a = a x_t - s v
  eps = (x_t - a x0) / s  = a v + s x_t
A network predicts one of "epsilon" (DDPM, diffae, DAE-Talker), "x0" (FD2Talk; diffusers'
"sample") or "v" (diffusers' "v_prediction"). Every conversion is affine in the network output at
fixed (x_t, t), which is why classifier-free guidance can mix raw outputs in any parameterisation.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from talking_heads.diffusion import schedules

Prediction = Literal["epsilon", "x0", "v"]
LossNorm = Literal["l1", "l2"]

PREDICTIONS = ("epsilon", "x0", "v")
LOSS_NORMS = ("l1", "l2")


def check_prediction(prediction: str) -> None:
  """Raises a ValueError naming the valid parameterisations when `prediction` is not one."""
  if prediction not in PREDICTIONS:
    raise ValueError(f"unknown prediction type {prediction!r}; expected one of {PREDICTIONS}")


def broadcast_to_data(values: jax.Array, ndim: int) -> jax.Array:
  """Reshapes per-example values [B] (or a scalar) to broadcast against [B, ...] of rank `ndim`."""
  values = jnp.asarray(values, jnp.float32)
  if values.ndim == 0:
    return values
  if values.ndim != 1:
    raise ValueError(f"per-example values must be a scalar or [B], got shape {values.shape}")
  return values.reshape(values.shape + (1,) * (ndim - 1))


def q_sample(schedule: schedules.NoiseSchedule, x0: jax.Array, t: jax.Array,
             noise: jax.Array) -> jax.Array:
  """Forward noising x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise; t is [B] or a scalar."""
  if noise.shape != x0.shape:
    raise ValueError(f"noise shape {noise.shape} differs from x0 shape {x0.shape}")
  abar = broadcast_to_data(schedule.alphas_cumprod[jnp.asarray(t, jnp.int32)], x0.ndim)
  return jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * noise


def velocity(x0: jax.Array, eps: jax.Array, abar: jax.Array) -> jax.Array:
  """v = sqrt(abar) eps - sqrt(1 - abar) x0; abar is [B] or a scalar."""
  abar = broadcast_to_data(abar, x0.ndim)
  return jnp.sqrt(abar) * eps - jnp.sqrt(1.0 - abar) * x0


def x0_from_eps(x_t: jax.Array, eps: jax.Array, abar: jax.Array) -> jax.Array:
  """x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)."""
  abar = broadcast_to_data(abar, x_t.ndim)
  return (x_t - jnp.sqrt(1.0 - abar) * eps) / jnp.sqrt(abar)


def eps_from_x0(x_t: jax.Array, x0: jax.Array, abar: jax.Array) -> jax.Array:
  """eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar)."""
  abar = broadcast_to_data(abar, x_t.ndim)
  return (x_t - jnp.sqrt(abar) * x0) / jnp.sqrt(1.0 - abar)


def x0_from_v(x_t: jax.Array, v: jax.Array, abar: jax.Array) -> jax.Array:
  """x0 = sqrt(abar) x_t - sqrt(1 - abar) v."""
  abar = broadcast_to_data(abar, x_t.ndim)
  return jnp.sqrt(abar) * x_t - jnp.sqrt(1.0 - abar) * v


def eps_from_v(x_t: jax.Array, v: jax.Array, abar: jax.Array) -> jax.Array:
  """eps = sqrt(abar) v + sqrt(1 - abar) x_t."""
  abar = broadcast_to_data(abar, x_t.ndim)
  return jnp.sqrt(abar) * v + jnp.sqrt(1.0 - abar) * x_t


def to_x0_eps(prediction: Prediction, output: jax.Array, x_t: jax.Array,
              abar: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(x0_hat, eps_hat) from a network output in the given parameterisation (as diffusers)."""
  check_prediction(prediction)
  if output.shape != x_t.shape:
    raise ValueError(f"model output shape {output.shape} differs from sample shape {x_t.shape}")
  output = output.astype(jnp.float32)
  if prediction == "epsilon":
    return x0_from_eps(x_t, output, abar), output
  if prediction == "x0":
    return output, eps_from_x0(x_t, output, abar)
  return x0_from_v(x_t, output, abar), eps_from_v(x_t, output, abar)


def from_x0_eps(prediction: Prediction, x0: jax.Array, eps: jax.Array,
                abar: jax.Array) -> jax.Array:
  """The network output that encodes (x0, eps) at signal level abar."""
  check_prediction(prediction)
  if prediction == "epsilon":
    return eps
  if prediction == "x0":
    return x0
  return velocity(x0, eps, abar)


def training_target(prediction: Prediction, schedule: schedules.NoiseSchedule, x0: jax.Array,
                    noise: jax.Array, t: jax.Array) -> jax.Array:
  """The regression target for a network trained in the given parameterisation at timesteps t."""
  abar = schedule.alphas_cumprod[jnp.asarray(t, jnp.int32)]
  return from_x0_eps(prediction, x0, noise, abar)


def prediction_loss(output: jax.Array, target: jax.Array, norm: LossNorm = "l2") -> jax.Array:
  """[B] per-example mean of |output - target| ("l1") or (output - target)^2 ("l2"), in float32.

  DAE-Talker trains with L1 on epsilon, diffae with L2 on epsilon, FD2Talk with L2 on x0.
  """
  if output.shape != target.shape:
    raise ValueError(f"output shape {output.shape} differs from target shape {target.shape}")
  diff = output.astype(jnp.float32) - target.astype(jnp.float32)
  if norm == "l1":
    err = jnp.abs(diff)
  elif norm == "l2":
    err = jnp.square(diff)
  else:
    raise ValueError(f"unknown loss norm {norm!r}; expected one of {LOSS_NORMS}")
  return jnp.mean(err.reshape(err.shape[0], -1), axis=1)


def clip_x0(x0: jax.Array, clip_range: float) -> jax.Array:
  """Clamps predicted x0 to [-clip_range, clip_range] (diffusers' `clip_sample`)."""
  return jnp.clip(x0, -clip_range, clip_range)


def dynamic_threshold(x0: jax.Array, ratio: float = 0.995, max_value: float = 1.0) -> jax.Array:
  """Imagen dynamic thresholding, per example (as diffusers' `_threshold_sample`).

  s = quantile(|x0|, ratio) over all non-batch entries (linear interpolation), clamped to
  [1, max_value]; x0 is clipped to [-s, s] and divided by s.
  """
  flat = x0.reshape(x0.shape[0], -1).astype(jnp.float32)
  s = jnp.clip(jnp.quantile(jnp.abs(flat), ratio, axis=1), 1.0, max_value)[:, None]
  return (jnp.clip(flat, -s, s) / s).reshape(x0.shape)
