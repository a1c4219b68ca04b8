"""Attention: the scaled dot-product core, spatial self-attention over feature maps, and
multi-head self- / cross-attention over sequences.

Dimensions: B batch, N query positions, M key (context) positions, D query width, E context
width, H heads, K head width, C channels and L = h w positions of a feature map [B, h, w, C].

  dot_product_attention  softmax(q k^T / sqrt(K)) v per head; logits and softmax in float32
                         (products accumulated in float32 whatever the compute dtype), the
                         weights cast to v's dtype for the second product.
  SpatialSelfAttention   x + proj_out(attention(GN(x))) over the L positions. One computation,
                         two parameter layouts, because checkpoint converters map onto them:
                         "conv"  1x1 convs `q`, `k`, `v`, `proj_out` (taming's AttnBlock, the
                                 VQGAN's NonLocalBlock);
                         "fused" Dense `qkv` [C, 3C] laid out per head as (q, k, v) (ADM's
                                 "legacy" order, diffae's default) and Dense `proj_out`.
  MultiHeadAttention     queries [B, N, D] over a context [B, M, E] (self-attention when there
                         is none): DenseGeneral `query`, `key`, `value` [., H, K] and `out`
                         [H, K, D], as `nn.conformer`.
Masks are boolean, True = may attend: `mask` [B, N, M] per query-key pair, `key_mask` [B, M] per
key (padding). A masked logit is `MASKED_LOGIT`, finite, so a fully masked row gets uniform
weights instead of NaN.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from talking_heads.nn import norm

Projections = Literal["conv", "fused"]

PROJECTIONS = ("conv", "fused")
MASKED_LOGIT = -1e30


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array,
                          mask: jax.Array | None = None) -> jax.Array:
  """q [B, N, H, K], k and v [B, M, H, K], mask broadcastable to [B, H, N, M] -> [B, N, H, K]."""
  b, n, h, d = q.shape
  m = k.shape[1]
  # Heads folded into the batch: 3-D matmuls and softmax, the form taming's single-head block
  # computed (its gradients stay bit-identical, and so do runs trained before).
  fold = lambda t: jnp.swapaxes(t, 1, 2).reshape(b * h, t.shape[1], d)  # [B H, N|M, K]
  logits = jnp.einsum("bnk,bmk->bnm", fold(q), fold(k),
                      preferred_element_type=jnp.float32) / jnp.sqrt(jnp.float32(d))
  if mask is not None:
    mask = jnp.broadcast_to(mask, (b, h, n, m)).reshape(b * h, n, m)
    logits = jnp.where(mask, logits, MASKED_LOGIT)
  weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)             # [B H, N, M]
  out = jnp.einsum("bnm,bmk->bnk", weights, fold(v))                     # [B H, N, K]
  return jnp.swapaxes(out.reshape(b, h, n, d), 1, 2)                     # [B, N, H, K]


def attention_mask(batch: int, queries: int, keys: int, mask: jax.Array | None = None,
                   key_mask: jax.Array | None = None) -> jax.Array | None:
  """mask [B, N, M] and key_mask [B, M] (either or both optional) -> [B, 1, N, M] or None."""
  if mask is not None and mask.shape != (batch, queries, keys):
    raise ValueError(f"attention mask must be [B, N, M] = [{batch}, {queries}, {keys}], got "
                     f"{mask.shape}")
  if key_mask is not None and key_mask.shape != (batch, keys):
    raise ValueError(f"attention key_mask must be [B, M] = [{batch}, {keys}], got "
                     f"{key_mask.shape}")
  full = None if mask is None else mask.astype(bool)
  if key_mask is not None:
    keep = jnp.broadcast_to(key_mask.astype(bool)[:, None, :], (batch, queries, keys))
    full = keep if full is None else full & keep
  return None if full is None else full[:, None]


def _heads(channels: int, num_heads: int, head_channels: int | None, where: str) -> int:
  heads = channels // head_channels if head_channels else num_heads
  if heads < 1 or channels % heads:
    raise ValueError(f"{where}: {channels} channels do not split into {heads} heads")
  return heads


class SpatialSelfAttention(nn.Module):
  """x [B, h, w, C] -> x + proj_out(attention(GN(x))) [B, h, w, C] (module docstring).

  Attributes:
    projections: "conv" (taming) or "fused" (ADM); head n reads channels [nK, (n+1)K) of the
      conv projections and block n of the fused one.
    num_heads: N, used when `head_channels` is None.
    head_channels: K; when set, N = C / K.
    norm_eps, norm_groups, norm_rule: the GroupNorm `norm` (`nn.norm.group_norm`).
    zero_init: zero-initialise `proj_out` so a fresh block is the identity (ADM; not taming).
  """
  projections: Projections = "fused"
  num_heads: int = 1
  head_channels: int | None = None
  norm_eps: float = norm.TORCH_EPS
  norm_groups: int = 32
  norm_rule: norm.GroupRule = "cap"
  zero_init: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.projections not in PROJECTIONS:
      raise ValueError(f"SpatialSelfAttention {self.name}: projections must be one of "
                       f"{PROJECTIONS}, got {self.projections!r}")
    b, h, w, c = x.shape
    heads = _heads(c, self.num_heads, self.head_channels, f"SpatialSelfAttention {self.name}")
    k = c // heads
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    zeros = nn.initializers.zeros_init()
    out_init = dict(kernel_init=zeros, bias_init=zeros) if self.zero_init else {}
    y = norm.group_norm(c, epsilon=self.norm_eps, rule=self.norm_rule, groups=self.norm_groups,
                        param_dtype=self.param_dtype, name="norm")(x).astype(self.dtype)
    if self.projections == "conv":
      conv1 = lambda name, **init: nn.Conv(c, (1, 1), name=name, **init, **kw)
      q, key, v = (conv1(n)(y).reshape(b, h * w, heads, k) for n in ("q", "k", "v"))
      proj_out = conv1("proj_out", **out_init)
    else:
      qkv = nn.Dense(3 * c, name="qkv", **kw)(y.reshape(b, h * w, c))   # [B, L, 3C]
      qkv = qkv.reshape(b, h * w, heads, 3, k)                           # per head (q, k, v)
      q, key, v = qkv[..., 0, :], qkv[..., 1, :], qkv[..., 2, :]
      proj_out = nn.Dense(c, name="proj_out", **out_init, **kw)
    out = dot_product_attention(q, key, v).reshape(b, h, w, c)          # [B, h, w, C]
    return x.astype(self.dtype) + proj_out(out)


class MultiHeadAttention(nn.Module):
  """Queries x [B, N, D] attend to a context [B, M, E] (x when None) -> [B, N, D].

  Attributes:
    num_heads: H.
    head_dim: K; None uses D / H.
    use_bias: biases on the query, key and value projections (timm's `qkv_bias`).
  """
  num_heads: int
  head_dim: int | None = None
  use_bias: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, context: jax.Array | None = None,
               mask: jax.Array | None = None, key_mask: jax.Array | None = None) -> jax.Array:
    """mask [B, N, M] and key_mask [B, M], True = may attend (module docstring)."""
    context = x if context is None else context
    b, n, d = x.shape
    if context.ndim != 3 or context.shape[0] != b:
      raise ValueError(f"MultiHeadAttention {self.name}: context must be [B, M, E] with B = {b}, "
                       f"got {context.shape}")
    k = self.head_dim or d // _heads(d, self.num_heads, None, f"MultiHeadAttention {self.name}")
    proj = lambda name: nn.DenseGeneral((self.num_heads, k), use_bias=self.use_bias,
                                        dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    q = proj("query")(x)                                               # [B, N, H, K]
    key, v = proj("key")(context), proj("value")(context)              # [B, M, H, K]
    full = attention_mask(b, n, context.shape[1], mask, key_mask)      # [B, 1, N, M]
    out = dot_product_attention(q, key, v, full)                       # [B, N, H, K]
    return nn.DenseGeneral(d, axis=(-2, -1), dtype=self.dtype, param_dtype=self.param_dtype,
                           name="out")(out)                            # [B, N, D]
