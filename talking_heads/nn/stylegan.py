"""StyleGAN2 layers (Karras et al. 2020), as `NVlabs/stylegan2-ada-pytorch` `training/networks.py`
defines them: equalised learning rate, modulated convolution, noise, ToRGB skips, the resnet
discriminator. Shared by RADIO's decoder and discriminator and PIR's tri-plane backbone.

Dimensions: B batch, H, W spatial size, C input channels, D output channels, Z style (w) width,
K kernel size, G minibatch-std group size. NHWC throughout.

Equalised learning rate: every weight is stored ~ N(0, 1) / lr_mul and multiplied at run time by
lr_mul / sqrt(fan_in) (fan_in = C K K), every bias by lr_mul (stored as `bias_init`), so each
parameter's effective step under Adam is the same whatever the layer's fan-in.
Activations: "lrelu" = leaky ReLU(0.2) * sqrt(2) (the gain keeps the second moment), "linear".
Resampling (upfirdn2d semantics): a separable FIR filter, by default [1, 3, 3, 1] normalised to
sum 1 (`RESAMPLE_FILTER`), with zero padding. `upsample_2x` inserts zeros and filters with gain 4
(the filter [1, 1] gives nearest-neighbour); `downsample_2x` filters and keeps every second
sample (the filter [1, 1] gives 2x2 average pooling). The filter is a field everywhere, so a
network may use average pooling where its paper says so.

  EqualDense           x [..., C] -> [..., D]                       (ada FullyConnectedLayer)
  EqualConv            x [B, H, W, C] -> [B, H', W', D]; `down`: blur then a stride-2 conv
                                                                    (ada Conv2dLayer)
  ModulatedConv        x, styles [B, C] -> per-sample weights w * s over input channels,
                       optionally demodulated: d = rsqrt(sum_{C,K,K} (w s)^2 + 1e-8) per output
                       channel (ada modulated_conv2d). Computed in the scale-input /
                       shared-weight conv / scale-output form (ada's non-fused path, the one it
                       trains with): exact for linear convolution and a plain batched conv on
                       every accelerator, where the grouped per-sample form needs B groups.
                       `up` (ada conv2d_resample): K > 1: the stride-2 transposed conv, then
                       the FIR with gain 4 and ada's paddings; K = 1: `upsample_2x`, then the
                       conv (ada's 1x1 fast path). Both equal zero insertion, padding and the
                       FIR, then a valid conv (`upsample_conv_paddings`).
  NoiseInjection       x + strength * n, n ~ N(0, 1) [B, H, W, 1] per call, strength init 0
  StyledConv           affine(w) -> ModulatedConv -> noise -> bias -> lrelu   (ada SynthesisLayer)
  ToRGB                affine(w) / ... -> 1x1 ModulatedConv without demodulation -> bias, plus the
                       upsampled skip image                                   (ada ToRGBLayer)
  ResidualDownBlock    (conv3x3 C->C, lrelu; conv3x3 C->D down, lrelu) + (down, conv1x1 C->D no
                       bias), times sqrt(0.5)                 (ada DiscriminatorBlock 'resnet')
  minibatch_stddev     appends the std over groups of G samples, averaged per group (ada
                       MinibatchStdLayer)
  Discriminator        fromRGB 1x1; ResidualDownBlocks down to the final resolution; epilogue
                       mbstd -> conv3x3 -> FC -> FC(1)     (ada Discriminator, 'resnet')
Channel rule (`channels_at`): min(channel_max, channel_base / R), R the resolution rounded up to
a power of two (ada's min(32768 / res, 512); non-powers of two such as 96 and 192 get the width
of 128 and 256, i.e. rosinality's channel_multiplier 2).
"""

from __future__ import annotations

import math
from typing import Any, Literal, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Activation = Literal["linear", "lrelu"]

ACTIVATIONS = ("linear", "lrelu")
RESAMPLE_FILTER = (1, 3, 3, 1)
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
DEMOD_EPS = 1e-8


