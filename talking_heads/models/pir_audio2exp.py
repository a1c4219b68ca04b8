"""PIR component A: audio to expression, a FaceFormer-style biased transformer decoder
(Huang et al. 2023 supp. §1; Fan et al. 2022 `faceformer.py`).

Dimensions: B batch, T frames (25 fps; the context length k), F audio feature width, A identity
parameters, E expression parameters, D model width, H heads.

  audio [B, T, F] (the front end's features at the video rate, see `linear_interpolation`)
      -> audio projection Dense F -> D                                    memory [B, T, D]
  tokens: token_0 = style(id), token_i = exp_enc(a_{i-1}) + style(id), i >= 1, where
      style = Dense A -> D without bias and exp_enc = Dense E -> D        [B, T, D]
      + periodic positional encoding (PPE: t mod p, p = 25) + dropout
  decoder layers (post-LN, torch `nn.TransformerDecoderLayer`):
      x = LN(x + drop(SelfAttn(x, temporal bias)))
      x = LN(x + drop(CrossAttn(x, memory, alignment mask)))
      x = LN(x + drop(Dense(ReLU(Dense 2D')) ))
  exp_dec Dense D -> E, zero-initialised                                  expressions [B, T, E]

Temporal bias [H, T, T] (FaceFormer `init_biased_mask`, the code's sign; PIR Eq. S2 prints +):
  bias[h, i, j] = -slope_h floor((i - j) / p) for j <= i, masked for j > i, with ALiBi slopes
  2^(-8 (h + 1) / H) (4 heads: 1/4, 1/16, 1/64, 1/256). Alignment mask [T, T]: frame i attends
  only audio frame i (PIR Eq. S3, FaceFormer's `enc_dec_mask` for video-rate audio).
Both make output i a function of audio[:i + 1] and a[:i] only.

Training is teacher-forced (`__call__` with the ground-truth expressions); `autoregressive`
generates with `jax.lax.scan`, one full decoder pass per frame over a fixed-length buffer of the
expressions made so far, so its output equals the teacher-forced pass fed its own output.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talking_heads.nn.attention import MASKED_LOGIT

PERIOD = 25
TORCH_LN_EPS = 1e-5


def periodic_positional_encoding(length: int, dim: int, period: int = PERIOD) -> np.ndarray:
  """[T, D]: PPE(t, 2i) = sin((t mod p) / 10000^(2i / D)), PPE(t, 2i + 1) = cos(...)."""
  t = (np.arange(length) % period)[:, None].astype(np.float64)
  inv = np.exp(-math.log(10000.0) * np.arange(0, dim, 2) / dim)
  pe = np.zeros((length, dim))
  pe[:, 0::2] = np.sin(t * inv)
  pe[:, 1::2] = np.cos(t * inv)[:, :dim // 2]
  return pe.astype(np.float32)


def alibi_slopes(num_heads: int) -> np.ndarray:
  """ALiBi's geometric head slopes (FaceFormer `get_slopes`), [H]."""
  def power_of_2(n):
    start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))
    return [start * start**i for i in range(n)]
  if math.log2(num_heads).is_integer():
    return np.asarray(power_of_2(num_heads))
  closest = 2 ** math.floor(math.log2(num_heads))
  extra = alibi_slopes(2 * closest)[0::2][:num_heads - closest]
  return np.asarray(power_of_2(closest) + list(extra))


def temporal_bias(num_heads: int, length: int, period: int = PERIOD) -> np.ndarray:
  """[H, T, T] additive self-attention bias (module docstring); future keys are -inf."""
  i, j = np.arange(length)[:, None], np.arange(length)[None, :]
  steps = np.floor((i - j) / period)
  bias = -alibi_slopes(num_heads)[:, None, None] * steps[None]
  return np.where(j <= i, bias, -np.inf).astype(np.float32)


def alignment_mask(length: int) -> np.ndarray:
  """[T, T] boolean: frame i may attend audio frame j only when j == i."""
  return np.eye(length, dtype=bool)


