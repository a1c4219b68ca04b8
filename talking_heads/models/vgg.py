"""torchvision's VGG16/VGG19 and AlexNet conv trunks (`features`) returning named activations.

Used by LPIPS (AlexNet, VGG16) and the perceptual losses (VGG16, VGG19). The layers match
torchvision's `vgg16().features` (configuration D), `vgg19().features` (configuration E) and
`alexnet().features` one to one, so the public ImageNet checkpoints load through
`talking_heads.pretrained.vgg`. Inputs are already normalised by the caller (LPIPS and the
perceptual loss normalise differently).

Dimensions: B batch, H, W image size, C channels (NHWC).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# (convs, output channels) per block; each block ends with a 2x2 stride-2 max-pool.
_VGG_BLOCKS: dict[str, tuple[tuple[int, int], ...]] = {
    "vgg16": ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)),   # torchvision config D
    "vgg19": ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512)),   # torchvision config E
}
VGG_VARIANTS: tuple[str, ...] = tuple(_VGG_BLOCKS)


def _blocks(variant: str) -> tuple[tuple[int, int], ...]:
  if variant not in _VGG_BLOCKS:
    raise ValueError(f"VGG variant must be one of {VGG_VARIANTS}, got {variant!r}")
  return _VGG_BLOCKS[variant]


def vgg_layers(variant: str) -> tuple[tuple[str, int], ...]:
  """(name, output channels) per layer of `variant`: conv<block>_<i>, or ("pool", 0)."""
  out: list[tuple[str, int]] = []
  for block, (convs, channels) in enumerate(_blocks(variant), start=1):
    out.extend((f"conv{block}_{i}", channels) for i in range(1, convs + 1))
    out.append(("pool", 0))
  return tuple(out)


def vgg_taps(variant: str) -> tuple[str, ...]:
  """Every ReLU activation of `variant`, relu<block>_<i>, in order."""
  return tuple("relu" + name[len("conv"):] for name, _ in vgg_layers(variant) if name != "pool")


def vgg_block_taps(variant: str) -> tuple[str, ...]:
  """The last ReLU of each block (VGG16: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3)."""
  return tuple(f"relu{block}_{convs}"
               for block, (convs, _) in enumerate(_blocks(variant), start=1))


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


class VGGFeatures(nn.Module):
  """VGG16/VGG19 conv trunk (3x3 convs, padding 1, ReLU, 2x2 max-pools) returning ReLU activations.

  Parameters are named conv<block>_<i> (VGG16: conv1_1 ... conv5_3; VGG19: conv1_1 ... conv5_4).
  Only layers up to the deepest requested tap are built, so a perceptual loss tapping relu4_3
  carries no conv5 parameters.

  Attributes:
    variant: "vgg16" or "vgg19".
    taps: activations to return, from `vgg_taps(variant)`; None: `vgg_block_taps(variant)`.
      Block b's taps are [B, H/2^(b-1), W/2^(b-1), C_b] with C = 64, 128, 256, 512, 512
      (sizes floored at each pool).
  """
  variant: str = "vgg16"
  taps: Sequence[str] | None = None
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    model = f"VGGFeatures({self.variant})"
    layers = vgg_layers(self.variant)
    taps = tuple(self.taps) if self.taps is not None else vgg_block_taps(self.variant)
    _check_taps(taps, vgg_taps(self.variant), model)
    deepest_block = max(int(t[len("relu"):].split("_")[0]) for t in taps)
    _check_images(x, model, 2**(deepest_block - 1))
    x = x.astype(self.dtype)                                    # [B, H, W, 3]
    wanted = set(taps)
    out: dict[str, jax.Array] = {}
    for name, channels in layers:
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