def activate(x: jax.Array, activation: Activation) -> jax.Array:
  """"linear" or "lrelu" (leaky ReLU 0.2 times sqrt(2))."""
  if activation == "linear":
    return x
  if activation == "lrelu":
    return jax.nn.leaky_relu(x, LRELU_SLOPE) * jnp.asarray(LRELU_GAIN, x.dtype)
  raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
  """The channel rule of the module docstring."""
  return min(channel_max, channel_base // (1 << max(0, math.ceil(math.log2(resolution)))))


# ------------------------------------------------------------------------------ resampling


def _normalised_taps(taps: Sequence[float]) -> np.ndarray:
  f = np.asarray(taps, np.float64)
  if f.ndim != 1 or len(f) < 1 or f.sum() == 0:
    raise ValueError(f"resample filter must be a non-empty 1-D tap list with non-zero sum, "
                     f"got {taps!r}")
  return f / f.sum()


def _fir_axis(x: jax.Array, taps: np.ndarray, axis: int, pad: tuple[int, int],
              stride: int = 1) -> jax.Array:
  """Zero-pads `axis` by `pad`, convolves it with `taps`, keeps every `stride`-th output."""
  widths = [(0, 0)] * x.ndim
  widths[axis] = pad
  xp = jnp.pad(x, widths)
  n = (xp.shape[axis] - len(taps)) // stride + 1
  out = 0.0
  for k, tap in enumerate(taps[::-1]):        # convolution: the filter reversed
    piece = jax.lax.slice_in_dim(xp, k, k + stride * (n - 1) + 1, stride, axis)
    out = out + piece * jnp.asarray(tap, x.dtype)
  return out


def blur(x: jax.Array, taps: Sequence[float], pad: tuple[int, int], gain: float = 1.0,
         stride: int = 1) -> jax.Array:
  """[B, H, W, C] -> the separable FIR (taps normalised to sum `gain` per image, i.e.
  sqrt(gain) per axis) over H and W with zero padding `pad` = (before, after) on both axes,
  keeping every `stride`-th sample."""
  f = _normalised_taps(taps) * math.sqrt(gain)
  return _fir_axis(_fir_axis(x, f, 1, pad, stride), f, 2, pad, stride)


def upsample_2x(x: jax.Array, taps: Sequence[float] = RESAMPLE_FILTER) -> jax.Array:
  """[B, H, W, C] -> [B, 2H, 2W, C]: zeros inserted after each sample, then the FIR with gain 4
  (upfirdn2d.upsample2d)."""
  b, h, w, c = x.shape
  fw = len(taps)
  z = jnp.zeros_like(x)
  x = jnp.stack([x, z], axis=2).reshape(b, 2 * h, w, c)
  x = jnp.stack([x, jnp.zeros_like(x)], axis=3).reshape(b, 2 * h, 2 * w, c)
  return blur(x, taps, ((fw + 1) // 2, (fw - 2) // 2), gain=4.0)


def downsample_2x(x: jax.Array, taps: Sequence[float] = RESAMPLE_FILTER) -> jax.Array:
  """[B, H, W, C] -> [B, H/2, W/2, C] (H, W even): the FIR, then every second sample
  (upfirdn2d.downsample2d)."""
  if x.shape[1] % 2 or x.shape[2] % 2:
    raise ValueError(f"downsample_2x: spatial size must be even, got {x.shape[1]}x{x.shape[2]}")
  fw = len(taps)
  return blur(x, taps, ((fw - 1) // 2, (fw - 2) // 2), stride=2)


# ------------------------------------------------------------------------------ layers


def _equalised_normal(lr_mul: float):
  def init(key, shape, dtype):
    return jax.random.normal(key, shape, dtype) / jnp.asarray(lr_mul, dtype)
  return init


class EqualDense(nn.Module):
  """x [..., C] -> activation(x (kernel lr_mul / sqrt(C)) + bias lr_mul) [..., D].

  Attributes:
    features: D.
    use_bias: add the bias.
    bias_init: the bias parameter's initial value (1 for style affines).
    lr_mul: learning-rate multiplier (0.01 in StyleGAN's mapping network).
    activation: "linear" or "lrelu".
  """
  features: int
  use_bias: bool = True
  bias_init: float = 0.0
  lr_mul: float = 1.0
  activation: Activation = "linear"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    fan_in = x.shape[-1]
    kernel = self.param("kernel", _equalised_normal(self.lr_mul), (fan_in, self.features),
                        self.param_dtype)
    w = (kernel * (self.lr_mul / math.sqrt(fan_in))).astype(self.dtype)
    y = x.astype(self.dtype) @ w                                       # [..., D]
    if self.use_bias:
      bias = self.param("bias", nn.initializers.constant(self.bias_init), (self.features,),
                        self.param_dtype)
      y = y + (bias * self.lr_mul).astype(self.dtype)
    return activate(y, self.activation)


def _conv(x: jax.Array, w: jax.Array, *, stride: int = 1,
          padding: Sequence[tuple[int, int]]) -> jax.Array:
  return jax.lax.conv_general_dilated(x, w, (stride, stride), padding,
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def upsample_conv_paddings(kernel_size: int, taps: Sequence[float]) -> tuple[int, int]:
  """(before, after) zero padding of the zero-inserted [2H] signal for StyleGAN2's upsampling
  conv (ada conv2d_resample with up = 2, padding K // 2): pad, the FIR with gain 4, then a valid
  K x K conv give 2H outputs."""
  p, fw = kernel_size // 2, len(taps)
  return p + (fw + 1) // 2, p + (fw - 2) // 2


def _conv_up_2x(x: jax.Array, w: jax.Array, taps: Sequence[float]) -> jax.Array:
  """[B, H, W, C], [K, K, C, D] -> [B, 2H, 2W, D], in ada's order: the stride-2 transposed conv
  (every output it touches, [2H + K - 2]), then the FIR with gain 4 on what remains of
  `upsample_conv_paddings` after the conv's own K - 1 (cropping where that is negative)."""
  k = w.shape[0]
  y = jax.lax.conv_general_dilated(x, w, (1, 1), ((k - 1, k - 1), (k - 1, k - 1)),
                                   lhs_dilation=(2, 2),
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  # The zero-inserted signal has one more trailing zero than the lhs-dilated one.
  before, after = upsample_conv_paddings(k, taps)
  before, after = before - (k - 1), after + 1 - (k - 1)
  start = max(0, -before)
  y = y[:, start:y.shape[1] - max(0, -after), start:y.shape[2] - max(0, -after)]
  return blur(y, taps, (max(before, 0), max(after, 0)), gain=4.0)


class EqualConv(nn.Module):
  """x [B, H, W, C] -> activation(conv(x, kernel lr_mul / sqrt(C K K)) + bias lr_mul), size kept
  (padding K // 2), or halved with `down` (ada Conv2dLayer: the FIR with the conv's padding added,
  then a stride-2 convolution; for K = 1 the same as `downsample_2x` then the 1x1 conv).

  Attributes:
    features: D.
    kernel_size: K (odd).
    use_bias, lr_mul, activation: as `EqualDense`.
    down: halve H and W.
    resample_filter: FIR taps of `down`.
  """
  features: int
  kernel_size: int = 3
  use_bias: bool = True
  lr_mul: float = 1.0
  activation: Activation = "linear"
  down: bool = False
  resample_filter: Sequence[float] = RESAMPLE_FILTER
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, c = self.kernel_size, x.shape[-1]
    if k % 2 == 0:
      raise ValueError(f"EqualConv {self.name}: kernel_size must be odd, got {k}")
    kernel = self.param("kernel", _equalised_normal(self.lr_mul), (k, k, c, self.features),
                        self.param_dtype)
    w = (kernel * (self.lr_mul / math.sqrt(c * k * k))).astype(self.dtype)
    x = x.astype(self.dtype)
    p = k // 2
    if self.down:
      fw = len(self.resample_filter)
      x = blur(x, self.resample_filter, (p + (fw - 1) // 2, p + (fw - 2) // 2))
      y = _conv(x, w, stride=2, padding=((0, 0), (0, 0)))             # [B, H/2, W/2, D]
    else:
      y = _conv(x, w, padding=((p, p), (p, p)))                        # [B, H, W, D]
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), self.param_dtype)
      y = y + (bias * self.lr_mul).astype(self.dtype)
    return activate(y, self.activation)


class ModulatedConv(nn.Module):
  """x [B, H, W, C], styles [B, C] -> [B, H, W, D] (or [B, 2H, 2W, D] with `up`); no bias.

  The per-sample weight of sample b is w'[k, k, c, d] = kernel / sqrt(C K K) * styles[b, c],
  demodulated (when `demodulate`) by rsqrt(sum_{k, k, c} w'^2 + 1e-8) per output channel d.
  `up`: StyleGAN2's transposed conv then FIR (K > 1), or FIR then conv (K = 1) (module
  docstring).

  Attributes:
    features: D.
    kernel_size: K (odd).
    demodulate: normalise each output channel's per-sample weights (off in ToRGB).
    up: double H and W.
    resample_filter: FIR taps of `up`.
  """
  features: int
  kernel_size: int = 3
  demodulate: bool = True
  up: bool = False
  resample_filter: Sequence[float] = RESAMPLE_FILTER
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, styles: jax.Array) -> jax.Array:
    b, _, _, c = x.shape
    k = self.kernel_size
    if k % 2 == 0:
      raise ValueError(f"ModulatedConv {self.name}: kernel_size must be odd, got {k}")
    if styles.shape != (b, c):
      raise ValueError(f"ModulatedConv {self.name}: styles must be [B, C] = [{b}, {c}], got "
                       f"{styles.shape}")
    kernel = self.param("kernel", nn.initializers.normal(1.0), (k, k, c, self.features),
                        self.param_dtype)
    w = kernel.astype(jnp.float32) / math.sqrt(c * k * k)             # [K, K, C, D]
    styles = styles.astype(jnp.float32)
    x = (x * styles[:, None, None, :].astype(x.dtype)).astype(self.dtype)
    p = k // 2
    if self.up and k > 1:
      y = _conv_up_2x(x, w.astype(self.dtype), self.resample_filter)  # [B, 2H, 2W, D]
    else:
      if self.up:
        x = upsample_2x(x, self.resample_filter)                       # [B, 2H, 2W, C]
      y = _conv(x, w.astype(self.dtype), padding=((p, p), (p, p)))     # [B, H', W', D]
    if self.demodulate:
      # sum over (k, k, c) of (w s)^2 = s^2 @ sum_{k, k} w^2, per sample and output channel.
      power = (styles ** 2) @ jnp.sum(w ** 2, axis=(0, 1))             # [B, D]
      y = y * jax.lax.rsqrt(power + DEMOD_EPS)[:, None, None, :].astype(y.dtype)
    return y


class NoiseInjection(nn.Module):
  """x [B, H, W, C] -> x + strength * n with n ~ N(0, 1) [B, H, W, 1] from the "noise" rng
  stream when `add_noise`, else x unchanged (ada's noise_mode 'random' / 'none'); `strength`
  is a learned scalar initialised to 0."""
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, add_noise: bool) -> jax.Array:
    strength = self.param("strength", nn.initializers.zeros_init(), (), self.param_dtype)
    if not add_noise:
      return x
    noise = jax.random.normal(self.make_rng("noise"), x.shape[:3] + (1,), jnp.float32)
    return x + (noise * strength).astype(x.dtype)


class StyledConv(nn.Module):
  """x [B, H, W, C], w [B, Z] -> lrelu(ModulatedConv(x, affine(w)) + noise + bias)
  [B, H, W, D] ([B, 2H, 2W, D] with `up`). The affine is an `EqualDense` Z -> C with bias init 1.

  Attributes:
    features: D.
    kernel_size: K.
    up: double H and W.
    resample_filter: FIR taps of `up`.
    use_noise: with a `NoiseInjection` (applied when called with add_noise=True).
    activation: "lrelu" (StyleGAN2) or "linear".
  """
  features: int
  kernel_size: int = 3
  up: bool = False
  resample_filter: Sequence[float] = RESAMPLE_FILTER
  use_noise: bool = True
  activation: Activation = "lrelu"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, w: jax.Array, add_noise: bool = False) -> jax.Array:
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    styles = EqualDense(x.shape[-1], bias_init=1.0, name="affine", **kw)(w)      # [B, C]
    y = ModulatedConv(self.features, self.kernel_size, up=self.up,
                      resample_filter=self.resample_filter, name="conv", **kw)(x, styles)
    if self.use_noise:
      y = NoiseInjection(self.param_dtype, name="noise")(y, add_noise)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), self.param_dtype)
    return activate(y + bias.astype(y.dtype), self.activation)


class ToRGB(nn.Module):
  """x [B, H, W, C], w [B, Z] (+ skip [B, H/2, W/2, D] or [B, H, W, D]) -> [B, H, W, D]:
  a 1x1 modulated conv without demodulation plus bias, plus the skip image, upsampled by
  `upsample_2x` when it is at half resolution (StyleGAN2's 'skip' architecture).

  Attributes:
    features: D (3 for RGB).
    resample_filter: FIR taps of the skip's upsampling.
  """
  features: int = 3
  resample_filter: Sequence[float] = RESAMPLE_FILTER
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, w: jax.Array, skip: jax.Array | None = None) -> jax.Array:
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    styles = EqualDense(x.shape[-1], bias_init=1.0, name="affine", **kw)(w)      # [B, C]
    y = ModulatedConv(self.features, 1, demodulate=False, name="conv", **kw)(x, styles)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), self.param_dtype)
    y = y + bias.astype(y.dtype)                                                  # [B, H, W, D]
    if skip is None:
      return y
    if skip.shape[1:3] != y.shape[1:3]:
      skip = upsample_2x(skip, self.resample_filter)
    if skip.shape != y.shape:
      raise ValueError(f"ToRGB {self.name}: skip image {skip.shape} does not match {y.shape}")
    return y + skip.astype(y.dtype)


