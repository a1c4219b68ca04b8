"""Conformer blocks (Gulati et al. 2020) in ESPnet's form, with padding masks and a causal option.

Dimensions: B batch, T frames, D model width, H heads, K = D / H head width, C channels.

Block (macaron, pre-norm, as ESPnet's `EncoderLayer` with `macaron_style`):
  x = x + 1/2 FFN(x)   FFN  = LN -> Dense(D, ffn) -> Swish -> dropout -> Dense(ffn, D) -> dropout
  x = x + MHSA(x)      MHSA = LN -> relative-position self-attention -> dropout
  x = x + Conv(x)      Conv = LN -> pointwise D->2D -> GLU -> depthwise k -> LN -> Swish
                              -> pointwise D->D -> dropout
  x = LN(x)            the block's final LayerNorm

Positions: relative, Transformer-XL style as ESPnet's `RelPositionMultiHeadedAttention`
(`pos_enc_layer_type: rel_pos`): score(i, j) = [(q_i + u) . k_j + (q_i + v) . W_p p(i - j)] /
sqrt(K), with p a sinusoidal embedding of the offset i - j and u, v learned per-head biases.
DAE-Talker names no implementation; its encoder -> pose predictor / adaptor -> decoder layout is
FastSpeech2's, whose Conformer variant in ESPnet uses rel_pos. Relative positions also suit the
use: speech2latent trains on 5-20 s pseudo-sentences and runs on whole utterances of any length,
and a score that depends only on i - j meets no position unseen in training.

Normalisation in the convolution module: LayerNorm over channels instead of ESPnet's BatchNorm.
BatchNorm's statistics mix frames across the batch, padding included, and carry running averages;
LayerNorm is per frame, so padded frames cannot leak into valid ones and there is no state.

Masks (`mask [B, T]`, True = valid frame): attention never attends to padded keys, and the
depthwise convolution sees zeros at padded frames, so nothing at a padded frame reaches a valid
one. Values at padded frames are unspecified (callers zero or ignore them).

Depthwise convolution: centred (k odd, k // 2 frames each side) or causal (the k - 1 previous
frames); a causal block also masks future keys in attention, so its output at t depends on
inputs at frames <= t only.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_NEG_INF = -1e30  # masked attention logit; finite so an all-padded row stays NaN-free


def conv_padding(kernel_size: int, causal: bool) -> tuple[int, int]:
  """(left, right) zero padding of a stride-1 convolution that keeps T frames.

  Causal: all k - 1 frames on the left. Centred: k // 2 each side (k must be odd).
  """
  if kernel_size < 1:
    raise ValueError(f"convolution kernel size must be positive, got {kernel_size}")
  if causal:
    return kernel_size - 1, 0
  if kernel_size % 2 == 0:
    raise ValueError(f"a centred convolution needs an odd kernel size, got {kernel_size}")
  return kernel_size // 2, kernel_size // 2


def relative_sinusoids(length: int, dim: int) -> np.ndarray:
  """Sinusoidal embeddings of the offsets T-1, T-2, ..., -(T-1): float32 [2T - 1, D].

  Row n embeds offset r = T - 1 - n as (sin(r w_0), cos(r w_0), sin(r w_1), ...),
  w_i = 10000^(-2i / D).
  """
  if dim % 2:
    raise ValueError(f"relative position embeddings need an even width, got {dim}")
  offsets = np.arange(length - 1, -length, -1, dtype=np.float64)[:, None]      # [2T-1, 1]
  freqs = np.exp(-np.log(10000.0) * np.arange(0, dim, 2, dtype=np.float64) / dim)
  angles = offsets * freqs                                                     # [2T-1, D/2]
  table = np.stack([np.sin(angles), np.cos(angles)], axis=-1).reshape(2 * length - 1, dim)
  return table.astype(np.float32)


def relative_logits(query: jax.Array, pos_keys: jax.Array) -> jax.Array:
  """Position logits query_i . pos_keys[offset i - j]: [B, T, H, K] x [2T-1, H, K] -> [B, H, T, T].

  `pos_keys` rows follow `relative_sinusoids` (row n = offset T - 1 - n), so logit (i, j) reads
  row T - 1 - i + j of the full product: Transformer-XL's "relative shift", written as a gather.
  """
  length = query.shape[1]
  full = jnp.einsum("bthk,nhk->bhtn", query, pos_keys)                         # [B, H, T, 2T-1]
  rows = np.arange(length)[:, None]
  index = length - 1 - rows + np.arange(length)[None, :]                       # [T, T]
  return full[:, :, rows, index]                                               # [B, H, T, T]


def _attention_mask(mask: jax.Array | None, batch: int, length: int, causal: bool) -> jax.Array:
  """Allowed (query, key) pairs: bool [B, 1, T, T]."""
  allowed = jnp.ones((batch, 1, length, length), bool)
  if mask is not None:
    allowed = allowed & mask[:, None, None, :].astype(bool)
  if causal:
    allowed = allowed & jnp.tril(jnp.ones((length, length), bool))
  return allowed


def _check_mask(x: jax.Array, mask: jax.Array | None, where: str) -> None:
  if mask is not None and tuple(mask.shape) != tuple(x.shape[:2]):
    raise ValueError(f"{where}: mask shape {tuple(mask.shape)} does not match the input's "
                     f"[B, T] = {tuple(x.shape[:2])}")


def _layer_norm(name: str, param_dtype: jnp.dtype) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=1e-5, dtype=jnp.float32, param_dtype=param_dtype, name=name)


class FeedForward(nn.Module):
  """Conformer FFN module on x [B, T, D] -> [B, T, D] (without the macaron 1/2 or residual)."""
  hidden_dim: int
  dropout_rate: float = 0.1
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
    dense = lambda d, name: nn.Dense(d, dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    width = x.shape[-1]
    y = _layer_norm("norm", self.param_dtype)(x).astype(self.dtype)
    y = nn.swish(dense(self.hidden_dim, "dense_in")(y))                        # [B, T, ffn]
    y = nn.Dropout(self.dropout_rate)(y, deterministic=deterministic)
    y = dense(width, "dense_out")(y)                                           # [B, T, D]
    return nn.Dropout(self.dropout_rate)(y, deterministic=deterministic)


class RelativeSelfAttention(nn.Module):
  """LN -> relative-position multi-head self-attention (module docstring) -> dropout.

  x [B, T, D] -> [B, T, D], without the residual. Keys at padded frames (mask False) are never
  attended to; with `causal`, neither are future keys.
  """
  num_heads: int
  causal: bool = False
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None, *,
               deterministic: bool) -> jax.Array:
    batch, length, width = x.shape
    if width % self.num_heads:
      raise ValueError(f"RelativeSelfAttention: width {width} is not divisible by "
                       f"{self.num_heads} heads")
    _check_mask(x, mask, "RelativeSelfAttention")
    head = width // self.num_heads
    proj = lambda name, use_bias=True: nn.DenseGeneral(
        (self.num_heads, head), use_bias=use_bias, dtype=self.dtype,
        param_dtype=self.param_dtype, name=name)
    y = _layer_norm("norm", self.param_dtype)(x).astype(self.dtype)
    q, k, v = proj("query")(y), proj("key")(y), proj("value")(y)               # [B, T, H, K]
    pos = jnp.asarray(relative_sinusoids(length, width), self.dtype)           # [2T-1, D]
    pos_keys = proj("pos", use_bias=False)(pos)                                # [2T-1, H, K]
    bias_init = nn.initializers.xavier_uniform()
    bias_u = self.param("pos_bias_u", bias_init, (self.num_heads, head), self.param_dtype)
    bias_v = self.param("pos_bias_v", bias_init, (self.num_heads, head), self.param_dtype)

    content = jnp.einsum("bthk,bshk->bhts", q + bias_u.astype(self.dtype), k)
    position = relative_logits(q + bias_v.astype(self.dtype), pos_keys)
    logits = (content + position).astype(jnp.float32) / np.sqrt(head)          # [B, H, T, T]
    logits = jnp.where(_attention_mask(mask, batch, length, self.causal), logits, _NEG_INF)
    weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    weights = nn.Dropout(self.attention_dropout_rate)(weights, deterministic=deterministic)
    out = jnp.einsum("bhts,bshk->bthk", weights, v)                            # [B, T, H, K]
    out = nn.DenseGeneral(width, axis=(-2, -1), dtype=self.dtype, param_dtype=self.param_dtype,
                          name="out")(out)                                     # [B, T, D]
    return nn.Dropout(self.dropout_rate)(out, deterministic=deterministic)


class DepthwiseConv1D(nn.Module):
  """Per-channel 1-D convolution over time, x [B, T, C] -> [B, T, C], centred or causal.

  out[t, c] = bias[c] + sum_m w[m, c] x[t + m - left, c] with (left, right) = `conv_padding`.
  """
  kernel_size: int
  causal: bool = False
  use_bias: bool = True
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    channels = x.shape[-1]
    return nn.Conv(channels, (self.kernel_size,), padding=(conv_padding(self.kernel_size,
                                                                         self.causal),),
                   feature_group_count=channels, use_bias=self.use_bias, dtype=self.dtype,
                   param_dtype=self.param_dtype, name="conv")(x)


class ConvolutionModule(nn.Module):
  """Conformer convolution module (module docstring), x [B, T, D] -> [B, T, D], no residual.

  Padded frames are zeroed right before the depthwise convolution, the only step that mixes
  frames, so they cannot reach valid frames.
  """
  kernel_size: int
  causal: bool = False
  dropout_rate: float = 0.1
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None, *,
               deterministic: bool) -> jax.Array:
    _check_mask(x, mask, "ConvolutionModule")
    width = x.shape[-1]
    dense = lambda d, name: nn.Dense(d, dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    y = _layer_norm("norm", self.param_dtype)(x).astype(self.dtype)
    y = nn.glu(dense(2 * width, "pointwise_in")(y), axis=-1)                   # [B, T, D]
    if mask is not None:
      y = jnp.where(mask[..., None], y, 0)
    y = DepthwiseConv1D(self.kernel_size, self.causal, dtype=self.dtype,
                        param_dtype=self.param_dtype, name="depthwise")(y)
    y = nn.swish(_layer_norm("conv_norm", self.param_dtype)(y).astype(self.dtype))
    y = dense(width, "pointwise_out")(y)
    return nn.Dropout(self.dropout_rate)(y, deterministic=deterministic)


class ConformerBlock(nn.Module):
  """One macaron Conformer block (module docstring): x [B, T, D], mask [B, T] -> [B, T, D]."""
  num_heads: int
  ffn_dim: int
  kernel_size: int
  causal: bool = False
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None, *,
               deterministic: bool) -> jax.Array:
    common = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    ffn = lambda name: FeedForward(self.ffn_dim, self.dropout_rate, name=name, **common)
    x = x.astype(self.dtype)
    x = x + 0.5 * ffn("ffn_macaron")(x, deterministic=deterministic)
    x = x + RelativeSelfAttention(self.num_heads, self.causal, self.dropout_rate,
                                  self.attention_dropout_rate, name="attention", **common)(
                                      x, mask, deterministic=deterministic)
    x = x + ConvolutionModule(self.kernel_size, self.causal, self.dropout_rate, name="conv",
                              **common)(x, mask, deterministic=deterministic)
    x = x + 0.5 * ffn("ffn")(x, deterministic=deterministic)
    return _layer_norm("final_norm", self.param_dtype)(x).astype(self.dtype)


class Conformer(nn.Module):
  """A stack of `num_blocks` Conformer blocks: x [B, T, D], mask [B, T] -> [B, T, D].

  Attributes:
    num_blocks: N blocks (DAE-Talker: 4 in the speech encoder, 4 in the latent decoder).
    num_heads: H (DAE-Talker: 2).
    ffn_dim: FFN hidden width.
    kernel_size: depthwise convolution kernel k (DAE-Talker: 13).
    causal: causal depthwise convolutions and attention instead of centred / full ones.
    dropout_rate: dropout after the FFN activation and on every module's output.
    attention_dropout_rate: dropout on the attention weights.
  """
  num_blocks: int
  num_heads: int
  ffn_dim: int
  kernel_size: int
  causal: bool = False
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None, *,
               deterministic: bool) -> jax.Array:
    if x.ndim != 3:
      raise ValueError(f"Conformer: expected x [B, T, D], got {tuple(x.shape)}")
    _check_mask(x, mask, "Conformer")
    for i in range(self.num_blocks):
      x = ConformerBlock(self.num_heads, self.ffn_dim, self.kernel_size, self.causal,
                         self.dropout_rate, self.attention_dropout_rate, dtype=self.dtype,
                         param_dtype=self.param_dtype, name=f"block_{i}")(
                             x, mask, deterministic=deterministic)
    return x
