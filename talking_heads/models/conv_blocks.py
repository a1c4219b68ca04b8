"""Wav2Lip's convolution blocks, shared by SyncNet_color, the generator and its discriminator.

Dimensions: B batch, H, W spatial size, C input channels, D output channels. NHWC throughout.

The published blocks (Wav2Lip `models/conv.py`) are
  ConvBlock           conv (bias) -> BatchNorm -> [+ input] -> ReLU        (Wav2Lip `Conv2d`)
  ConvTransposeBlock  transposed conv (bias) -> BatchNorm -> ReLU          (`Conv2dTranspose`)
  PlainConvBlock      conv (bias) -> LeakyReLU(0.01)                       (`nonorm_Conv2d`)
with PyTorch's explicit symmetric padding; each module here names its layers `conv` and `bn`
so checkpoint converters map `conv_block.0` -> `conv` and `conv_block.1` -> `bn`.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

IntPair = Union[int, tuple[int, int]]

# PyTorch BatchNorm defaults: running = 0.9 running + 0.1 batch, eps 1e-5. (PyTorch's running
# variance takes the unbiased batch variance, flax's the biased one: training-only difference.)
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


class ConvSpec(NamedTuple):
  """A layer-table row: Wav2Lip's `Conv2d(cin, features, kernel, stride, padding, residual)`."""
  features: int
  kernel: IntPair
  stride: IntPair = 1
  padding: IntPair = 0
  residual: bool = False


class ConvTransposeSpec(NamedTuple):
  """Wav2Lip's `Conv2dTranspose(cin, features, kernel, stride, padding, output_padding)`."""
  features: int
  kernel: IntPair
  stride: IntPair = 1
  padding: IntPair = 0
  output_padding: IntPair = 0


def res(features: int, count: int) -> tuple[ConvSpec, ...]:
  """`count` residual 3x3 blocks of width `features` (stride 1, padding 1)."""
  return (ConvSpec(features, 3, 1, 1, True),) * count


def scale_widths(specs: Sequence[ConvSpec | ConvTransposeSpec], width: float,
                 minimum: int = 8) -> tuple[ConvSpec | ConvTransposeSpec, ...]:
  """A layer table with every layer's features multiplied by `width` (1.0: unchanged).

  Demo configs shrink the published networks this way to train in minutes on a CPU; the layer
  structure (kernels, strides, residual blocks) stays exactly the reference's.
  """
  if width == 1.0:
    return tuple(specs)
  return tuple(s._replace(features=max(minimum, int(round(s.features * width)))) for s in specs)


def pair(v: IntPair) -> tuple[int, int]:
  """An int or a pair -> a pair (PyTorch's convention for kernel, stride and padding)."""
  return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def batch_norm(use_running_average: bool, param_dtype: jnp.dtype, name: str) -> nn.BatchNorm:
  """A float32 BatchNorm with PyTorch's momentum and epsilon."""
  return nn.BatchNorm(use_running_average=use_running_average, momentum=BN_MOMENTUM,
                      epsilon=BN_EPSILON, dtype=jnp.float32, param_dtype=param_dtype, name=name)


class ConvBlock(nn.Module):
  """Conv -> BatchNorm -> optional residual add -> ReLU (Wav2Lip's `Conv2d`).

  Attributes:
    features: D.
    kernel_size: int or (kh, kw).
    strides: int or (sh, sw).
    padding: PyTorch-style symmetric zero padding, int or (ph, pw).
    residual: add the block input before the ReLU (needs D == C and stride 1).
  """
  features: int
  kernel_size: IntPair
  strides: IntPair = 1
  padding: IntPair = 0
  residual: bool = False
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, use_running_average: bool) -> jax.Array:
    ph, pw = pair(self.padding)
    y = nn.Conv(self.features, pair(self.kernel_size), pair(self.strides),
                padding=((ph, ph), (pw, pw)), dtype=self.dtype, param_dtype=self.param_dtype,
                name="conv")(x)                                       # [B, H', W', D]
    y = batch_norm(use_running_average, self.param_dtype, "bn")(y).astype(self.dtype)
    if self.residual:
      y = y + x
    return nn.relu(y)


class ConvTransposeBlock(nn.Module):
  """Transposed conv -> BatchNorm -> ReLU (Wav2Lip's `Conv2dTranspose`).

  Output size follows PyTorch's ConvTranspose2d:
  (H - 1) * stride - 2 * padding + kernel + output_padding.
  The kernel is stored as a forward convolution kernel [kh, kw, C, D] applied to the stride-dilated
  input, i.e. PyTorch's [C, D, kh, kw] weight transposed and flipped in space.

  Attributes:
    features: D.
    kernel_size: int or (kh, kw).
    strides: int or (sh, sw).
    padding: PyTorch's `padding` (removed from both output borders), int or (ph, pw).
    output_padding: PyTorch's `output_padding` (added to the bottom/right border), int or pair.
  """
  features: int
  kernel_size: IntPair
  strides: IntPair = 1
  padding: IntPair = 0
  output_padding: IntPair = 0
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, use_running_average: bool) -> jax.Array:
    kernel = pair(self.kernel_size)
    pads = tuple((k - 1 - p, k - 1 - p + op) for k, p, op in
                 zip(kernel, pair(self.padding), pair(self.output_padding)))
    y = nn.ConvTranspose(self.features, kernel, pair(self.strides), padding=pads,
                         dtype=self.dtype, param_dtype=self.param_dtype, name="conv")(x)
    y = batch_norm(use_running_average, self.param_dtype, "bn")(y).astype(self.dtype)
    return nn.relu(y)                                                 # [B, H', W', D]


class PlainConvBlock(nn.Module):
  """Conv -> LeakyReLU(0.01), no normalisation (Wav2Lip's `nonorm_Conv2d`).

  Attributes:
    features: D.
    kernel_size: int or (kh, kw).
    strides: int or (sh, sw).
    padding: PyTorch-style symmetric zero padding, int or (ph, pw).
  """
  features: int
  kernel_size: IntPair
  strides: IntPair = 1
  padding: IntPair = 0
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    ph, pw = pair(self.padding)
    y = nn.Conv(self.features, pair(self.kernel_size), pair(self.strides),
                padding=((ph, ph), (pw, pw)), dtype=self.dtype, param_dtype=self.param_dtype,
                name="conv")(x)                                       # [B, H', W', D]
    return nn.leaky_relu(y, negative_slope=0.01)


def conv_blocks(specs: Sequence[ConvSpec | ConvTransposeSpec], dtype: jnp.dtype,
                param_dtype: jnp.dtype) -> list[nn.Module]:
  """Blocks for a layer table (assign the list in `setup`: names become `<attr>_<index>`)."""
  blocks = []
  for s in specs:
    if isinstance(s, ConvTransposeSpec):
      blocks.append(ConvTransposeBlock(s.features, s.kernel, s.stride, s.padding, s.output_padding,
                                       dtype=dtype, param_dtype=param_dtype))
    else:
      blocks.append(ConvBlock(s.features, s.kernel, s.stride, s.padding, s.residual, dtype=dtype,
                              param_dtype=param_dtype))
  return blocks


def apply_blocks(blocks: Sequence[nn.Module], x: jax.Array, use_running_average: bool) -> jax.Array:
  """Runs blocks taking `use_running_average` in sequence."""
  for block in blocks:
    x = block(x, use_running_average=use_running_average)
  return x
