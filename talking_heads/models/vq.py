"""LaDTalk's Space-Optimized VQ autoencoder (SOVQAE): a VQGAN-style encoder, codebook and decoder.

Architecture (LaDTalk Table 6, built from taming-transformers' blocks, no skip connections; the
blocks are `nn.resnet` and `nn.attention.SpatialSelfAttention` with taming's settings: GroupNorm
eps 1e-6, Downsample padded (0, 1) then a VALID conv, single-head 1x1-conv attention):

  encoder  conv_in; m x {ResnetBlock, Downsample}; ResnetBlock; NonLocalBlock; ResnetBlock;
           GroupNorm-swish-conv_out -> z_e [B, h, w, c]
  codebook nearest of N codes (channel-wise 1-NN), straight-through gradient to the encoder;
           the model returns z_e and the codes z_q, and the stage computes the VQ loss from
           them (`losses.vq.codebook_and_commitment`)
  decoder  conv_in; ResnetBlock; NonLocalBlock; ResnetBlock; m x {ResnetBlock, Upsample};
           GroupNorm-swish-conv_out -> x_hat [B, H, W, 3]

The encoder output goes straight to the quantizer (Table 6 has no 1x1 quant_conv), so its width
is the code width c. Images are NHWC in [-1, 1]; the decoder output is not squashed (taming's
decoder has no tanh) and is compared with the target in that range.

Dimensions: B batch, H, W image size, h = H / 2^m, w = W / 2^m latent size (f = 2^m),
C channels, c code width, N codebook size, M = B h w latent vectors.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from talking_heads.nn import attention, norm, resnet


def _norm(channels: int, param_dtype: Any, name: str) -> nn.GroupNorm:
  """taming's GroupNorm(32, eps 1e-6); widths 32 does not divide get their largest divisor."""
  return norm.group_norm(channels, epsilon=norm.TAMING_EPS, rule="divisor",
                         param_dtype=param_dtype, name=name)


def _attention(name: str, **kw) -> attention.SpatialSelfAttention:
  """taming's single-head AttnBlock: 1x1 conv projections, proj_out not zero-initialised."""
  return attention.SpatialSelfAttention("conv", norm_eps=norm.TAMING_EPS, norm_rule="divisor",
                                        zero_init=False, name=name, **kw)


class SOVQEncoder(nn.Module):
  """Image [B, H, W, 3] -> z_e [B, H/2^m, W/2^m, z_channels] (module docstring).

  Attributes:
    channels: width of each level's ResnetBlock (m = len(channels) levels, one Downsample each);
      the middle blocks keep channels[-1].
    z_channels: output width (the code width c).
  """
  channels: Sequence[int]
  z_channels: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = nn.Conv(self.channels[0], (3, 3), padding="SAME", name="conv_in", **kw)(
        x.astype(self.dtype))                                     # [B, H, W, C0]
    for i, features in enumerate(self.channels):
      x = resnet.ResnetBlock(features, name=f"down_{i}_res", **kw)(x)
      x = resnet.Downsample(padding=resnet.TAMING_DOWN_PAD, name=f"down_{i}_down",
                            **kw)(x)                      # [B, H/2^(i+1), W/2^(i+1), Ci]
    x = resnet.ResnetBlock(self.channels[-1], name="mid_res_0", **kw)(x)
    x = _attention("mid_attn", **kw)(x)
    x = resnet.ResnetBlock(self.channels[-1], name="mid_res_1", **kw)(x)
    x = nn.swish(_norm(self.channels[-1], self.param_dtype, "norm_out")(x))
    return nn.Conv(self.z_channels, (3, 3), padding="SAME", name="conv_out", **kw)(x)   # [B, h, w, c]


class SOVQDecoder(nn.Module):
  """z_q [B, h, w, c] -> image [B, h 2^m, w 2^m, 3], the encoder mirrored.

  Level i (applied in order i = 0 .. m-1, from the latent up) is `up_{i}_res`, a ResnetBlock of
  width channels[m-1-i], then `up_{i}_up` (Upsample).

  Attributes:
    channels: the encoder's per-level widths.
    out_channels: image channels.
  """
  channels: Sequence[int]
  out_channels: int = 3
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array, return_features: bool = False
               ) -> jax.Array | tuple[jax.Array, jax.Array]:
    """The image in float32; with `return_features` also conv_out's input [B, H, W, channels[0]]."""
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = nn.Conv(self.channels[-1], (3, 3), padding="SAME", name="conv_in", **kw)(
        z.astype(self.dtype))                                     # [B, h, w, C_{m-1}]
    x = resnet.ResnetBlock(self.channels[-1], name="mid_res_0", **kw)(x)
    x = _attention("mid_attn", **kw)(x)
    x = resnet.ResnetBlock(self.channels[-1], name="mid_res_1", **kw)(x)
    for i, features in enumerate(reversed(self.channels)):
      x = resnet.ResnetBlock(features, name=f"up_{i}_res", **kw)(x)
      x = resnet.Upsample(name=f"up_{i}_up", **kw)(x)             # [B, h 2^(i+1), w 2^(i+1), C]
    features = nn.swish(_norm(self.channels[0], self.param_dtype, "norm_out")(x))
    out = nn.Conv(self.out_channels, (3, 3), padding="SAME", name="conv_out", **kw)(features)
    out = out.astype(jnp.float32)                                 # [B, H, W, 3]
    return (out, features) if return_features else out


