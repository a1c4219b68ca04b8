"""Noise schedules and inference timestep spacings for discrete-time diffusion.

Dimension legend: T training timesteps (the schedule length), N inference steps, B batch.

Conventions (shared by `parameterization` and `samplers`): timesteps are integers in [0, T); the
cumulative product abar_t = prod_{s<=t} (1 - beta_s) is the signal level of x_t, so
x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps. The step before the first timestep (index -1) has
the "final" alpha: 1.0 (diffusers' `set_alpha_to_one=True`, diffae's respaced chain) or abar_0.

Beta schedules follow diffusers' `DDIMScheduler`/`DDPMScheduler`:
  * "linear": linspace(beta_start, beta_end, T);
  * "scaled_linear": linspace(sqrt(beta_start), sqrt(beta_end), T)^2 (latent diffusion);
  * "cosine" (diffusers' "squaredcos_cap_v2", Nichol & Dhariwal 2021):
    beta_i = min(1 - f((i+1)/T) / f(i/T), 0.999) with f(u) = cos((u + 0.008) / 1.008 * pi / 2)^2.
diffae's "linear" scales both ends by 1000 / T; pass the scaled values for T != 1000.
Tables are computed in float64 with numpy and stored as float32 jax arrays.

Spacings (the sampling order, largest timestep first):
  * "leading":  arange(N) * (T // N), reversed, plus `steps_offset` (diffusers' default);
  * "trailing": round(T - i * T / N) - 1 for i in 0..N-1, i.e. the first N entries of diffusers'
    round(arange(T, 0, -T / N)) - 1 (for some N, e.g. 61 with T = 1000, numpy's float arange
    yields an extra entry that rounds to -1; diffusers keeps it, here it is dropped);
  * "linspace": round(linspace(0, T - 1, N)) (round half to even), reversed;
  * "ddim": diffae / improved-diffusion `space_timesteps(T, "ddimN")`: the smallest integer
    stride s in [1, T) with len(range(0, T, s)) == N; timesteps range(0, T, s), reversed. Some N
    have no such stride (e.g. N = 1): a ValueError.
"""

from __future__ import annotations

import math
from typing import Literal

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt

ScheduleKind = Literal["linear", "scaled_linear", "cosine"]
Spacing = Literal["leading", "trailing", "linspace", "ddim"]
PrevRule = Literal["sequence", "stride"]

SCHEDULE_KINDS = ("linear", "scaled_linear", "cosine")
SPACINGS = ("leading", "trailing", "linspace", "ddim")
PREV_RULES = ("sequence", "stride")
COSINE_OFFSET = 0.008
COSINE_MAX_BETA = 0.999


@flax.struct.dataclass
class NoiseSchedule:
  """A discrete diffusion noise schedule; a pytree, so it can be passed through `jax.jit`.

  Attributes:
    betas: [T] float32 per-step noise variances.
    alphas_cumprod: [T] float32 cumulative products abar_t of (1 - beta).
    num_train_timesteps: T (static).
  """

  betas: jax.Array
  alphas_cumprod: jax.Array
  num_train_timesteps: int = flax.struct.field(pytree_node=False)


def schedule_from_betas(betas: npt.ArrayLike) -> NoiseSchedule:
  """Builds a schedule from explicit betas (cumulative product taken in float64)."""
  betas64 = np.asarray(betas, dtype=np.float64)
  if betas64.ndim != 1 or betas64.size == 0:
    raise ValueError(f"betas must be a non-empty 1-D array, got shape {betas64.shape}")
  if not np.all((betas64 > 0) & (betas64 < 1)):
    raise ValueError("betas must lie in (0, 1); got range "
                     f"[{betas64.min():.6g}, {betas64.max():.6g}]")
  alphas_cumprod = np.cumprod(1.0 - betas64)
  return NoiseSchedule(betas=jnp.asarray(betas64, jnp.float32),
                       alphas_cumprod=jnp.asarray(alphas_cumprod, jnp.float32),
                       num_train_timesteps=int(betas64.size))


def make_betas(kind: ScheduleKind, num_timesteps: int, beta_start: float = 1e-4,
               beta_end: float = 0.02) -> np.ndarray:
  """Returns the [T] float64 betas of a named schedule (see the module docstring)."""
  if num_timesteps < 1:
    raise ValueError(f"num_timesteps must be >= 1, got {num_timesteps}")
  if kind == "linear":
    return np.linspace(beta_start, beta_end, num_timesteps, dtype=np.float64)
  if kind == "scaled_linear":
    return np.linspace(math.sqrt(beta_start), math.sqrt(beta_end), num_timesteps,
                       dtype=np.float64) ** 2
  if kind == "cosine":
    u = np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps
    f = np.cos((u + COSINE_OFFSET) / (1 + COSINE_OFFSET) * np.pi / 2) ** 2
    return np.minimum(1.0 - f[1:] / f[:-1], COSINE_MAX_BETA)
  raise ValueError(f"unknown beta schedule {kind!r}; expected one of {SCHEDULE_KINDS}")


