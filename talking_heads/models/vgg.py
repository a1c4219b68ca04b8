"""torchvision's VGG16 and AlexNet convolutional trunks (`features`) returning named activations.

Used by LPIPS (both backbones) and the VGG16 perceptual loss. The layers match torchvision's
`vgg16().features` (configuration D) and `alexnet().features` one to one, so the public ImageNet
checkpoints load through `third_party.vgg`. Inputs are already normalised by the caller (LPIPS
and the perceptual loss normalise differently).

Dimensions: B batch, H, W image size, C channels (NHWC).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# (name, output channels) per conv; "pool" is a 2x2 stride-2 max-pool. torchvision config D.
VGG16_LAYERS: tuple[tuple[str, int], ...] = (
    ("conv1_1", 64), ("conv1_2", 64), ("pool", 0),
    ("conv2_1", 128), ("conv2_2", 128), ("pool", 0),
    ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256), ("pool", 0),
    ("conv4_1", 512), ("conv4_2", 512), ("conv4_3", 512), ("pool", 0),
    ("conv5_1", 512), ("conv5_2", 512), ("conv5_3", 512), ("pool", 0),
)
VGG16_TAPS: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")

# (name, output channels, kernel, stride, padding) per conv; each conv is followed by ReLU and
# convs 1, 2 and 5 by a 3x3 stride-2 max-pool (after the tap).
ALEXNET_LAYERS: tuple[tuple[str, int, int, int, int], ...] = (
    ("conv1", 64, 11, 4, 2), ("conv2", 192, 5, 1, 2), ("conv3", 384, 3, 1, 1),
    ("conv4", 256, 3, 1, 1), ("conv5", 256, 3, 1, 1),
)
ALEXNET_POOLED: tuple[str, ...] = ("conv1", "conv2", "conv5")
ALEXNET_TAPS: tuple[str, ...] = ("relu1", "relu2", "relu3", "relu4", "relu5")


def _check_taps(taps: Sequence[str], known: Sequence[str], model: str) -> None:
  unknown = [t for t in taps if t not in known]
  if unknown or not taps:
    raise ValueError(f"{model}: taps must be a non-empty subset of {known}, got {tuple(taps)}")


def _check_images(x: jax.Array, model: str, min_size: int) -> None:
  if x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f"{model}: expected NHWC images [B, H, W, 3], got shape {x.shape}")
  if min(x.shape[1:3]) < min_size:
    raise ValueError(f"{model}: images of {x.shape[1]}x{x.shape[2]} are too small for the "
                     f"requested taps (need at least {min_size}x{min_size})")


class VGG16Features(nn.Module):
  """VGG16 conv trunk (3x3 convs, padding 1, ReLU, 2x2 max-pools) returning ReLU activations.

  Only layers up to the deepest requested tap are built, so a perceptual loss tapping relu4_3
  carries no conv5 parameters.

  Attributes:
    taps: which activations to return, from `VGG16_TAPS` (relu1_2: [B, H, W, 64], relu2_2:
      [B, H/2, W/2, 128], relu3_3: [B, H/4, W/4, 256], relu4_3: [B, H/8, W/8, 512], relu5_3:
      [B, H/16, W/16, 512]; sizes floored at each pool).
  """
  taps: Sequence[str] = VGG16_TAPS
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    _check_taps(self.taps, VGG16_TAPS, "VGG16Features")
    deepest = max(VGG16_TAPS.index(t) for t in self.taps)
    _check_images(x, "VGG16Features", 2**deepest)
    x = x.astype(self.dtype)                                    # [B, H, W, 3]
    wanted = set(self.taps)
    out: dict[str, jax.Array] = {}
    for name, channels in VGG16_LAYERS:
      if len(out) == len(wanted):
        break
      if name == "pool":
        x = nn.max_pool(x, (2, 2), (2, 2), padding="VALID")    # [B, H/2, W/2, C]
        continue
      x = nn.relu(nn.Conv(channels, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                          param_dtype=self.param_dtype, name=name)(x))
      tap = "relu" + name[len("conv"):]
      if tap in wanted:
        out[tap] = x                                            # [B, h, w, channels]
    return out


class AlexNetFeatures(nn.Module):
  """AlexNet conv trunk (torchvision's single-tower variant) returning ReLU activations.

  Attributes:
    taps: which activations to return, from `ALEXNET_TAPS` (relu1: [B, h1, w1, 64] with
      h1 = floor((H + 4 - 11) / 4) + 1; relu2: 192 channels after a 3x3/2 pool; relu3: 384,
      relu4: 256 and relu5: 256 channels after a second pool).
  """
  taps: Sequence[str] = ALEXNET_TAPS
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    _check_taps(self.taps, ALEXNET_TAPS, "AlexNetFeatures")
    deepest = max(ALEXNET_TAPS.index(t) for t in self.taps)
    # Smallest inputs leaving a non-empty map at each tap (conv1 k11/s4/p2, then 3x3/2 pools).
    _check_images(x, "AlexNetFeatures", (7, 15, 31, 31, 31)[deepest])
    x = x.astype(self.dtype)                                    # [B, H, W, 3]
    out: dict[str, jax.Array] = {}
    for index, (name, channels, kernel, stride, pad) in enumerate(ALEXNET_LAYERS[:deepest + 1]):
      if index > 0 and ALEXNET_LAYERS[index - 1][0] in ALEXNET_POOLED:
        x = nn.max_pool(x, (3, 3), (2, 2), padding="VALID")    # [B, (h-3)/2+1, ..., C]
      x = nn.relu(nn.Conv(channels, (kernel, kernel), (stride, stride),
                          padding=((pad, pad), (pad, pad)), dtype=self.dtype,
                          param_dtype=self.param_dtype, name=name)(x))
      tap = ALEXNET_TAPS[index]
      if tap in self.taps:
        out[tap] = x                                            # [B, h, w, channels]
    return out
