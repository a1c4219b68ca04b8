"""Convolutional blocks shared by the VQGAN (taming) and diffusion (ADM / diffae) models.

Dimensions: B batch, H, W spatial size, C input channels, D output channels. NHWC throughout.

  ResnetBlock  taming's: GN -> swish -> conv3x3 -> GN -> swish -> conv3x3, plus the input
               (a 1x1 `nin_shortcut` when C != D). (ADM's time-conditioned block is
               `nn.unet.ResBlock`.)
  Upsample     nearest x2, then a 3x3 `conv` (optional in ADM).
  Downsample   a 3x3 stride-2 `conv`, or 2x2 average pooling (ADM without conv).
The resampling convs take their zero padding as a field: ADM pads like PyTorch's `padding=1`
(`PAD1`); taming's Downsample pads 0 top/left and 1 bottom/right, then runs a VALID conv
(`TAMING_DOWN_PAD`). GroupNorm epsilon, groups and group rule are fields (`nn.norm`).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from talking_heads.nn import norm

Padding = Sequence[tuple[int, int]]

PAD1 = ((1, 1), (1, 1))
TAMING_DOWN_PAD = ((0, 1), (0, 1))


def upsample_nearest(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, 2H, 2W, C], each pixel repeated 2x2."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def downsample_average(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, H/2, W/2, C], the mean of each 2x2 block (H and W must be even)."""
  b, h, w, c = x.shape
  if h % 2 or w % 2:
    raise ValueError(f"downsample_average: spatial size must be even, got {h}x{w}")
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


class ResnetBlock(nn.Module):
  """taming's ResnetBlock, x [B, H, W, C] -> [B, H, W, D] (module docstring).

  Attributes:
    features: D.
    norm_eps, norm_groups, norm_rule: the GroupNorms `norm1`, `norm2` (`nn.norm.group_norm`).
  """
  features: int
  norm_eps: float = norm.TAMING_EPS
  norm_groups: int = 32
  norm_rule: norm.GroupRule = "divisor"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = lambda k, name: nn.Conv(self.features, (k, k), padding="SAME", dtype=self.dtype,
                                   param_dtype=self.param_dtype, name=name)
    group_norm = lambda c, name: norm.group_norm(
        c, epsilon=self.norm_eps, rule=self.norm_rule, groups=self.norm_groups,
        param_dtype=self.param_dtype, name=name)
    h = nn.swish(group_norm(x.shape[-1], "norm1")(x))
    h = conv(3, "conv1")(h)                                      # [B, H, W, D]
    h = nn.swish(group_norm(self.features, "norm2")(h))
    h = conv(3, "conv2")(h)
    if x.shape[-1] != self.features:
      x = conv(1, "nin_shortcut")(x)
    return (x + h).astype(self.dtype)


class Upsample(nn.Module):
  """Nearest x2, then a 3x3 `conv` to `features` when `use_conv`: [B, H, W, C] -> [B, 2H, 2W, D].

  Attributes:
    use_conv: apply the conv (without it the channel count cannot change).
    features: D; None keeps C.
    padding: the conv's ((top, bottom), (left, right)) zero padding.
  """
  use_conv: bool = True
  features: int | None = None
  padding: Padding = PAD1
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    d = self.features or x.shape[-1]
    x = upsample_nearest(x)                                      # [B, 2H, 2W, C]
    if self.use_conv:
      return nn.Conv(d, (3, 3), padding=self.padding, dtype=self.dtype,
                     param_dtype=self.param_dtype, name="conv")(x)
    if d != x.shape[-1]:
      raise ValueError(f"Upsample {self.name}: changing channels {x.shape[-1]} -> {d} needs "
                       "use_conv=True")
    return x


class Downsample(nn.Module):
  """A 3x3 stride-2 `conv` when `use_conv`, else 2x2 average pooling: -> [B, H/2, W/2, D].

  Attributes:
    use_conv: strided conv instead of pooling (without it the channel count cannot change).
    features: D; None keeps C.
    padding: the conv's ((top, bottom), (left, right)) zero padding: `PAD1` (ADM) or
      `TAMING_DOWN_PAD`.
  """
  use_conv: bool = True
  features: int | None = None
  padding: Padding = PAD1
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    d = self.features or x.shape[-1]
    if self.use_conv:
      return nn.Conv(d, (3, 3), strides=(2, 2), padding=self.padding, dtype=self.dtype,
                     param_dtype=self.param_dtype, name="conv")(x)
    if d != x.shape[-1]:
      raise ValueError(f"Downsample {self.name}: changing channels {x.shape[-1]} -> {d} needs "
                       "use_conv=True")
    return downsample_average(x)