def make_schedule(kind: ScheduleKind = "linear", num_timesteps: int = 1000,
                  beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
  """Builds a named schedule; beta_start/beta_end are ignored by "cosine"."""
  return schedule_from_betas(make_betas(kind, num_timesteps, beta_start, beta_end))


def make_timesteps(spacing: Spacing, num_inference_steps: int, num_train_timesteps: int,
                   steps_offset: int = 0) -> np.ndarray:
  """Returns the [N] int32 sampling timesteps, largest first (see the module docstring)."""
  n, t_train = num_inference_steps, num_train_timesteps
  if not 1 <= n <= t_train:
    raise ValueError(f"num_inference_steps must be in [1, {t_train}] (the training timesteps), "
                     f"got {n}")
  if steps_offset and spacing != "leading":
    raise ValueError(f"steps_offset={steps_offset} only applies to 'leading' spacing, "
                     f"not {spacing!r}")
  if spacing == "leading":
    timesteps = np.arange(n)[::-1] * (t_train // n) + steps_offset
    if timesteps[0] >= t_train:
      raise ValueError(f"steps_offset={steps_offset} puts timestep {timesteps[0]} outside "
                       f"[0, {t_train})")
  elif spacing == "trailing":
    # The same float expression as diffusers, so the rounding agrees value for value.
    timesteps = np.round(np.arange(t_train, 0, -t_train / n))[:n] - 1
  elif spacing == "linspace":
    timesteps = np.round(np.linspace(0, t_train - 1, n))[::-1]
  elif spacing == "ddim":
    stride = next((s for s in range(1, t_train) if len(range(0, t_train, s)) == n), None)
    if stride is None:
      raise ValueError(f"'ddim' spacing: no integer stride gives exactly {n} steps out of "
                       f"{t_train}")
    timesteps = np.arange(0, t_train, stride)[::-1]
  else:
    raise ValueError(f"unknown timestep spacing {spacing!r}; expected one of {SPACINGS}")
  return np.ascontiguousarray(timesteps).astype(np.int32)


def check_timesteps(timesteps: npt.ArrayLike, num_train_timesteps: int) -> np.ndarray:
  """Checks concrete timesteps are strictly decreasing and in [0, T); returns them as int32."""
  ts = np.asarray(timesteps)
  if ts.ndim != 1 or ts.size == 0:
    raise ValueError(f"timesteps must be a non-empty 1-D array, got shape {ts.shape}")
  if not np.issubdtype(ts.dtype, np.integer):
    raise ValueError(f"timesteps must be integers, got dtype {ts.dtype}")
  if ts.min() < 0 or ts.max() >= num_train_timesteps:
    raise ValueError(f"timesteps must lie in [0, {num_train_timesteps}), got "
                     f"[{ts.min()}, {ts.max()}]")
  if ts.size > 1 and not np.all(np.diff(ts) < 0):
    raise ValueError(f"timesteps must be strictly decreasing (sampling order), got {ts.tolist()}")
  return ts.astype(np.int32)


def previous_timesteps(timesteps: jax.Array, num_train_timesteps: int,
                       rule: PrevRule = "sequence") -> jax.Array:
  """The timestep each sampling step moves to; -1 means the final (clean) level.

  "sequence": the next entry of `timesteps` (diffae's respaced chain, diffusers' DDPMScheduler).
  "stride": t - T // N (diffusers' DDIMScheduler); equal to "sequence" for "leading" spacing and,
  when N divides T, for "trailing" and "ddim". Negative results all mean the final level.
  """
  timesteps = jnp.asarray(timesteps, jnp.int32)
  if rule == "sequence":
    return jnp.concatenate([timesteps[1:], jnp.full((1,), -1, jnp.int32)])
  if rule == "stride":
    return timesteps - num_train_timesteps // timesteps.shape[0]
  raise ValueError(f"unknown previous-timestep rule {rule!r}; expected one of {PREV_RULES}")


def alpha_bar(schedule: NoiseSchedule, t: jax.Array, set_alpha_to_one: bool = True) -> jax.Array:
  """abar at integer timesteps `t` (any shape); t < 0 gives the final alpha.

  The final alpha is 1.0 when `set_alpha_to_one`, else abar_0 (diffusers' `final_alpha_cumprod`).
  """
  t = jnp.asarray(t, jnp.int32)
  final = 1.0 if set_alpha_to_one else schedule.alphas_cumprod[0]
  return jnp.where(t >= 0, schedule.alphas_cumprod[jnp.maximum(t, 0)], final)


def random_timesteps(rng: jax.Array, batch_size: int, num_train_timesteps: int) -> jax.Array:
  """[B] int32 training timesteps drawn uniformly from [0, T)."""
  return jax.random.randint(rng, (batch_size,), 0, num_train_timesteps, dtype=jnp.int32)