def _uniform_init(num_codes: int):
  def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -1.0 / num_codes, 1.0 / num_codes)
  return init


class VectorQuantizer(nn.Module):
  """Nearest-code quantisation of [..., c] vectors with a straight-through gradient.

  Parameter `codebook` [N, c], initialised uniform(-1/N, 1/N) as in taming. Distances are
  ||z||^2 + ||e||^2 - 2 z.e in float32.

  Attributes:
    num_codes: N.
    code_dim: c.
  """
  num_codes: int
  code_dim: int
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z_e: jax.Array) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    """(z + sg(z_q - z) [..., c], indices [...] int32, {"z_e", "z_q"}).

    aux holds the float32 inputs z_e and their codes z_q (no straight-through: the codebook's
    gradient path, for the codebook loss).
    """
    if z_e.shape[-1] != self.code_dim:
      raise ValueError(f"VectorQuantizer: latents have width {z_e.shape[-1]}, codes {self.code_dim}")
    codebook = self.param("codebook", _uniform_init(self.num_codes), (self.num_codes, self.code_dim),
                          self.param_dtype).astype(jnp.float32)   # [N, c]
    z = z_e.astype(jnp.float32)
    flat = z.reshape(-1, self.code_dim)                           # [M, c]
    distances = (jnp.sum(flat**2, axis=1, keepdims=True) + jnp.sum(codebook**2, axis=1)[None]
                 - 2.0 * flat @ codebook.T)                       # [M, N]
    indices = jnp.argmin(distances, axis=1).astype(jnp.int32).reshape(z.shape[:-1])
    z_q = jnp.take(codebook, indices, axis=0)                     # [..., c]
    z_st = z + jax.lax.stop_gradient(z_q - z)
    return z_st, indices, {"z_e": z, "z_q": z_q}


class SOVQAE(nn.Module):
  """Encoder, codebook and decoder (module docstring); images in [-1, 1].

  Attributes:
    channels: per-level widths (m = len(channels) downsamplings, f = 2^m).
    num_codes: N.
    code_dim: c, also the encoder's output width.
  """
  channels: Sequence[int]
  num_codes: int
  code_dim: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def setup(self):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    self.encoder = SOVQEncoder(tuple(self.channels), self.code_dim, **kw)
    self.quantizer = VectorQuantizer(self.num_codes, self.code_dim, param_dtype=self.param_dtype)
    self.decoder = SOVQDecoder(tuple(self.channels), **kw)

  def encode(self, x: jax.Array) -> jax.Array:
    """Images [B, H, W, 3] in [-1, 1] -> z_e [B, h, w, c]."""
    factor = 2 ** len(self.channels)
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[1] % factor or x.shape[2] % factor:
      raise ValueError(f"SOVQAE: expected images [B, H, W, 3] with H, W multiples of {factor}, "
                       f"got {x.shape}")
    return self.encoder(x)

  def quantize(self, z_e: jax.Array) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    """z_e -> (z_q straight-through [B, h, w, c], indices [B, h, w], {"z_e", "z_q"})."""
    return self.quantizer(z_e)

  def decode(self, z_q: jax.Array, return_features: bool = False
             ) -> jax.Array | tuple[jax.Array, jax.Array]:
    """z_q [B, h, w, c] -> x_hat [B, H, W, 3] (and conv_out's input with `return_features`)."""
    return self.decoder(z_q, return_features)

  def __call__(self, x: jax.Array, return_features: bool = False
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """x [B, H, W, 3] -> (x_hat [B, H, W, 3], aux).

    aux: "indices" [B, h, w]; "z_e" and "z_q" [B, h, w, c] float32, the encoder output and its
    codes (the inputs of `losses.vq.codebook_and_commitment`); and with `return_features`
    "decoder_features" (the decoder's conv_out input).
    """
    z_q, indices, aux = self.quantize(self.encode(x))
    out = self.decode(z_q, return_features)
    if return_features:
      x_hat, aux["decoder_features"] = out
    else:
      x_hat = out
    return x_hat, {**aux, "indices": indices}