class ResidualDownBlock(nn.Module):
  """x [B, H, W, C] -> [B, H/2, W/2, D], the StyleGAN2 resnet discriminator block (module
  docstring). With resample_filter (1, 1) the skip path average-pools 2x2 and `conv1` is a
  stride-2 conv over the 2x2 box-filtered map.

  Attributes:
    features: D.
    resample_filter: FIR taps of the downsampling.
  """
  features: int
  resample_filter: Sequence[float] = RESAMPLE_FILTER
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kw = dict(resample_filter=self.resample_filter, dtype=self.dtype,
              param_dtype=self.param_dtype)
    skip = EqualConv(self.features, 1, use_bias=False, down=True, name="skip", **kw)(x)
    h = EqualConv(x.shape[-1], 3, activation="lrelu", name="conv0", **kw)(x)     # [B, H, W, C]
    h = EqualConv(self.features, 3, activation="lrelu", down=True, name="conv1", **kw)(h)
    return (skip + h) * jnp.asarray(math.sqrt(0.5), h.dtype)                     # [B, H/2, W/2, D]


def minibatch_stddev(x: jax.Array, group_size: int = 4, num_channels: int = 1) -> jax.Array:
  """x [B, H, W, C] -> [B, H, W, C + F], F = num_channels: for each group of G samples (G the
  largest divisor of B not above `group_size`; sample i is in group i mod B/G, as ada reshapes),
  the std over the group of every feature, averaged over H, W and the C/F channels of each of
  the F channel groups, appended as constant maps. Computed in float32."""
  b, h, w, c = x.shape
  if c % num_channels:
    raise ValueError(f"minibatch_stddev: {c} channels do not split into {num_channels} groups")
  g = max(d for d in range(1, min(group_size, b) + 1) if b % d == 0)
  y = x.astype(jnp.float32).reshape(g, b // g, h, w, num_channels, c // num_channels)
  y = jnp.sqrt(jnp.var(y, axis=0) + 1e-8)                       # [B/G, H, W, F, C/F]
  y = y.mean(axis=(1, 2, 4))                                    # [B/G, F]
  y = jnp.tile(y, (g, 1))[:, None, None, :]                     # [B, 1, 1, F]
  y = jnp.broadcast_to(y, (b, h, w, num_channels)).astype(x.dtype)
  return jnp.concatenate([x, y], axis=-1)


class Discriminator(nn.Module):
  """images [B, S, S, 3] -> logits [B], the StyleGAN2 resnet discriminator (module docstring).

  Resolutions: S, S/2, ..., down to `final_resolution` (None: halve while the result is even
  and at least 4, e.g. 4 from 256, 6 from 192 and 96); widths by `channels_at`.

  Attributes:
    channel_base, channel_max: the channel rule.
    final_resolution: the epilogue's resolution.
    mbstd_group_size, mbstd_channels: `minibatch_stddev`'s G and F.
    resample_filter: FIR taps of the downsampling.
  """
  channel_base: int = 32768
  channel_max: int = 512
  final_resolution: int | None = None
  mbstd_group_size: int = 4
  mbstd_channels: int = 1
  resample_filter: Sequence[float] = RESAMPLE_FILTER
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def resolutions(self, size: int) -> list[int]:
    """[S, S/2, ..., final]: the resolutions of fromRGB and the blocks' outputs."""
    out = [size]
    if self.final_resolution is None:
      while out[-1] % 2 == 0 and out[-1] // 2 >= 4:
        out.append(out[-1] // 2)
    else:
      while out[-1] > self.final_resolution and out[-1] % 2 == 0:
        out.append(out[-1] // 2)
      if out[-1] != self.final_resolution:
        raise ValueError(f"Discriminator: {size} px does not halve to final_resolution "
                         f"{self.final_resolution}")
    return out

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    b, s, s2, _ = images.shape
    if s != s2:
      raise ValueError(f"Discriminator: images must be square [B, S, S, C], got {images.shape}")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    ch = lambda r: channels_at(r, self.channel_base, self.channel_max)
    res = self.resolutions(s)
    h = EqualConv(ch(s), 1, activation="lrelu", name="from_rgb", **kw)(images)    # [B, S, S, .]
    for r in res[1:]:
      h = ResidualDownBlock(ch(r), self.resample_filter, name=f"block_{2 * r}", **kw)(h)
    h = minibatch_stddev(h, self.mbstd_group_size, self.mbstd_channels)          # [B, r, r, .+F]
    h = EqualConv(ch(res[-1]), 3, activation="lrelu", name="epilogue_conv", **kw)(h)
    h = EqualDense(ch(res[-1]), activation="lrelu", name="epilogue_fc", **kw)(h.reshape(b, -1))
    return EqualDense(1, name="out", **kw)(h)[:, 0].astype(jnp.float32)           # [B]
