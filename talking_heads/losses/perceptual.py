"""VGG16 perceptual (feature reconstruction) loss, Johnson et al. 2016.

loss = sum_l lambda_l * mean |phi_l(x) - phi_l(y)|^p over VGG16 activations relu1_2, relu2_2,
relu3_3, relu4_3 (torchvision `features` slices [0:4], [4:9], [9:16], [16:23]) of ImageNet-
normalised images; p = 1 (RADIO, FD2Talk) or 2 (PIR, Johnson's MSE). The VGG16 weights are the
public torchvision file loaded by `talking_heads.pretrained.vgg.load_vgg(weights_dir, perceptual_vgg())`;
they stay frozen (they are an argument, not trained parameters).

Dimensions: B batch, H, W image size (NHWC, 3 channels).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp

from talking_heads.models import vgg

LAYERS: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def perceptual_vgg(layers: Sequence[str] = LAYERS, dtype: jnp.dtype = jnp.float32
                   ) -> vgg.VGGFeatures:
  """The VGG16 trunk the loss runs (built only up to the deepest layer)."""
  return vgg.VGGFeatures("vgg16", taps=tuple(layers), dtype=dtype)


def imagenet_normalise(images: jax.Array, value_range: tuple[float, float] = (0.0, 1.0)
                       ) -> jax.Array:
  """Maps images [..., 3] in `value_range` to [0, 1], then (x - mean) / std per channel."""
  low, high = value_range
  unit = (images.astype(jnp.float32) - low) / (high - low)
  return (unit - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)


def perceptual_loss(vgg_variables: Mapping[str, Any], x: jax.Array, y: jax.Array, *,
                    layers: Sequence[str] = LAYERS,
                    layer_weights: Sequence[float] | None = None, distance: str = "l1",
                    value_range: tuple[float, float] = (0.0, 1.0),
                    dtype: jnp.dtype = jnp.float32) -> jax.Array:
  """Scalar weighted sum over layers of the mean feature distance between x and y.

  Args:
    vgg_variables: variables of `perceptual_vgg(layers)` (the public VGG16 weights).
    x: generated images [B, H, W, 3].
    y: target images [B, H, W, 3].
    layers: VGG16 taps to compare.
    layer_weights: lambda_l per layer (default all 1).
    distance: "l1" (mean absolute) or "l2" (mean squared).
    value_range: the range x and y are in.
    dtype: compute dtype of the VGG16 trunk; distances are taken in float32.

  Returns:
    The loss, a float32 scalar.
  """
  if x.shape != y.shape:
    raise ValueError(f"perceptual_loss: x and y differ in shape: {x.shape} vs {y.shape}")
  if distance not in ("l1", "l2"):
    raise ValueError(f"perceptual_loss: distance must be 'l1' or 'l2', got {distance!r}")
  weights = tuple(layer_weights) if layer_weights is not None else (1.0,) * len(layers)
  if len(weights) != len(layers):
    raise ValueError(f"perceptual_loss: {len(weights)} layer weights for {len(layers)} layers")
  both = imagenet_normalise(jnp.concatenate([x, y], axis=0), value_range)   # [2B, H, W, 3]
  feats = perceptual_vgg(layers, dtype).apply(vgg_variables, both)
  batch = x.shape[0]
  total = jnp.zeros((), jnp.float32)
  for name, weight in zip(layers, weights):
    f = feats[name].astype(jnp.float32)                                      # [2B, h, w, C]
    diff = f[:batch] - f[batch:]
    per_layer = jnp.abs(diff) if distance == "l1" else jnp.square(diff)
    total = total + weight * jnp.mean(per_layer)
  return total
