"""A small CNN that regresses iBUG-68 landmarks and head rotation from a face frame.

Dimensions: B batch, S input size (H = W = S), C channels, P = 68 landmarks.

  images    float32 [B, S, S, 3] in [-1, 1]
  -> concat with normalised (x, y) coordinate channels       [B, S, S, 5]
  -> per stage: 3x3 stride-2 conv, then `blocks` residual units GN -> SiLU -> conv3x3
  -> GN -> SiLU -> flatten [B, (S / 2^n)^2 C] -> Dense(hidden) -> SiLU -> Dense(2 P + 3)
  -> landmarks [B, P, 2]  normalised (x, y): u = 2 (x_pixel + 0.5) / S - 1, in [-1, 1] over the
                          image (pixel centres on integers, as `pipelines.base.rescale_pixels`)
     pose      [B, 3]     yaw, pitch, roll in radians: the last layer's unit-scale outputs times
                          `pose_scale`, so training sees poses of order one

Flattening (instead of global pooling) and the coordinate channels keep where things are, which
is what both outputs are about. Normalisation and the outputs are float32.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from talking_heads.nn import norm

NUM_LANDMARKS = 68
POSE_AXES = ("yaw", "pitch", "roll")


def pixels_to_normalised(points: jax.Array, size: int) -> jax.Array:
  """Pixel (x, y) of an S = `size` image -> normalised coordinates in [-1, 1] (module docstring)."""
  return (points + 0.5) * (2.0 / size) - 1.0


def normalised_to_pixels(points: jax.Array, size: int) -> jax.Array:
  """Inverse of `pixels_to_normalised`."""
  return (points + 1.0) * (size / 2.0) - 0.5


def coordinate_channels(batch: int, size: int) -> jax.Array:
  """float32 [batch, size, size, 2]: the normalised (x, y) of every pixel centre."""
  u = pixels_to_normalised(jnp.arange(size, dtype=jnp.float32), size)
  grid = jnp.stack(jnp.meshgrid(u, u, indexing="xy"), axis=-1)    # [S, S, 2] (x, y)
  return jnp.broadcast_to(grid, (batch, size, size, 2))


class FaceRegressor(nn.Module):
  """Frames -> {"landmarks": [B, 68, 2] normalised, "pose": [B, 3] radians} (module docstring).

  Attributes:
    channels: width of each stride-2 stage; the feature map is S / 2^len(channels) wide.
    blocks: residual units per stage.
    hidden: width of the dense layer before the heads.
    pose_scale: radians per unit of the pose head's raw output, per axis (yaw, pitch, roll).
    dtype: compute dtype of convolutions and dense layers.
    param_dtype: parameter dtype.
  """
  channels: Sequence[int] = (16, 32, 64, 128)
  blocks: int = 1
  hidden: int = 256
  pose_scale: Sequence[float] = (0.01, 0.01, 0.01)
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
    if images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[3] != 3:
      raise ValueError(f"FaceRegressor: expected images [B, S, S, 3], got {images.shape}")
    size = images.shape[1]
    if size % 2 ** len(self.channels):
      raise ValueError(f"FaceRegressor: image size {size} is not divisible by "
                       f"2^{len(self.channels)} (one halving per stage of {tuple(self.channels)})")
    if len(self.pose_scale) != len(POSE_AXES):
      raise ValueError(f"FaceRegressor: pose_scale needs {len(POSE_AXES)} values "
                       f"{POSE_AXES}, got {tuple(self.pose_scale)}")
    group_norm = lambda channels, name: norm.group_norm(
        channels, epsilon=norm.TAMING_EPS, rule="divisor", param_dtype=self.param_dtype, name=name)
    conv = lambda features, stride, name: nn.Conv(
        features, (3, 3), strides=(stride, stride), padding="SAME", dtype=self.dtype,
        param_dtype=self.param_dtype, name=name)
    x = jnp.concatenate([images.astype(jnp.float32), coordinate_channels(images.shape[0], size)],
                        axis=-1).astype(self.dtype)                 # [B, S, S, 5]
    for i, features in enumerate(self.channels):
      if i:
        x = nn.silu(group_norm(x.shape[-1], f"stage{i}_down_norm")(x))
      x = conv(features, 2, f"stage{i}_down")(x)                   # [B, S / 2^(i+1), ..., C_i]
      for j in range(self.blocks):
        h = nn.silu(group_norm(features, f"stage{i}_block{j}_norm")(x))
        x = x + conv(features, 1, f"stage{i}_block{j}_conv")(h)
    x = nn.silu(group_norm(x.shape[-1], "out_norm")(x))
    x = x.reshape(x.shape[0], -1).astype(self.dtype)               # [B, (S / 2^n)^2 C]
    x = nn.silu(nn.Dense(self.hidden, dtype=self.dtype, param_dtype=self.param_dtype,
                         name="hidden")(x))
    out = nn.Dense(2 * NUM_LANDMARKS + len(POSE_AXES), dtype=self.dtype,
                   param_dtype=self.param_dtype, kernel_init=nn.initializers.zeros,
                   name="head")(x).astype(jnp.float32)              # [B, 2 P + 3]
    landmarks = out[:, :2 * NUM_LANDMARKS].reshape(-1, NUM_LANDMARKS, 2)
    pose = out[:, 2 * NUM_LANDMARKS:] * jnp.asarray(self.pose_scale, jnp.float32)
    return {"landmarks": landmarks, "pose": pose}