def linear_interpolation(features: jax.Array, num_frames: int) -> jax.Array:
  """[B, S, F] -> [B, T, F] linearly resampled with aligned end points (FaceFormer
  `linear_interpolation`: F.interpolate(mode='linear', align_corners=True))."""
  s = features.shape[1]
  pos = jnp.linspace(0.0, s - 1.0, num_frames) if num_frames > 1 else jnp.zeros((1,))
  lo = jnp.clip(jnp.floor(pos).astype(jnp.int32), 0, s - 1)
  hi = jnp.minimum(lo + 1, s - 1)
  frac = (pos - lo)[None, :, None].astype(features.dtype)
  return features[:, lo] * (1 - frac) + features[:, hi] * frac


class BiasedAttention(nn.Module):
  """Multi-head attention of queries [B, N, D] over keys [B, M, D] with an additive logit bias
  [H, N, M] (-inf = blocked), torch `nn.MultiheadAttention` layout (in-projection biases)."""
  num_heads: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, context: jax.Array, bias: jax.Array) -> jax.Array:
    d = x.shape[-1]
    if d % self.num_heads:
      raise ValueError(f"BiasedAttention {self.name}: width {d} does not split into "
                       f"{self.num_heads} heads")
    k = d // self.num_heads
    proj = lambda name: nn.DenseGeneral((self.num_heads, k), dtype=self.dtype,
                                        param_dtype=self.param_dtype, name=name)
    q, key, v = proj("query")(x), proj("key")(context), proj("value")(context)  # [B, ., H, K]
    logits = jnp.einsum("bnhk,bmhk->bhnm", q, key,
                        preferred_element_type=jnp.float32) / math.sqrt(k)
    logits = jnp.where(jnp.isfinite(bias)[None], logits + bias[None], MASKED_LOGIT)
    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)        # [B, H, N, M]
    out = jnp.einsum("bhnm,bmhk->bnhk", weights, v)
    return nn.DenseGeneral(d, axis=(-2, -1), dtype=self.dtype, param_dtype=self.param_dtype,
                           name="out")(out)                          # [B, N, D]


class BiasedDecoderLayer(nn.Module):
  """x [B, T, D], memory [B, T, D] -> [B, T, D]: the post-LN decoder layer of the module
  docstring."""
  num_heads: int
  mlp_dim: int
  dropout: float = 0.1
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, memory: jax.Array, self_bias: jax.Array,
               cross_bias: jax.Array, deterministic: bool) -> jax.Array:
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    norm = lambda name: nn.LayerNorm(TORCH_LN_EPS, dtype=jnp.float32,
                                     param_dtype=self.param_dtype, name=name)
    drop = lambda h: nn.Dropout(self.dropout)(h, deterministic=deterministic)
    x = norm("norm1")(x + drop(BiasedAttention(self.num_heads, name="self_attn", **kw)(
        x, x, self_bias)))
    x = norm("norm2")(x + drop(BiasedAttention(self.num_heads, name="cross_attn", **kw)(
        x, memory, cross_bias)))
    h = nn.relu(nn.Dense(self.mlp_dim, name="mlp_in", **kw)(x))
    h = nn.Dense(x.shape[-1], name="mlp_out", **kw)(drop(h))
    return norm("norm3")(x + drop(h)).astype(self.dtype)


