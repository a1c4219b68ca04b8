"""Attention: the scaled dot-product core, spatial self-attention over feature maps, and
multi-head self- / cross-attention over sequences.

Dimensions: B batch, N query positions, M key (context) positions, D query width, E context
width, H heads, K head width, C channels and L = h w positions of a feature map [B, h, w, C],
F feed-forward width.

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
  SpatialTransformer     latent diffusion's cross-attention block for feature maps (LDM
                         `ldm/modules/attention.py` `SpatialTransformer` with
                         `BasicTransformerBlock`), generalised to any number of contexts read
                         in sequence:
                           t = proj_in(GN(x)) as L tokens of width C = H K
                           t = t + attn(LN(t))                            (self, optional)
                           t = t + cross_i(LN_i(t), context_i)            i = 0, 1, ... in order
                           t = t + ff(LN(t)), GEGLU: Dense 2F -> a * GELU(g) -> Dense C
                           x + proj_out(t)
                         proj_in / proj_out are Dense over channels (LDM's 1x1 convs), proj_out
                         zero-initialised so a fresh block is the identity.
                         The attentions are `MultiHeadAttention` without q/k/v biases (LDM's
                         `CrossAttention`); each cross-attention is named by the caller (FD2Talk:
                         `phi1` reads the motion, `phi2` the reference latent).
Masks are boolean, True = may attend: `mask` [B, N, M] per query-key pair, `key_mask` [B, M] per
key (padding). A masked logit is `MASKED_LOGIT`, finite, so a fully masked row gets uniform
weights instead of NaN.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Sequence

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


class GegluMlp(nn.Module):
  """x [B, N, D] -> Dense 2F `proj` -> a * GELU(g) (a, g the halves) -> Dense D `out` (LDM's
  `FeedForward(glu=True)`; GELU exact as PyTorch's default).

  Attributes:
    hidden_dim: F.
  """
  hidden_dim: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    dense = lambda d, name: nn.Dense(d, dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    a, g = jnp.split(dense(2 * self.hidden_dim, "proj")(x), 2, axis=-1)     # [B, N, F] each
    return dense(x.shape[-1], "out")(a * nn.gelu(g, approximate=False))


class SpatialTransformer(nn.Module):
  """x [B, h, w, C] and contexts [B, M_i, E_i] -> [B, h, w, C] (module docstring).

  Attributes:
    context_names: one name per cross-attention, applied in this order to the contexts given
      in the same order (their LayerNorms are `norm_<name>`).
    num_heads: H, used when `head_channels` is None.
    head_channels: K; when set, H = C / K (LDM's `num_head_channels`).
    self_attention: the self-attention over the L positions (LDM's `attn1`).
    ff_mult: F / C.
    norm_eps, norm_groups, norm_rule: the input GroupNorm (LDM: 32 groups, eps 1e-6).
    layer_norm_eps: the token LayerNorms' epsilon (PyTorch's 1e-5).
  """
  context_names: Sequence[str] = ("cross_attn",)
  num_heads: int = 1
  head_channels: int | None = None
  self_attention: bool = True
  ff_mult: int = 4
  norm_eps: float = 1e-6
  norm_groups: int = 32
  norm_rule: norm.GroupRule = "cap"
  layer_norm_eps: float = norm.TORCH_EPS
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, contexts: Sequence[jax.Array]) -> jax.Array:
    if len(contexts) != len(self.context_names):
      raise ValueError(f"SpatialTransformer {self.name}: {len(self.context_names)} cross-"
                       f"attentions {tuple(self.context_names)} need as many contexts, got "
                       f"{len(contexts)}")
    b, h, w, c = x.shape
    heads = _heads(c, self.num_heads, self.head_channels, f"SpatialTransformer {self.name}")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    layer_norm = lambda name: nn.LayerNorm(self.layer_norm_eps, dtype=jnp.float32,
                                           param_dtype=self.param_dtype, name=name)
    attend = lambda name: MultiHeadAttention(heads, c // heads, use_bias=False, name=name, **kw)
    y = norm.group_norm(c, epsilon=self.norm_eps, rule=self.norm_rule, groups=self.norm_groups,
                        param_dtype=self.param_dtype, name="norm")(x).astype(self.dtype)
    t = nn.Dense(c, name="proj_in", **kw)(y.reshape(b, h * w, c))         # [B, L, C]
    if self.self_attention:
      t = t + attend("attn")(layer_norm("norm_attn")(t))
    for name, context in zip(self.context_names, contexts):
      t = t + attend(name)(layer_norm(f"norm_{name}")(t), context.astype(self.dtype))
    t = t + GegluMlp(self.ff_mult * c, name="ff", **kw)(layer_norm("norm_ff")(t))
    zeros = nn.initializers.zeros_init()
    out = nn.Dense(c, kernel_init=zeros, bias_init=zeros, name="proj_out", **kw)(t)
    return x.astype(self.dtype) + out.reshape(b, h, w, c)                  # [B, h, w, C]
