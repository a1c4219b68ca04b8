"""PatchGAN discriminator (pix2pix / taming-transformers' NLayerDiscriminator).

Layers (4x4 convs, padding 1), with F = base_features and L = num_layers (taming: 64, 3):
  conv_0     3 -> F, stride 2, LeakyReLU(0.2)
  conv_k     F min(2^(k-1), 8) -> F min(2^k, 8), stride 2 for k < L, stride 1 for k = L, no bias,
             then bn_k (BatchNorm) and LeakyReLU(0.2), k = 1 .. L
  conv_out   -> 1 logit per patch, stride 1
Initialisation as taming's `weights_init`: conv kernels N(0, 0.02), BatchNorm scale N(1, 0.02),
biases 0. BatchNorm keeps PyTorch's defaults (running stats momentum 0.1, eps 1e-5).

Dimensions: B batch, H, W image size; for L = 3 the logits are [B, H/8 - 2, W/8 - 2, 1]
(256 px -> 30 x 30 patches, 128 px -> 14 x 14).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

LEAKY_SLOPE = 0.2
INIT_STD = 0.02
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def _scale_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
  return 1.0 + INIT_STD * jax.random.normal(key, shape, dtype)


class PatchGAN(nn.Module):
  """Image [B, H, W, 3] -> patch logits [B, h, w, 1] in float32 (module docstring).

  Attributes:
    base_features: F.
    num_layers: L.
  """
  base_features: int = 64
  num_layers: int = 3
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    """Logits; `train` uses batch statistics and updates `batch_stats` (pass mutable)."""
    conv = lambda features, stride, bias, name: nn.Conv(
        features, (4, 4), strides=(stride, stride), padding=((1, 1), (1, 1)), use_bias=bias,
        kernel_init=nn.initializers.normal(INIT_STD), dtype=self.dtype,
        param_dtype=self.param_dtype, name=name)
    x = conv(self.base_features, 2, True, "conv_0")(x.astype(self.dtype))   # [B, H/2, W/2, F]
    x = nn.leaky_relu(x, LEAKY_SLOPE)
    for k in range(1, self.num_layers + 1):
      stride = 2 if k < self.num_layers else 1
      x = conv(self.base_features * min(2**k, 8), stride, False, f"conv_{k}")(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                       scale_init=_scale_init, dtype=jnp.float32, param_dtype=self.param_dtype,
                       name=f"bn_{k}")(x)
      x = nn.leaky_relu(x, LEAKY_SLOPE).astype(self.dtype)
    return conv(1, 1, True, "conv_out")(x).astype(jnp.float32)   # [B, h, w, 1]
