"""LPIPS v0.1 (Zhang et al. 2018) with the AlexNet and VGG16 backbones.

distance(x, y) = sum over tapped layers l of mean_{h,w} sum_c w_lc (n_l(x) - n_l(y))^2_{hwc},
where n_l is the layer's activation unit-normalised over channels (eps 1e-10 added to the norm)
and w_l are the learned non-negative 1x1 linear weights. Inputs in [-1, 1] are first shifted and
scaled per channel. Weights come from public files through `talking_heads.pretrained.lpips`;
this module never invents them.

Dimensions: B batch, H, W image size, C channels (NHWC); L tapped layers.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from talking_heads.models import vgg

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10
NETS = ("alex", "vgg")


def _backbone(net: str, dtype: jnp.dtype, param_dtype: jnp.dtype) -> nn.Module:
  if net == "alex":
    return vgg.AlexNetFeatures(dtype=dtype, param_dtype=param_dtype, name="backbone")
  if net == "vgg":
    return vgg.VGGFeatures("vgg16", dtype=dtype, param_dtype=param_dtype, name="backbone")
  raise ValueError(f"LPIPS net must be one of {NETS}, got {net!r}")


def _unit_normalise(f: jax.Array) -> jax.Array:
  norm = jnp.sqrt(jnp.sum(jnp.square(f), axis=-1, keepdims=True))   # [B, h, w, 1]
  return f / (norm + NORM_EPS)


class LPIPS(nn.Module):
  """Per-example LPIPS distance between two image batches.

  Parameters: `backbone` (torchvision AlexNet/VGG16 trunk) and `lin0`..`lin{L-1}` (1x1 convs,
  C_l -> 1, no bias), as in the `lpips` package.

  Attributes:
    net: "alex" (the package default) or "vgg".
  """
  net: str = "alex"
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, y: jax.Array, normalize: bool = False) -> jax.Array:
    """Distances [B] between images x, y [B, H, W, 3] in [-1, 1] (in [0, 1] if `normalize`)."""
    if x.shape != y.shape:
      raise ValueError(f"LPIPS: image batches differ in shape: {x.shape} vs {y.shape}")
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f"LPIPS: expected NHWC images [B, H, W, 3], got shape {x.shape}")
    both = jnp.concatenate([x, y], axis=0).astype(jnp.float32)   # [2B, H, W, 3]
    if normalize:
      both = 2.0 * both - 1.0
    both = (both - jnp.asarray(SHIFT)) / jnp.asarray(SCALE)
    feats = _backbone(self.net, self.dtype, self.param_dtype)(both)
    batch = x.shape[0]
    total = jnp.zeros((batch,), jnp.float32)
    for index, f in enumerate(feats.values()):
      f = _unit_normalise(f.astype(jnp.float32))                  # [2B, h, w, C_l]
      diff = jnp.square(f[:batch] - f[batch:])                    # [B, h, w, C_l]
      lin = nn.Conv(1, (1, 1), use_bias=False, dtype=jnp.float32,
                    param_dtype=self.param_dtype, name=f"lin{index}")
      total = total + jnp.mean(lin(diff), axis=(1, 2, 3))         # [B]
    return total


@functools.partial(jax.jit, static_argnames=("net", "normalize"))
def lpips_distance(variables: Mapping[str, Any], x: jax.Array, y: jax.Array, *,
                   net: str = "alex", normalize: bool = False) -> jax.Array:
  """Jitted LPIPS [B] for images [B, H, W, 3] in [-1, 1] (or [0, 1] with `normalize`).

  `variables` come from `talking_heads.pretrained.lpips.load_lpips(weights_dir, net)`.
  """
  return LPIPS(net=net).apply(variables, x, y, normalize=normalize)
