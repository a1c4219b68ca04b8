"""PIR component C: the inpainting renderer (a pix2pixHD generator that fills the masked frame
I_M from the feature image I_F) and pix2pixHD's multi-scale PatchGAN discriminator with
feature-matching outputs (Huang et al. 2023 §3.3 and supp. §3; Wang et al. 2018,
`NVIDIA/pix2pixHD` `models/networks.py`).

Layers: convolutions N(0, 0.02) with zero bias, reflect padding, InstanceNorm without affine
(eps 1e-5, float32), ReLU. Dimensions: B batch, S frame size, r I_F size, C I_F channels,
F base width (ngf), n down-samplings, b the bottleneck size.

InpaintingRenderer (I_M [B, S, S, 3] in [-1, 1], I_F [B, r, r, C]) -> frame [B, S, S, 3], tanh:
  global generator on I_M (average-pooled 3x3/2 once when `local_enhancer`, S_g = S / 2, else S):
    ReflPad3 Conv7 -> G, n x [Conv3 s2, doubling]                           [B, b, b, G 2^n]
    concat I_F average-pooled to b x b (r / b must be an integer) -> Conv3 -> G 2^n  (fusion)
    `global_blocks` ResnetBlocks
    n x [ConvTranspose3 s2, halving], each after the first taking the encoder's features of its
      resolution concatenated (`skips`, the main text's E-D skip connections)  [B, S_g, S_g, G]
    without the local enhancer: ReflPad3 Conv7 -> 3, tanh
  local enhancer (pix2pixHD LocalEnhancer, G = 2 F): ReflPad3 Conv7 3 -> F, Conv3 s2 F -> 2F on
    the full-size I_M, summed with the global output -> `local_blocks` ResnetBlocks ->
    ConvTranspose3 s2 -> F -> ReflPad3 Conv7 -> 3, tanh.
  Paper (spec §2.3): S 512, F 32 (G 64), n 3, b 32, I_F 32 x 64 x 64 pooled to 32 x 32, 4 + 3 blocks.

MultiscaleDiscriminator image [B, S, S, ch] -> per scale k = 0 .. num_scales - 1 (input average-
pooled 3x3/2 k times, count_include_pad=False) the NLayerDiscriminator's outputs
  [Conv4 s2 -> D, LReLU 0.2], [Conv4 s2 -> 2D, IN, LReLU] ... (num_layers - 1 such),
  [Conv4 s1 -> min(2^L D, 8 D), IN, LReLU], [Conv4 s1 -> 1] (padding 2 throughout),
the last being the patch logits; the others are the feature-matching features. (`patchgan.PatchGAN`
does not fit: padding 1, BatchNorm and no intermediate outputs.)
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

INIT_STD = 0.02
NORM_EPS = 1e-5
LEAKY_SLOPE = 0.2


def instance_norm(x: jax.Array, eps: float = NORM_EPS) -> jax.Array:
  """[B, H, W, C] normalised per sample and channel over H, W (no affine), in float32."""
  x32 = x.astype(jnp.float32)
  mean = x32.mean(axis=(1, 2), keepdims=True)
  var = jnp.square(x32 - mean).mean(axis=(1, 2), keepdims=True)
  return ((x32 - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


def downsample_avg(x: jax.Array) -> jax.Array:
  """AvgPool2d(3, stride 2, padding 1, count_include_pad=False): [B, H, W, C] -> [B, H/2, W/2, C]."""
  return nn.avg_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)), count_include_pad=False)


def _conv(features: int, kernel: int, stride: int, padding: Any, dtype: Any, param_dtype: Any,
          name: str) -> nn.Conv:
  return nn.Conv(features, (kernel, kernel), (stride, stride), padding=padding,
                 kernel_init=nn.initializers.normal(INIT_STD), dtype=dtype,
                 param_dtype=param_dtype, name=name)


class ReflectConv(nn.Module):
  """Reflect-pad K // 2, then a K x K convolution (stride 1)."""
  features: int
  kernel_size: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    p = self.kernel_size // 2
    x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
    return _conv(self.features, self.kernel_size, 1, "VALID", self.dtype, self.param_dtype,
                 "conv")(x)


class ResnetBlock(nn.Module):
  """x + [ReflectConv3, IN, ReLU, ReflectConv3, IN](x) (pix2pixHD ResnetBlock)."""
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    h = nn.relu(instance_norm(ReflectConv(c, 3, self.dtype, self.param_dtype, name="conv0")(x)))
    h = instance_norm(ReflectConv(c, 3, self.dtype, self.param_dtype, name="conv1")(h))
    return x + h


