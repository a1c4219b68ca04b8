"""FD2Talk stage 2a: the frame autoencoder whose decoder reads a reference latent beside the
frame's own (§3.3, Eqs. 13-15; spec `shared/reference/systems/fd2talk.md` §2.5).

Dimensions: B batch, H, W frame size, h = H / f, w = W / f latent size (f = 2^m, m =
len(channels); paper f = 4), d latent channels (paper 3), N codebook size.

Built from the VQ autoencoder family of `models.vq` (taming-style blocks):
  encode     frame [B, H, W, 3] in [-1, 1] -> `SOVQEncoder` -> 1x1 `quant_conv`   h [B, h, w, d]
             (the pre-quantisation latent: the space the latent UNet diffuses in, as LDM's
             `VQModelInterface.encode`)
  decode     (reference latent x, frame latent J), each [B, h, w, d]: each is quantised
             (`VectorQuantizer`, straight-through) and passed through the 1x1
             `post_quant_conv`, then concatenated [x, J] (reference first, Eq. 13's
             [E(F1), E(F2)]) -> `SOVQDecoder`, whose first conv reads the 2d channels
                                                                        frame [B, H, W, 3]
  __call__   (F1, F2) -> D([E(F1), E(F2)]), the reconstruction of F2 (Eq. 13)

The decoder's output is not squashed (taming); targets are in [-1, 1].
Stand-in for the paper's pre-trained vq-f4: no pre-trained weights reach this machine, so the
autoencoder is trained from scratch on pairs (spec §8 item 3 places the concatenation after
quantisation and post_quant_conv, as here). `models.vq`'s blocks use one ResnetBlock per level
and downsample after every level, so at f = 4 the paper size has two levels where LDM's vq-f4
has three levels of two blocks.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from talking_heads.models import vq


class FrameAutoencoder(nn.Module):
  """Encoder, codebook and reference-conditioned decoder (module docstring).

  Attributes:
    channels: per-level widths of the encoder (mirrored by the decoder); f = 2^len(channels).
    latent_channels: d (paper 3).
    num_codes: N (vq-f4: 8192).
  """
  channels: Sequence[int]
  latent_channels: int = 3
  num_codes: int = 8192
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def setup(self):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    d = self.latent_channels
    self.encoder = vq.SOVQEncoder(tuple(self.channels), d, **kw)
    self.quant_conv = nn.Dense(d, **kw)          # 1x1 conv over channels
    self.quantizer = vq.VectorQuantizer(self.num_codes, d, param_dtype=self.param_dtype)
    self.post_quant_conv = nn.Dense(d, **kw)
    self.decoder = vq.SOVQDecoder(tuple(self.channels), **kw)

  def encode(self, frames: jax.Array) -> jax.Array:
    """Frames [B, H, W, 3] in [-1, 1] -> pre-quantisation latent [B, h, w, d]."""
    f = 2 ** len(self.channels)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[1] % f or frames.shape[2] % f:
      raise ValueError(f"FrameAutoencoder: frames must be [B, H, W, 3] with H, W multiples of "
                       f"{f}, got {frames.shape}")
    return self.quant_conv(self.encoder(frames))                              # [B, h, w, d]

  def quantize(self, latent: jax.Array) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    """Latent [B, h, w, d] -> (codes with straight-through gradient, indices [B, h, w],
    {"z_e", "z_q"} for `losses.vq.codebook_and_commitment`)."""
    return self.quantizer(latent)

  def decode(self, reference: jax.Array, latent: jax.Array,
             return_aux: bool = False) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
    """Reference latent x and frame latent J, [B, h, w, d] each -> frame [B, H, W, 3] float32.

    With `return_aux` also {"z_e", "z_q" [2B, h, w, d], "indices" [2B, h, w]}, the reference's
    entries first.
    """
    if reference.shape != latent.shape or latent.shape[-1] != self.latent_channels:
      raise ValueError(f"FrameAutoencoder.decode: reference {reference.shape} and latent "
                       f"{latent.shape} must both be [B, h, w, {self.latent_channels}]")
    b = latent.shape[0]
    z_st, indices, aux = self.quantize(jnp.concatenate([reference, latent]))  # [2B, h, w, d]
    z = self.post_quant_conv(z_st.astype(self.dtype))
    z = jnp.concatenate([z[:b], z[b:]], axis=-1)                               # [B, h, w, 2d]
    frame = self.decoder(z)                                                     # [B, H, W, 3]
    return (frame, {**aux, "indices": indices}) if return_aux else frame

  def __call__(self, reference_frame: jax.Array, frame: jax.Array
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(F1, F2) [B, H, W, 3] -> (D([E(F1), E(F2)]) [B, H, W, 3], aux of `decode`)."""
    return self.decode(self.encode(reference_frame), self.encode(frame), return_aux=True)
