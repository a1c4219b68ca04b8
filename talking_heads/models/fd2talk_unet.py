"""FD2Talk stage 2b: the latent diffusion UNet conditioned on motion and on the reference latent
by two cross-attentions (§3.3, Eqs. 6-7, 16; spec `shared/reference/systems/fd2talk.md` §2.6).

Dimensions: B batch (frames), h, w latent size (paper 64 x 64), c latent channels (paper 3),
D motion width (expression E + pose P; paper 64 + 6), Q context width (paper 128), C channels of
a UNet level, T_m motion tokens, L = h w reference tokens.

Contexts (computed once per call, shared by every block):
  motion     concat(beta, p) [B, D] -> tokens [B, T_m, Q] (`motion_tokens`):
             "per_coefficient" (spec §2.6 recommendation): token_j = m_j e_j + p_j with learned
             value and index embeddings e_j, p_j in R^Q, T_m = D; "single": one token
             Dense(D -> Q), T_m = 1 (the paper's literal reading: softmax over one key is 1, so
             phi1 then adds a spatially constant function of the motion).
  reference  x [B, h, w, c] -> L tokens, Dense c -> Q + 2-D sinusoidal PE  [B, L, Q] (Eq. 7)
UNet (LDM `openaimodel.UNetModel` layout; blocks `nn.unet.ResBlock` with scale-shift time
conditioning, `nn.resnet.Downsample` / `Upsample`, `nn.attention.SpatialTransformer`):
  conv_in c -> C_0; per level l: `num_res_blocks` x (ResBlock -> C_l [+ SpatialTransformer]),
  Downsample except at the last level; middle ResBlock, SpatialTransformer, ResBlock; decoder
  levels in reverse with num_res_blocks + 1 x (concat skip, ResBlock [+ SpatialTransformer]),
  Upsample except at level 0; GN -> SiLU -> zero-initialised conv3x3 -> J0_hat [B, h, w, c].
  Levels in `attention_levels` (and the middle) get a SpatialTransformer whose cross-attentions
  are (`conditioning`):
    "two_attentions"  phi1 (Q from J_t's features, K/V from the motion tokens; Eq. 6), then
                      phi2 (Q from phi1's output, K/V from the reference tokens; Eq. 7)
    "concatenated"    one cross-attention `cross_attn` over [motion tokens, reference tokens]
                      (Table 2's "Concatenate UNet Conditions")
The UNet predicts x0 (Eq. 16); time embedding sinusoid(C_0) -> Dense 4 C_0 -> SiLU -> Dense.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from talking_heads.nn import attention, norm, positional, remat, resnet, unet

MotionTokens = Literal["per_coefficient", "single"]
Conditioning = Literal["two_attentions", "concatenated"]

MOTION_TOKENS = ("per_coefficient", "single")
CONDITIONINGS = ("two_attentions", "concatenated")


class MotionContext(nn.Module):
  """Motion [B, D] -> tokens [B, T_m, Q] (module docstring).

  Attributes:
    context_dim: Q.
    tokens: "per_coefficient" or "single".
  """
  context_dim: int
  tokens: MotionTokens = "per_coefficient"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, motion: jax.Array) -> jax.Array:
    motion = motion.astype(self.dtype)
    if self.tokens == "single":
      return nn.Dense(self.context_dim, dtype=self.dtype, param_dtype=self.param_dtype,
                      name="proj")(motion)[:, None]                              # [B, 1, Q]
    if self.tokens != "per_coefficient":
      raise ValueError(f"MotionContext: tokens must be one of {MOTION_TOKENS}, got "
                       f"{self.tokens!r}")
    d = motion.shape[-1]
    init = nn.initializers.normal(1.0)
    value = self.param("value_embed", init, (d, self.context_dim), self.param_dtype)
    index = self.param("index_embed", init, (d, self.context_dim), self.param_dtype)
    return (motion[..., None] * value.astype(self.dtype)
            + index.astype(self.dtype))                                         # [B, D, Q]


class ReferenceContext(nn.Module):
  """Reference latent [B, h, w, c] -> tokens [B, h w, Q]: Dense c -> Q plus the 2-D sinusoidal
  encoding of each cell's (row, column) (`nn.positional.sinusoidal_2d`).

  Attributes:
    context_dim: Q (even).
  """
  context_dim: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, reference: jax.Array) -> jax.Array:
    b, h, w, c = reference.shape
    tokens = nn.Dense(self.context_dim, dtype=self.dtype, param_dtype=self.param_dtype,
                      name="proj")(reference.reshape(b, h * w, c).astype(self.dtype))  # [B, L, Q]
    return tokens + jnp.asarray(positional.sinusoidal_2d(h, w, self.context_dim), self.dtype)


class LatentUNet(nn.Module):
  """(J_t [B, h, w, c], t [B], motion [B, D], reference [B, h, w, c]) -> J0_hat [B, h, w, c]
  (module docstring).

  Attributes:
    latent_channels: c.
    motion_dim: D, checked against the motion input.
    width: C_0 (LDM's model_channels; spec 256).
    channel_mult: C_l = width * channel_mult[l] (spec (1, 2, 3, 4)).
    num_res_blocks: ResBlocks per encoder level (the decoder has one more).
    attention_levels: levels with SpatialTransformers (spec: LDM's attention_resolutions
      [8, 4, 2] at a 64 px latent = levels 1, 2, 3); the middle block always has one.
    head_channels: K per attention head (spec 32).
    context_dim: Q.
    motion_tokens: see `MotionContext`.
    conditioning: "two_attentions" (phi1 then phi2) or "concatenated".
    dropout: in the ResBlocks.
    norm_groups: GroupNorm groups (capped at the channel count).
    remat: recompute the ResBlocks' and SpatialTransformers' activations in the backward pass
      (`nn.remat.blocks`).
  """
  latent_channels: int = 3
  motion_dim: int = 70
  width: int = 256
  channel_mult: Sequence[int] = (1, 2, 3, 4)
  num_res_blocks: int = 2
  attention_levels: Sequence[int] = (1, 2, 3)
  head_channels: int = 32
  context_dim: int = 128
  motion_tokens: MotionTokens = "per_coefficient"
  conditioning: Conditioning = "two_attentions"
  dropout: float = 0.0
  norm_groups: int = 32
  remat: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, j_t: jax.Array, t: jax.Array, motion: jax.Array, reference: jax.Array,
               train: bool = False) -> jax.Array:
    if self.conditioning not in CONDITIONINGS:
      raise ValueError(f"LatentUNet: conditioning must be one of {CONDITIONINGS}, got "
                       f"{self.conditioning!r}")
    levels = len(self.channel_mult)
    factor = 2 ** (levels - 1)
    if (j_t.ndim != 4 or j_t.shape[-1] != self.latent_channels or j_t.shape[1] % factor
        or j_t.shape[2] % factor):
      raise ValueError(f"LatentUNet: J_t must be [B, h, w, {self.latent_channels}] with h, w "
                       f"multiples of {factor}, got {j_t.shape}")
    b = j_t.shape[0]
    if reference.shape != j_t.shape:
      raise ValueError(f"LatentUNet: reference must match J_t {j_t.shape}, got {reference.shape}")
    if motion.shape != (b, self.motion_dim):
      raise ValueError(f"LatentUNet: motion must be [B, D] = [{b}, {self.motion_dim}], got "
                       f"{motion.shape}")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    t = jnp.broadcast_to(jnp.asarray(t), (b,))
    temb = unet.TimestepEmbedding(4 * self.width, self.width, name="time_embed", **kw)(t)
    motion_ctx = MotionContext(self.context_dim, self.motion_tokens, name="motion_context",
                               **kw)(motion)                                    # [B, T_m, Q]
    reference_ctx = ReferenceContext(self.context_dim, name="reference_context",
                                     **kw)(reference)                           # [B, L, Q]
    if self.conditioning == "two_attentions":
      names, contexts = ("phi1", "phi2"), (motion_ctx, reference_ctx)
    else:
      names, contexts = ("cross_attn",), (jnp.concatenate([motion_ctx, reference_ctx], 1),)

    res_block_cls = remat.blocks(unet.ResBlock, self.remat, (4,))
    transformer_cls = remat.blocks(attention.SpatialTransformer, self.remat)

    def res_block(h, features, name):
      return res_block_cls(features, dropout=self.dropout, norm_groups=self.norm_groups,
                           name=name, **kw)(h, temb, None, train)

    def transformer(h, name):
      return transformer_cls(names, head_channels=self.head_channels,
                             norm_groups=self.norm_groups, name=name, **kw)(h, contexts)

    h = nn.Conv(self.width, (3, 3), padding=resnet.PAD1, name="conv_in",
                **kw)(j_t.astype(self.dtype))                                    # [B, h, w, C_0]
    skips = [h]
    for level, mult in enumerate(self.channel_mult):
      for i in range(self.num_res_blocks):
        h = res_block(h, self.width * mult, f"down_{level}_res_{i}")            # [B, R, R, C_l]
        if level in self.attention_levels:
          h = transformer(h, f"down_{level}_attn_{i}")
        skips.append(h)
      if level < levels - 1:
        h = resnet.Downsample(name=f"down_{level}_down", **kw)(h)               # [B, R/2, R/2, C_l]
        skips.append(h)
    h = res_block(h, h.shape[-1], "mid_res_0")
    h = transformer(h, "mid_attn")
    h = res_block(h, h.shape[-1], "mid_res_1")
    for level in reversed(range(levels)):
      for i in range(self.num_res_blocks + 1):
        h = jnp.concatenate([h, skips.pop()], axis=-1)                          # [B, R, R, C + C_skip]
        h = res_block(h, self.width * self.channel_mult[level], f"up_{level}_res_{i}")
        if level in self.attention_levels:
          h = transformer(h, f"up_{level}_attn_{i}")
      if level:
        h = resnet.Upsample(name=f"up_{level}_up", **kw)(h)                     # [B, 2R, 2R, C_l]
    h = nn.silu(norm.group_norm(h.shape[-1], epsilon=norm.TORCH_EPS, rule="cap",
                                groups=self.norm_groups, param_dtype=self.param_dtype,
                                name="out_norm")(h))
    zeros = nn.initializers.zeros_init()
    out = nn.Conv(self.latent_channels, (3, 3), padding=resnet.PAD1, kernel_init=zeros,
                  bias_init=zeros, name="out_conv", **kw)(h.astype(self.dtype))
    return out.astype(jnp.float32)                                              # [B, h, w, c]
