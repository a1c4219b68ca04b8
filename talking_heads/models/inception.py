"""pytorch-fid's InceptionV3: the TF 2015-12-05 Inception port whose pool features define FID.

The network is torchvision's Inception3 with 1008 classes and no auxiliary head, with the mixed
blocks replaced the way pytorch-fid replaces them to match the TensorFlow graph FID was defined on:
the average pools inside FIDInceptionA/C/E_1 exclude padding from the count
(count_include_pad=False) and the last block (E_2, `Mixed_7c`) pools with a 3x3 max-pool instead.
Module names repeat the torch attribute names (`Conv2d_1a_3x3`, `Mixed_5b.branch5x5_1`, each
BasicConv2d with `conv` and `bn`) so `pretrained.inception` maps the public checkpoint
`pt_inception-2015-12-05-6726825d.pth` one to one.

Input as pytorch-fid's `InceptionV3` wrapper takes it: RGB in [0, 1], bilinearly resized to
299x299 (align_corners=False, no antialiasing), then scaled to [-1, 1].

Dimensions: B batch, H, W image size, C channels (NHWC), K classes (1008).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_CLASSES = 1008
_BN_EPS = 1e-3

# Convs use HIGHEST by default: on TPU/GPU the default f32 precision (bf16 passes / TF32) moves FID
# features by far more than the 1e-4 the converted network is checked to.
_DEFAULT_PRECISION = jax.lax.Precision.HIGHEST


def _pad(padding: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
  return ((padding[0], padding[0]), (padding[1], padding[1]))


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
  """3x3 stride-1 average pool, padding 1, padded cells excluded from the count (FID blocks)."""
  return nn.avg_pool(x, (3, 3), (1, 1), padding=_pad((1, 1)), count_include_pad=False)


def _max_pool_3x3(x: jax.Array) -> jax.Array:
  """3x3 stride-1 max pool, padding 1 (FIDInceptionE_2); the padding is -inf, never the max."""
  return nn.max_pool(x, (3, 3), (1, 1), padding=_pad((1, 1)))


def _max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  return nn.max_pool(x, (3, 3), (2, 2), padding="VALID")


def resize_bilinear(images: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
  """[B, H, W, C] -> [B, size, size, C] as torch `F.interpolate(bilinear, align_corners=False)`.

  Half-pixel sample positions and no antialiasing when shrinking (jax.image.resize antialiases
  by default, torch does not). Same-size input is returned unchanged, as torch returns it.
  """
  b, h, w, c = images.shape
  if (h, w) == (size, size):
    return images
  return jax.image.resize(images, (b, size, size, c), method="bilinear", antialias=False)


class BasicConv(nn.Module):
  """torchvision BasicConv2d: conv without bias -> BatchNorm (eps 1e-3) -> ReLU.

  Attributes:
    features: output channels.
    kernel_size: (kh, kw).
    strides: (sh, sw).
    padding: symmetric zero padding (ph, pw).
  """
  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: tuple[int, int] = (0, 0)
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  precision: Any = _DEFAULT_PRECISION

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool) -> jax.Array:
    x = nn.Conv(self.features, self.kernel_size, self.strides, padding=_pad(self.padding),
                use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype,
                precision=self.precision, name="conv")(x)     # [B, H', W', features]
    # Normalisation in float32 (torch BatchNorm momentum 0.1 is flax momentum 0.9).
    x = nn.BatchNorm(use_running_average=use_running_average, momentum=0.9, epsilon=_BN_EPS,
                     dtype=jnp.float32, param_dtype=self.param_dtype, name="bn")(x)
    return nn.relu(x).astype(self.dtype)


class _Block(nn.Module):
  """Base of the mixed blocks: builds named BasicConvs sharing dtype and precision."""
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  precision: Any = _DEFAULT_PRECISION

  def conv(self, name: str, features: int, kernel: tuple[int, int],
           strides: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0)) -> BasicConv:
    return BasicConv(features, kernel, strides, padding, dtype=self.dtype,
                     param_dtype=self.param_dtype, precision=self.precision, name=name)


class InceptionA(_Block):
  """FIDInceptionA (Mixed_5b/c/d): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1 -> 224 + pool."""
  pool_features: int = 32

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool) -> jax.Array:
    u = use_running_average
    b1 = self.conv("branch1x1", 64, (1, 1))(x, u)
    b5 = self.conv("branch5x5_1", 48, (1, 1))(x, u)
    b5 = self.conv("branch5x5_2", 64, (5, 5), padding=(2, 2))(b5, u)
    b3 = self.conv("branch3x3dbl_1", 64, (1, 1))(x, u)
    b3 = self.conv("branch3x3dbl_2", 96, (3, 3), padding=(1, 1))(b3, u)
    b3 = self.conv("branch3x3dbl_3", 96, (3, 3), padding=(1, 1))(b3, u)
    bp = self.conv("branch_pool", self.pool_features, (1, 1))(_avg_pool_3x3(x), u)
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)   # [B, H, W, 224 + pool_features]


class InceptionB(_Block):
  """InceptionB (Mixed_6a), grid reduction: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2 -> 480 + C_in."""

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool) -> jax.Array:
    u = use_running_average
    b3 = self.conv("branch3x3", 384, (3, 3), strides=(2, 2))(x, u)
    bd = self.conv("branch3x3dbl_1", 64, (1, 1))(x, u)
    bd = self.conv("branch3x3dbl_2", 96, (3, 3), padding=(1, 1))(bd, u)
    bd = self.conv("branch3x3dbl_3", 96, (3, 3), strides=(2, 2))(bd, u)
    return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)   # [B, (H-3)/2+1, ., 768]


class InceptionC(_Block):
  """FIDInceptionC (Mixed_6b..e): factorised 7x7 branches of width channels_7x7 -> 768."""
  channels_7x7: int = 128

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool) -> jax.Array:
    u, c7 = use_running_average, self.channels_7x7
    b1 = self.conv("branch1x1", 192, (1, 1))(x, u)
    b7 = self.conv("branch7x7_1", c7, (1, 1))(x, u)
    b7 = self.conv("branch7x7_2", c7, (1, 7), padding=(0, 3))(b7, u)
    b7 = self.conv("branch7x7_3", 192, (7, 1), padding=(3, 0))(b7, u)
    bd = self.conv("branch7x7dbl_1", c7, (1, 1))(x, u)
    bd = self.conv("branch7x7dbl_2", c7, (7, 1), padding=(3, 0))(bd, u)
    bd = self.conv("branch7x7dbl_3", c7, (1, 7), padding=(0, 3))(bd, u)
    bd = self.conv("branch7x7dbl_4", c7, (7, 1), padding=(3, 0))(bd, u)
    bd = self.conv("branch7x7dbl_5", 192, (1, 7), padding=(0, 3))(bd, u)
    bp = self.conv("branch_pool", 192, (1, 1))(_avg_pool_3x3(x), u)
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)   # [B, H, W, 768]


class InceptionD(_Block):
  """InceptionD (Mixed_7a), grid reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2 -> 1280."""

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool) -> jax.Array:
    u = use_running_average
    b3 = self.conv("branch3x3_1", 192, (1, 1))(x, u)
    b3 = self.conv("branch3x3_2", 320, (3, 3), strides=(2, 2))(b3, u)
    b7 = self.conv("branch7x7x3_1", 192, (1, 1))(x, u)
    b7 = self.conv("branch7x7x3_2", 192, (1, 7), padding=(0, 3))(b7, u)
    b7 = self.conv("branch7x7x3_3", 192, (7, 1), padding=(3, 0))(b7, u)
    b7 = self.conv("branch7x7x3_4", 192, (3, 3), strides=(2, 2))(b7, u)
    return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)   # [B, (H-3)/2+1, ., 1280]


class InceptionE(_Block):
  """FIDInceptionE_1 (Mixed_7b, avg-pool branch) / E_2 (Mixed_7c, max-pool branch) -> 2048.

  Attributes:
    pool: "avg" (3x3 average excluding padding) or "max" (3x3 max, stride 1, padding 1).
  """
  pool: str = "avg"

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool) -> jax.Array:
    u = use_running_average
    b1 = self.conv("branch1x1", 320, (1, 1))(x, u)
    b3 = self.conv("branch3x3_1", 384, (1, 1))(x, u)
    b3 = jnp.concatenate([self.conv("branch3x3_2a", 384, (1, 3), padding=(0, 1))(b3, u),
                          self.conv("branch3x3_2b", 384, (3, 1), padding=(1, 0))(b3, u)], -1)
    bd = self.conv("branch3x3dbl_1", 448, (1, 1))(x, u)
    bd = self.conv("branch3x3dbl_2", 384, (3, 3), padding=(1, 1))(bd, u)
    bd = jnp.concatenate([self.conv("branch3x3dbl_3a", 384, (1, 3), padding=(0, 1))(bd, u),
                          self.conv("branch3x3dbl_3b", 384, (3, 1), padding=(1, 0))(bd, u)], -1)
    if self.pool == "avg":
      pooled = _avg_pool_3x3(x)
    elif self.pool == "max":
      pooled = _max_pool_3x3(x)
    else:
      raise ValueError(f"InceptionE: pool must be 'avg' or 'max', got {self.pool!r}")
    bp = self.conv("branch_pool", 192, (1, 1))(pooled, u)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)   # [B, H, W, 2048]


class FIDInceptionV3(nn.Module):
  """pytorch-fid's InceptionV3 (TF port, 1008 classes) returning pool3 features and logits.

  Spatial sizes for the 299x299 input: 149 (Conv2d_1a, stride 2), 147, 147, 73 (max-pool), 73,
  71, 35 (max-pool), 35 (Mixed_5*), 17 (Mixed_6*), 8 (Mixed_7*), then a global average pool.

  Attributes:
    resize_input: bilinearly resize to 299x299 first, as pytorch-fid does (its default).
    normalize_input: map [0, 1] inputs to [-1, 1] (2x - 1), as pytorch-fid does (its default).
    num_classes: K of the `fc` head (1008 in the TF graph).
    precision: conv/dense precision (HIGHEST by default for faithful features on accelerators).
  """
  resize_input: bool = True
  normalize_input: bool = True
  num_classes: int = NUM_CLASSES
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  precision: Any = _DEFAULT_PRECISION

  @nn.compact
  def __call__(self, images: jax.Array, use_running_average: bool = True
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """[B, H, W, 3] RGB in [0, 1] -> (pool3 features [B, 2048], {"logits": [B, K]}).

    Without `resize_input`, H and W must be at least 75 (the smallest size the stem and the
    three grid reductions leave a cell of).
    """
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"FIDInceptionV3: expected RGB images [B, H, W, 3], got {images.shape}")
    x = images.astype(jnp.float32)
    if self.resize_input:
      x = resize_bilinear(x)                                   # [B, 299, 299, 3]
    elif min(x.shape[1:3]) < 75:
      raise ValueError(f"FIDInceptionV3: images of {x.shape[1]}x{x.shape[2]} are smaller than "
                       "75x75; enable resize_input")
    if self.normalize_input:
      x = 2.0 * x - 1.0
    x = x.astype(self.dtype)
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision)
    u = use_running_average

    x = BasicConv(32, (3, 3), (2, 2), name="Conv2d_1a_3x3", **kw)(x, u)        # [B, 149, 149, 32]
    x = BasicConv(32, (3, 3), name="Conv2d_2a_3x3", **kw)(x, u)                # [B, 147, 147, 32]
    x = BasicConv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3", **kw)(x, u)
    x = _max_pool_3x3_s2(x)                                                    # [B, 73, 73, 64]
    x = BasicConv(80, (1, 1), name="Conv2d_3b_1x1", **kw)(x, u)                # [B, 73, 73, 80]
    x = BasicConv(192, (3, 3), name="Conv2d_4a_3x3", **kw)(x, u)               # [B, 71, 71, 192]
    x = _max_pool_3x3_s2(x)                                                    # [B, 35, 35, 192]

    x = InceptionA(pool_features=32, name="Mixed_5b", **kw)(x, u)              # [B, 35, 35, 256]
    x = InceptionA(pool_features=64, name="Mixed_5c", **kw)(x, u)              # [B, 35, 35, 288]
    x = InceptionA(pool_features=64, name="Mixed_5d", **kw)(x, u)              # [B, 35, 35, 288]
    x = InceptionB(name="Mixed_6a", **kw)(x, u)                                # [B, 17, 17, 768]
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
      x = InceptionC(channels_7x7=c7, name=name, **kw)(x, u)                   # [B, 17, 17, 768]
    x = InceptionD(name="Mixed_7a", **kw)(x, u)                                # [B, 8, 8, 1280]
    x = InceptionE(pool="avg", name="Mixed_7b", **kw)(x, u)                    # [B, 8, 8, 2048]
    x = InceptionE(pool="max", name="Mixed_7c", **kw)(x, u)                    # [B, 8, 8, 2048]

    features = jnp.mean(x.astype(jnp.float32), axis=(1, 2))                   # [B, 2048]
    logits = nn.Dense(self.num_classes, dtype=jnp.float32, param_dtype=self.param_dtype,
                      precision=self.precision, name="fc")(features)           # [B, K]
    return features, {"logits": logits}
