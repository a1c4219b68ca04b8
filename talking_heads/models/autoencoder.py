"""A small convolutional image autoencoder (the trainer's first real stage).

Dimensions: B batch, H, W image size, C channels, h = H / 2**len(widths) latent size, Z latent channels.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class ConvAutoencoder(nn.Module):
  """Strided-conv encoder to a [B, h, h, Z] latent and a transposed-conv decoder back to images.

  Attributes:
    widths: channels of each downsampling stage (each halves H and W).
    latent_channels: Z.
    out_channels: C of the reconstruction.
  """
  widths: Sequence[int] = (32, 64)
  latent_channels: int = 8
  out_channels: int = 3
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def setup(self):
    conv = lambda c, k=3, s=1: nn.Conv(c, (k, k), (s, s), padding="SAME", dtype=self.dtype,
                                       param_dtype=self.param_dtype)
    convt = lambda c: nn.ConvTranspose(c, (4, 4), (2, 2), padding="SAME", dtype=self.dtype,
                                       param_dtype=self.param_dtype)
    self.down = [conv(w, 4, 2) for w in self.widths]
    self.to_latent = conv(self.latent_channels, 1)
    self.from_latent = conv(self.widths[-1], 3)
    self.up = [convt(w) for w in reversed(self.widths)]
    self.to_image = conv(self.out_channels, 3)

  def encode(self, images: jax.Array) -> jax.Array:
    x = images.astype(self.dtype) * 2.0 - 1.0        # [B, H, W, C] in [-1, 1]
    for layer in self.down:
      x = nn.gelu(layer(x))
    return self.to_latent(x)                          # [B, h, h, Z]

  def decode(self, latents: jax.Array) -> jax.Array:
    x = nn.gelu(self.from_latent(latents))
    for layer in self.up:
      x = nn.gelu(layer(x))
    x = self.to_image(x).astype(jnp.float32)          # [B, H, W, C]
    return nn.sigmoid(x)

  def __call__(self, images: jax.Array) -> jax.Array:
    return self.decode(self.encode(images))