class Audio2Expression(nn.Module):
  """audio [B, T, F], identity [B, A], expressions [B, T, E] -> predicted expressions [B, T, E]
  (teacher-forced; module docstring).

  Attributes:
    expression_dim: E.
    width: D (paper 1024).
    num_heads: H (paper 4).
    mlp_dim: feed-forward width (paper 2048).
    num_layers: decoder layers (paper 1).
    period: p of the PPE and the temporal bias (paper 25).
    max_length: longest T (the PPE table's and FaceFormer's 600).
    dropout: after the PPE and in every layer (0.1).
  """
  expression_dim: int
  width: int = 1024
  num_heads: int = 4
  mlp_dim: int = 2048
  num_layers: int = 1
  period: int = PERIOD
  max_length: int = 600
  dropout: float = 0.1
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, audio: jax.Array, identity: jax.Array, expressions: jax.Array,
               deterministic: bool = True) -> jax.Array:
    b, t, _ = audio.shape
    if t > self.max_length:
      raise ValueError(f"Audio2Expression: {t} frames exceed max_length {self.max_length}")
    if identity.shape != (b, identity.shape[-1]) or expressions.shape != (b, t,
                                                                         self.expression_dim):
      raise ValueError(f"Audio2Expression: identity must be [B, A] and expressions "
                       f"[B, T, E] = [{b}, {t}, {self.expression_dim}], got {identity.shape} and "
                       f"{expressions.shape}")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    memory = nn.Dense(self.width, name="audio_proj", **kw)(audio)               # [B, T, D]
    style = nn.Dense(self.width, use_bias=False, name="style", **kw)(identity)  # [B, D]
    previous = nn.Dense(self.width, name="exp_enc", **kw)(expressions[:, :-1])  # [B, T-1, D]
    tokens = jnp.concatenate([jnp.zeros_like(style)[:, None], previous], axis=1)
    tokens = tokens + style[:, None]
    tokens = tokens + periodic_positional_encoding(t, self.width, self.period)[None]
    x = nn.Dropout(self.dropout)(tokens, deterministic=deterministic)
    self_bias = jnp.asarray(temporal_bias(self.num_heads, t, self.period))
    cross_bias = jnp.asarray(np.where(alignment_mask(t), 0.0, -np.inf).astype(np.float32))
    for i in range(self.num_layers):
      x = BiasedDecoderLayer(self.num_heads, self.mlp_dim, self.dropout, name=f"layer_{i}",
                             **kw)(x, memory, self_bias, cross_bias[None], deterministic)
    return nn.Dense(self.expression_dim, kernel_init=nn.initializers.zeros,
                    name="exp_dec", **kw)(x).astype(jnp.float32)               # [B, T, E]


def autoregressive(model: Audio2Expression, variables: Any, audio: jax.Array,
                   identity: jax.Array, rng: jax.Array | None = None) -> jax.Array:
  """Expressions [B, T, E] generated frame by frame (`jax.lax.scan` over T): step i runs the
  decoder on the buffer of a_0 .. a_{i-1} (later entries are zero and, behind the causal bias,
  unseen) and keeps output i. With `rng`, dropout is active (a key per step)."""
  b, t, _ = audio.shape

  def step(buffer, i):
    rngs = None if rng is None else {"dropout": jax.random.fold_in(rng, i)}
    out = model.apply(variables, audio, identity, buffer, deterministic=rng is None, rngs=rngs)
    return jax.lax.dynamic_update_index_in_dim(buffer, out[:, i], i, axis=1), None

  buffer = jnp.zeros((b, t, model.expression_dim), jnp.float32)
  return jax.lax.scan(step, buffer, jnp.arange(t))[0]


def generate_in_windows(model: Audio2Expression, variables: Any, audio: jax.Array,
                        identity: jax.Array, context: int) -> jax.Array:
  """Expressions [B, T, E] for audio of any length, generated autoregressively in independent
  windows of `context` = k frames (the paper's samples a_1 .. a_k; k = 1 is "no context"). The
  last window is zero-padded audio, cut off afterwards."""
  b, t, f = audio.shape
  if context < 1 or context > model.max_length:
    raise ValueError(f"context must be in [1, {model.max_length}], got {context}")
  n = -(-t // context)
  padded = jnp.pad(audio, ((0, 0), (0, n * context - t), (0, 0)))
  windows = padded.reshape(b * n, context, f)
  out = autoregressive(model, variables, windows, jnp.repeat(identity, n, axis=0))
  return out.reshape(b, n * context, -1)[:, :t]
