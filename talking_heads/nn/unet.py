"""Diffusion-UNet pieces: timestep embedding and the conditioned ResBlock.

Dimensions: B batch, H, W spatial size, C input channels, D output channels, E embedding width
(time), Z latent width (a per-example condition vector), F sinusoidal frequency width.
NHWC throughout.

The blocks follow ADM / diffae (`phizaz/diffae` `model/blocks.py`, `model/nn.py`):
  * `timestep_embedding`: [cos(t w_i), sin(t w_i)] with w_i = max_period^(-i / (F/2)), cos first
    (ADM and diffae; DiT uses the same order), a zero column when F is odd.
  * `TimestepEmbedding`: sinusoid(F) -> Dense E -> SiLU -> Dense E.
  * `ResBlock`: in layers GN -> SiLU -> [resample h and x] -> conv3x3; when conditioned, out
    layers GN -> AdaGN -> SiLU -> dropout -> conv3x3 (zero-initialised) with
      (scale_t, shift_t) = Dense_2D(SiLU(time_emb)),  h = h (1 + scale_t) + shift_t,
      scale_c = Dense_D(SiLU(cond)),                  h = h (1 + scale_c),
    time first, then the latent (diffae's `two_cond`); the skip is a 1x1 conv when C != D. An
    unconditioned block (diffae's semantic encoder) has no out layers at all: x + in_layers(x).
  * Resampling inside ResBlocks (diffae's `resblock_updown`): nearest x2 up, 2x2 average-pool
    down (`nn.resnet`).
The UNet's attention is `nn.attention.SpatialSelfAttention` ("fused" qkv, ADM's layout) and its
stand-alone resampling `nn.resnet.Upsample` / `Downsample` (padding 1). GroupNorm uses min(32, C)
groups ("cap") and PyTorch's epsilon 1e-5 by default (`nn.norm`); norms run in float32 whatever
the compute dtype. Convolutions pad explicitly like PyTorch (padding 1).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from talking_heads.nn import norm
from talking_heads.nn.resnet import PAD1, downsample_average, upsample_nearest

Resample = Literal["none", "up", "down"]

RESAMPLES = ("none", "up", "down")
MAX_PERIOD = 10000.0


def timestep_embedding(t: jax.Array, dim: int, max_period: float = MAX_PERIOD) -> jax.Array:
  """[B] timesteps (integer or fractional) -> [B, dim] float32 sinusoidal features, cos first."""
  t = jnp.asarray(t, jnp.float32)
  if t.ndim != 1:
    raise ValueError(f"timestep_embedding: timesteps must be [B], got shape {t.shape}")
  if dim < 2:
    raise ValueError(f"timestep_embedding: dim must be >= 2, got {dim}")
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = t[:, None] * freqs[None]                                   # [B, F/2]
  emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)    # [B, 2 (F/2)]
  if dim % 2:
    emb = jnp.pad(emb, ((0, 0), (0, 1)))
  return emb


def _resample(x: jax.Array, resample: Resample) -> jax.Array:
  if resample == "up":
    return upsample_nearest(x)
  if resample == "down":
    return downsample_average(x)
  return x


class TimestepEmbedding(nn.Module):
  """Timesteps [B] -> sinusoid [B, F] -> Dense E -> SiLU -> Dense E, i.e. [B, E].

  Attributes:
    features: E (diffae: 512).
    frequency_dim: F (diffae: the UNet's base width, 128 at ffhq256).
    max_period: the slowest sinusoid's period.
  """
  features: int = 512
  frequency_dim: int = 128
  max_period: float = MAX_PERIOD
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, t: jax.Array) -> jax.Array:
    dense = lambda name: nn.Dense(self.features, dtype=self.dtype, param_dtype=self.param_dtype,
                                  name=name)
    h = timestep_embedding(t, self.frequency_dim, self.max_period)   # [B, F]
    return dense("dense_1")(nn.silu(dense("dense_0")(h)))            # [B, E]


class ResBlock(nn.Module):
  """A residual block with AdaGN conditioning hooks and optional up/down resampling.

  Attributes:
    features: D; None keeps C.
    resample: "none", "up" (nearest x2) or "down" (2x2 average), applied after the first
      GN -> SiLU on the main path and to the skip input (diffae's `resblock_updown`).
    conditional: True builds the out layers with the time (and optional latent) modulation;
      False is diffae's unconditioned encoder block, x + conv(SiLU(GN(x))), with no dropout.
    dropout: rate before the last conv (conditional blocks only).
    norm_groups: GroupNorm groups (capped at the channel count).
    norm_eps: GroupNorm epsilon.
    zero_init: zero-initialise the last conv so a fresh block is its skip path.
    cond_activation: apply SiLU to `cond` before its projection (diffae); False when the caller
      passes an already activated latent (e.g. `dae.ConditionalUNet`'s centred one).
  """
  features: int | None = None
  resample: Resample = "none"
  conditional: bool = True
  dropout: float = 0.0
  norm_groups: int = 32
  norm_eps: float = norm.TORCH_EPS
  zero_init: bool = True
  cond_activation: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, time_emb: jax.Array | None = None,
               cond: jax.Array | None = None, train: bool = False) -> jax.Array:
    """x [B, H, W, C], time_emb [B, E], cond [B, Z] -> [B, H', W', D] (H' = 2H, H/2 or H).

    A conditional block needs `time_emb`; `cond` is optional (without it the block is ADM's
    scale-shift-norm block, e.g. for a UNet conditioned by cross-attention instead).
    """
    if self.resample not in RESAMPLES:
      raise ValueError(f"ResBlock {self.name}: resample must be one of {RESAMPLES}, got "
                       f"{self.resample!r}")
    c = x.shape[-1]
    d = self.features or c
    conv = lambda k, name, **kw: nn.Conv(d, (k, k), padding=PAD1 if k == 3 else "VALID",
                                         dtype=self.dtype, param_dtype=self.param_dtype,
                                         name=name, **kw)
    group_norm = lambda channels, name: norm.group_norm(
        channels, epsilon=self.norm_eps, rule="cap", groups=self.norm_groups,
        param_dtype=self.param_dtype, name=name)
    h = nn.silu(group_norm(c, "in_norm")(x))
    h = _resample(h.astype(self.dtype), self.resample)
    x = _resample(x, self.resample)
    h = conv(3, "in_conv")(h)                                         # [B, H', W', D]
    if self.conditional:
      if time_emb is None:
        raise ValueError(f"ResBlock {self.name}: a conditional block needs time_emb [B, E]")
      dense = lambda n, name: nn.Dense(n, dtype=self.dtype, param_dtype=self.param_dtype,
                                       name=name)
      scale_t, shift_t = jnp.split(dense(2 * d, "time_proj")(nn.silu(time_emb)), 2, axis=-1)
      h = group_norm(d, "out_norm")(h)
      h = h * (1.0 + scale_t[:, None, None].astype(jnp.float32)) + shift_t[:, None, None].astype(
          jnp.float32)
      if cond is not None:
        cond = nn.silu(cond) if self.cond_activation else cond
        scale_c = dense(d, "cond_proj")(cond)                         # [B, D]
        h = h * (1.0 + scale_c[:, None, None].astype(jnp.float32))
      h = nn.Dropout(self.dropout, deterministic=not train)(nn.silu(h).astype(self.dtype))
      zeros = nn.initializers.zeros_init()
      h = conv(3, "out_conv", **(dict(kernel_init=zeros, bias_init=zeros)
                                 if self.zero_init else {}))(h)
    if c != d:
      x = conv(1, "skip")(x)
    return x.astype(self.dtype) + h