class InpaintingRenderer(nn.Module):
  """(I_M [B, S, S, 3], I_F [B, r, r, C]) -> frame [B, S, S, 3] in [-1, 1] (module docstring).

  Attributes:
    base_features: F (ngf; the global generator's width is 2 F with the local enhancer, else F).
    num_downsamples: n (3).
    global_blocks: ResnetBlocks at the bottleneck (paper 4).
    local_enhancer: pix2pixHD's coarse-to-fine LocalEnhancer around the global generator.
    local_blocks: the enhancer's ResnetBlocks (3).
    skips: encoder-decoder skip connections in the global generator.
    max_features: cap on the widths (pix2pixHD: none; its 512 comes from 64 * 2^3).
  """
  base_features: int = 32
  num_downsamples: int = 3
  global_blocks: int = 4
  local_enhancer: bool = True
  local_blocks: int = 3
  skips: bool = True
  max_features: int = 1024
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def bottleneck_size(self, image_size: int) -> int:
    size = image_size // 2 if self.local_enhancer else image_size
    return size // 2 ** self.num_downsamples

  @nn.compact
  def __call__(self, masked: jax.Array, features: jax.Array) -> jax.Array:
    b, s, _, _ = masked.shape
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    factor = 2 ** (self.num_downsamples + int(self.local_enhancer))
    if s % factor:
      raise ValueError(f"InpaintingRenderer: frame size {s} is not divisible by {factor}")
    bneck = self.bottleneck_size(s)
    r = features.shape[1]
    if features.shape[:3] != (b, r, r) or r % bneck:
      raise ValueError(f"InpaintingRenderer: I_F must be [B, r, r, C] with B = {b} and r a "
                       f"multiple of the {bneck} px bottleneck, got {features.shape}")
    width = lambda level: min(self.base_features * (2 if self.local_enhancer else 1) * 2 ** level,
                              self.max_features)
    act = lambda h: nn.relu(instance_norm(h))
    x = masked.astype(self.dtype)
    g = downsample_avg(x) if self.local_enhancer else x
    h = act(ReflectConv(width(0), 7, name="global_in", **kw)(g))
    encoder = [h]
    for i in range(1, self.num_downsamples + 1):
      h = act(_conv(width(i), 3, 2, ((1, 1), (1, 1)), name=f"global_down{i}", **kw)(h))
      encoder.append(h)
    pooled = nn.avg_pool(features.astype(self.dtype), (r // bneck,) * 2, (r // bneck,) * 2)
    h = jnp.concatenate([h, pooled], axis=-1)
    h = act(_conv(width(self.num_downsamples), 3, 1, ((1, 1), (1, 1)), name="fuse", **kw)(h))
    for i in range(self.global_blocks):
      h = ResnetBlock(name=f"global_block{i}", **kw)(h)
    for i in range(self.num_downsamples, 0, -1):
      if self.skips and i < self.num_downsamples:
        h = jnp.concatenate([h, encoder[i]], axis=-1)
      h = nn.ConvTranspose(width(i - 1), (3, 3), (2, 2), padding=((1, 2), (1, 2)),
                           kernel_init=nn.initializers.normal(INIT_STD), name=f"global_up{i}",
                           **kw)(h)
      h = act(h)                                                          # [B, ., ., width(i-1)]
    if self.local_enhancer:
      local = act(ReflectConv(self.base_features, 7, name="local_in", **kw)(x))
      local = act(_conv(2 * self.base_features, 3, 2, ((1, 1), (1, 1)), name="local_down",
                        **kw)(local))
      h = local + h                                                       # [B, S/2, S/2, 2F]
      for i in range(self.local_blocks):
        h = ResnetBlock(name=f"local_block{i}", **kw)(h)
      h = act(nn.ConvTranspose(self.base_features, (3, 3), (2, 2), padding=((1, 2), (1, 2)),
                               kernel_init=nn.initializers.normal(INIT_STD), name="local_up",
                               **kw)(h))
    out = ReflectConv(3, 7, name="out", **kw)(h)
    return jnp.tanh(out.astype(jnp.float32))                              # [B, S, S, 3]


class NLayerDiscriminator(nn.Module):
  """image [B, H, W, ch] -> (features ..., logits [B, h, w, 1]) (module docstring)."""
  base_features: int = 64
  num_layers: int = 3
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, ...]:
    conv = lambda f, stride, name: _conv(f, 4, stride, ((2, 2), (2, 2)), self.dtype,
                                         self.param_dtype, name)
    h = nn.leaky_relu(conv(self.base_features, 2, "conv0")(x.astype(self.dtype)), LEAKY_SLOPE)
    outputs = [h]
    f = self.base_features
    for n in range(1, self.num_layers + 1):
      f = min(2 * f, 8 * self.base_features)
      stride = 2 if n < self.num_layers else 1
      h = nn.leaky_relu(instance_norm(conv(f, stride, f"conv{n}")(h)), LEAKY_SLOPE)
      outputs.append(h)
    outputs.append(conv(1, 1, "logits")(h).astype(jnp.float32))
    return tuple(outputs)


class MultiscaleDiscriminator(nn.Module):
  """image [B, S, S, ch] -> per scale the NLayerDiscriminator's outputs (module docstring):
  `outputs[k][-1]` the logits of scale k, `outputs[k][:-1]` its features."""
  base_features: int = 64
  num_layers: int = 3
  num_scales: int = 3
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[tuple[jax.Array, ...], ...]:
    outputs = []
    for k in range(self.num_scales):
      outputs.append(NLayerDiscriminator(self.base_features, self.num_layers, self.dtype,
                                         self.param_dtype, name=f"scale{k}")(x))
      if k + 1 < self.num_scales:
        x = downsample_avg(x)
    return tuple(outputs)
