"""A pre-norm transformer block (self-attention, optional cross-attention, MLP) for sequences.

Dimensions: B batch, N tokens, M context tokens, D width, E context width, F = mlp_ratio D.

  x = x + attn(norm1(x))                    self-attention (`mask` [B, N, N], `key_mask` [B, N]);
                                            left out with self_attention=False
  x = x + cross_attn(norm_cross(x), ctx)    with `cross_attention` (`context_mask` [B, N, M],
                                            `context_key_mask` [B, M])
  x = x + mlp(norm2(x))                     Dense F (`fc1`) -> GELU -> Dense D (`fc2`)
Names follow timm's ViT block (`norm1`, `attn`, `norm2`, `mlp.fc1`, `mlp.fc2`). LayerNorms run in
float32; the residual stream is in the compute dtype. Masks: `nn.attention`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from talking_heads.nn.attention import MultiHeadAttention


class Mlp(nn.Module):
  """x [B, N, D] -> Dense F `fc1` -> GELU -> Dense D `fc2` -> [B, N, D].

  Attributes:
    hidden_dim: F.
    gelu_approximate: tanh GELU (DiT) instead of the exact erf one (timm's ViT).
  """
  hidden_dim: int
  gelu_approximate: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    dense = lambda d, name: nn.Dense(d, dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    h = nn.gelu(dense(self.hidden_dim, "fc1")(x), approximate=self.gelu_approximate)   # [B, N, F]
    return dense(x.shape[-1], "fc2")(h)


class TransformerBlock(nn.Module):
  """x [B, N, D] (and context [B, M, E]) -> [B, N, D] (module docstring).

  Attributes:
    num_heads: attention heads (both attentions).
    mlp_ratio: F / D.
    self_attention: the self-attention sub-block (False: a cross-attention-only block, e.g.
      queries of one image attending to another's tokens).
    cross_attention: add the cross-attention sub-block (then `context` is required).
    norm_eps: LayerNorm epsilon (timm's ViT and DiT: 1e-6).
    qkv_bias: biases on the attention's query, key and value projections.
    gelu_approximate: see `Mlp`.
  """
  num_heads: int
  mlp_ratio: float = 4.0
  self_attention: bool = True
  cross_attention: bool = False
  norm_eps: float = 1e-6
  qkv_bias: bool = True
  gelu_approximate: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, context: jax.Array | None = None, *,
               mask: jax.Array | None = None, key_mask: jax.Array | None = None,
               context_mask: jax.Array | None = None,
               context_key_mask: jax.Array | None = None) -> jax.Array:
    if self.cross_attention != (context is not None):
      raise ValueError(f"TransformerBlock {self.name}: context is needed exactly when "
                       f"cross_attention=True (got cross_attention={self.cross_attention}, "
                       f"context {'given' if context is not None else 'None'})")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    layer_norm = lambda name: nn.LayerNorm(self.norm_eps, dtype=jnp.float32,
                                           param_dtype=self.param_dtype, name=name)
    attention = lambda name: MultiHeadAttention(self.num_heads, use_bias=self.qkv_bias,
                                                name=name, **kw)
    x = x.astype(self.dtype)
    if self.self_attention:
      x = x + attention("attn")(layer_norm("norm1")(x), mask=mask, key_mask=key_mask)
    if self.cross_attention:
      x = x + attention("cross_attn")(layer_norm("norm_cross")(x), context,
                                      mask=context_mask, key_mask=context_key_mask)
    hidden = int(round(self.mlp_ratio * x.shape[-1]))
    return x + Mlp(hidden, self.gelu_approximate, name="mlp", **kw)(layer_norm("norm2")(x))
