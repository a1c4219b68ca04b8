"""The diffusion autoencoder (diffae, Preechakul et al. 2022) used by DAE-Talker's image side.

A semantic encoder maps a frame to a latent z, and a conditional UNet predicts the noise of a
noised frame x_t given the timestep t and z. Architecture facts follow `phizaz/diffae`
(`model/unet.py`, `model/unet_autoenc.py`, `templates.py`); every size is a field whose default
is diffae's ffhq256 configuration:

  HalfUNet        conv_in; per level l (resolution R_l = H / 2^l): `num_res_blocks` ResBlocks
                  to width * channel_mult[l] (+ attention when R_l is in
                  `attention_resolutions`), then a down-sampling ResBlock except at the last
                  level; middle ResBlock -> attention -> ResBlock. Every output of conv_in and of
                  each level block is kept as a skip.
  SemanticEncoder HalfUNet of unconditioned ResBlocks (no time input) over
                  `channel_mult` (1,1,2,2,4,4,4); GN -> SiLU -> global average pool -> 1x1 conv
                  (not zero-initialised: diffae's `adaptivenonzero` pool) -> z [B, Z].
  ConditionalUNet time embedding sinusoid(width) -> Dense E -> SiLU -> Dense E; HalfUNet of
                  conditioned ResBlocks over `channel_mult` (1,1,2,2,4,4); decoder levels in
                  reverse, each with num_res_blocks + 1 ResBlocks on [h, skip] concatenations
                  (+ attention at the configured resolutions), then an up-sampling ResBlock
                  except at level 0; GN -> SiLU -> zero-initialised conv3x3 -> eps.
  The latent enters every UNet ResBlock raw (diffae's semantic path is the identity): each
  block computes its own scale from SiLU(z) (see `talking_heads.nn.unet.ResBlock`).

Images are NHWC in [-1, 1]. Dimensions: B batch, H, W image size, C image channels (3),
E time-embedding width, Z latent width, T training timesteps.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talking_heads.nn import attention, norm, remat, resnet, unet

FFHQ256_CHANNEL_MULT = (1, 1, 2, 2, 4, 4)
FFHQ256_ENCODER_CHANNEL_MULT = (1, 1, 2, 2, 4, 4, 4)


def _check_image(x: jax.Array, levels: int, where: str) -> None:
  """Raises a ValueError unless x is [B, H, W, C] with H and W divisible by 2^(levels - 1)."""
  if x.ndim != 4:
    raise ValueError(f"{where}: images must be [B, H, W, C], got shape {x.shape}")
  factor = 2 ** (levels - 1)
  if x.shape[1] % factor or x.shape[2] % factor:
    raise ValueError(f"{where}: image size {x.shape[1]}x{x.shape[2]} must be divisible by "
                     f"{factor} ({levels} levels halve it {levels - 1} times)")


class HalfUNet(nn.Module):
  """The contracting half of the UNet plus its middle block; returns (h, skips).

  Attributes:
    width: base channel count (diffae's `model_channels`).
    channel_mult: per-level width multipliers; their count is the number of levels.
    num_res_blocks: ResBlocks per level.
    attention_resolutions: feature-map heights (in pixels) that get self-attention.
    num_heads: attention heads.
    dropout: ResBlock dropout (only conditional blocks have a dropout layer).
    resblock_updown: down-sample with a ResBlock (diffae) instead of a strided conv.
    conditional: ResBlocks with time/latent modulation (UNet) or without (semantic encoder).
    norm_groups: GroupNorm groups.
    cond_activation: the ResBlocks apply SiLU to the latent (see `unet.ResBlock`).
    remat: recompute the ResBlocks' activations in the backward pass (`nn.remat.blocks`).
  """
  width: int = 128
  channel_mult: Sequence[int] = FFHQ256_CHANNEL_MULT
  num_res_blocks: int = 2
  attention_resolutions: Sequence[int] = (16,)
  num_heads: int = 1
  dropout: float = 0.1
  resblock_updown: bool = True
  conditional: bool = True
  norm_groups: int = 32
  cond_activation: bool = True
  remat: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, time_emb: jax.Array | None, cond: jax.Array | None,
               train: bool) -> tuple[jax.Array, list[jax.Array]]:
    common = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    block = lambda d, name, **kw: remat.blocks(unet.ResBlock, self.remat, (4,))(
        d, conditional=self.conditional, dropout=self.dropout, norm_groups=self.norm_groups,
        cond_activation=self.cond_activation, name=name, **kw, **common)
    attend = lambda name: attention.SpatialSelfAttention(num_heads=self.num_heads,
                                                         norm_groups=self.norm_groups, name=name,
                                                         **common)
    h = nn.Conv(self.width * self.channel_mult[0], (3, 3), padding=resnet.PAD1, name="conv_in",
                **common)(x.astype(self.dtype))                      # [B, H, W, width]
    skips = [h]
    resolution = x.shape[1]
    for level, mult in enumerate(self.channel_mult):
      for i in range(self.num_res_blocks):
        h = block(self.width * mult, f"level{level}_res{i}")(h, time_emb, cond, train)
        if resolution in self.attention_resolutions:
          h = attend(f"level{level}_attn{i}")(h)
        skips.append(h)
      if level != len(self.channel_mult) - 1:
        if self.resblock_updown:
          h = block(None, f"level{level}_down", resample="down")(h, time_emb, cond, train)
        else:
          h = resnet.Downsample(name=f"level{level}_down", **common)(h)
        resolution //= 2
        skips.append(h)                                              # [B, R/2, R/2, D]
    h = block(None, "mid_res0")(h, time_emb, cond, train)
    h = attend("mid_attn")(h)
    h = block(None, "mid_res1")(h, time_emb, cond, train)
    return h, skips


class SemanticEncoder(nn.Module):
  """diffae's semantic encoder: images [B, H, W, C] in [-1, 1] -> z [B, Z] float32.

  Attributes: see `HalfUNet`; `latent_dim` is Z (512). The encoder's ResBlocks are unconditioned
  and so carry no dropout: `train` has no effect and is there for a uniform call signature.
  """
  latent_dim: int = 512
  width: int = 128
  channel_mult: Sequence[int] = FFHQ256_ENCODER_CHANNEL_MULT
  num_res_blocks: int = 2
  attention_resolutions: Sequence[int] = (16,)
  num_heads: int = 1
  resblock_updown: bool = True
  norm_groups: int = 32
  remat: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    _check_image(x, len(self.channel_mult), "SemanticEncoder")
    h, _ = HalfUNet(self.width, self.channel_mult, self.num_res_blocks,
                    self.attention_resolutions, self.num_heads, 0.0, self.resblock_updown,
                    conditional=False, norm_groups=self.norm_groups, remat=self.remat,
                    dtype=self.dtype,
                    param_dtype=self.param_dtype, name="half_unet")(x, None, None, train)
    h = norm.group_norm(h.shape[-1], epsilon=norm.TORCH_EPS, rule="cap", groups=self.norm_groups,
                        param_dtype=self.param_dtype, name="out_norm")(h)
    h = jnp.mean(nn.silu(h), axis=(1, 2))                            # [B, D]
    z = nn.Dense(self.latent_dim, dtype=self.dtype, param_dtype=self.param_dtype,
                 name="out_proj")(h.astype(self.dtype))              # a 1x1 conv on a 1x1 map
    return z.astype(jnp.float32)                                     # [B, Z]


class ConditionalUNet(nn.Module):
  """diffae's conditional UNet: (x_t [B, H, W, C], t [B], z [B, Z]) -> eps [B, H, W, C] float32.

  Attributes: see `HalfUNet`; plus
    out_channels: C of the prediction (3).
    embed_dim: E, the time embedding width (512).
    latent_dim: Z, checked against z.
    time_frequency_dim: width of the sinusoid; None uses `width` (diffae).
    latent_centering: every ResBlock projects SiLU(z) - m instead of SiLU(z), m being a running
      mean of SiLU(z) over training batches (collection "latent_stats", updated when it is
      mutable in training). Each projection is affine, so the models it can express are
      diffae's; what changes is the optimisation: on one speaker's frames z is nearly constant
      (frame-to-frame changes are ~1% of its norm), and without centring the constant part
      dominates the projections' gradients and Adam's normalisers, so the weights that read mouth
      and pose from z learn ~100x slower.
    latent_stats_decay: the running mean's decay per training step.
  """
  out_channels: int = 3
  width: int = 128
  channel_mult: Sequence[int] = FFHQ256_CHANNEL_MULT
  num_res_blocks: int = 2
  attention_resolutions: Sequence[int] = (16,)
  num_heads: int = 1
  embed_dim: int = 512
  latent_dim: int = 512
  dropout: float = 0.1
  resblock_updown: bool = True
  norm_groups: int = 32
  time_frequency_dim: int | None = None
  latent_centering: bool = False
  latent_stats_decay: float = 0.99
  remat: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def _latent_condition(self, z: jax.Array, train: bool) -> jax.Array:
    """z [B, Z] -> what the ResBlocks project: z itself, or SiLU(z) - m (`latent_centering`)."""
    if not self.latent_centering:
      return z.astype(self.dtype)
    activated = nn.silu(z.astype(jnp.float32))                       # [B, Z]
    mean = self.variable("latent_stats", "silu_mean", jnp.zeros, (self.latent_dim,), jnp.float32)
    centred = activated - jax.lax.stop_gradient(mean.value)
    if train and self.is_mutable_collection("latent_stats") and not self.is_initializing():
      batch_mean = jax.lax.stop_gradient(jnp.mean(activated, axis=0))
      mean.value = self.latent_stats_decay * mean.value + (1 - self.latent_stats_decay) * batch_mean
    return centred.astype(self.dtype)

  @nn.compact
  def __call__(self, x_t: jax.Array, t: jax.Array, z: jax.Array,
               train: bool = False) -> jax.Array:
    _check_image(x_t, len(self.channel_mult), "ConditionalUNet")
    b = x_t.shape[0]
    t = jnp.asarray(t)
    if t.ndim == 0:
      t = jnp.broadcast_to(t, (b,))
    if t.shape != (b,):
      raise ValueError(f"ConditionalUNet: t must be a scalar or [B] = [{b}], got shape {t.shape}")
    if z.shape != (b, self.latent_dim):
      raise ValueError(f"ConditionalUNet: z must be [B, Z] = [{b}, {self.latent_dim}], got "
                       f"shape {z.shape}")
    common = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    time_emb = unet.TimestepEmbedding(self.embed_dim, self.time_frequency_dim or self.width,
                                      name="time_embed", **common)(t)     # [B, E]
    cond = self._latent_condition(z, train)                          # [B, Z]
    h, skips = HalfUNet(self.width, self.channel_mult, self.num_res_blocks,
                        self.attention_resolutions, self.num_heads, self.dropout,
                        self.resblock_updown, conditional=True, norm_groups=self.norm_groups,
                        cond_activation=not self.latent_centering, remat=self.remat,
                        name="half_unet", **common)(x_t, time_emb, cond, train)
    res_block = remat.blocks(unet.ResBlock, self.remat, (4,))
    resolution = x_t.shape[1] // 2 ** (len(self.channel_mult) - 1)
    for level in reversed(range(len(self.channel_mult))):
      d = self.width * self.channel_mult[level]
      for i in range(self.num_res_blocks + 1):
        h = jnp.concatenate([h, skips.pop()], axis=-1)              # [B, R, R, D + D_skip]
        h = res_block(d, dropout=self.dropout, norm_groups=self.norm_groups,
                      cond_activation=not self.latent_centering,
                      name=f"up_level{level}_res{i}", **common)(h, time_emb, cond, train)
        if resolution in self.attention_resolutions:
          h = attention.SpatialSelfAttention(num_heads=self.num_heads,
                                             norm_groups=self.norm_groups,
                                             name=f"up_level{level}_attn{i}", **common)(h)
      if level:
        if self.resblock_updown:
          h = res_block(d, resample="up", dropout=self.dropout, norm_groups=self.norm_groups,
                        cond_activation=not self.latent_centering,
                        name=f"up_level{level}_up", **common)(h, time_emb, cond, train)
        else:
          h = resnet.Upsample(name=f"up_level{level}_up", **common)(h)
        resolution *= 2                                              # [B, 2R, 2R, D]
    h = nn.silu(norm.group_norm(h.shape[-1], epsilon=norm.TORCH_EPS, rule="cap",
                                groups=self.norm_groups, param_dtype=self.param_dtype,
                                name="out_norm")(h))
    zeros = nn.initializers.zeros_init()
    eps = nn.Conv(self.out_channels, (3, 3), padding=resnet.PAD1, kernel_init=zeros,
                  bias_init=zeros, name="out_conv", **common)(h.astype(self.dtype))
    return eps.astype(jnp.float32)                                   # [B, H, W, C]


class DiffusionAutoencoder(nn.Module):
  """Semantic encoder + conditional UNet, trained jointly on the noise-prediction loss.

  Attributes: the shared sizes of `SemanticEncoder` and `ConditionalUNet` (diffae gives both the
  same width, heads, attention resolutions and up/down style); `encoder_channel_mult` and
  `encoder_num_res_blocks` size the encoder; `latent_centering` (not in diffae: see
  `ConditionalUNet`) adds the "latent_stats" collection; `remat` rematerialises every ResBlock
  of both (`nn.remat.blocks`).
  """
  out_channels: int = 3
  width: int = 128
  channel_mult: Sequence[int] = FFHQ256_CHANNEL_MULT
  encoder_channel_mult: Sequence[int] = FFHQ256_ENCODER_CHANNEL_MULT
  num_res_blocks: int = 2
  encoder_num_res_blocks: int = 2
  attention_resolutions: Sequence[int] = (16,)
  num_heads: int = 1
  embed_dim: int = 512
  latent_dim: int = 512
  dropout: float = 0.1
  resblock_updown: bool = True
  norm_groups: int = 32
  latent_centering: bool = False
  remat: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def setup(self):
    common = dict(attention_resolutions=self.attention_resolutions, num_heads=self.num_heads,
                  resblock_updown=self.resblock_updown, norm_groups=self.norm_groups,
                  remat=self.remat, dtype=self.dtype, param_dtype=self.param_dtype)
    self.encoder = SemanticEncoder(self.latent_dim, self.width, self.encoder_channel_mult,
                                   self.encoder_num_res_blocks, **common)
    self.unet = ConditionalUNet(self.out_channels, self.width, self.channel_mult,
                                self.num_res_blocks, embed_dim=self.embed_dim,
                                latent_dim=self.latent_dim, dropout=self.dropout,
                                latent_centering=self.latent_centering, **common)

  def encode(self, x0: jax.Array, train: bool = False) -> jax.Array:
    """Clean images [B, H, W, C] in [-1, 1] -> semantic latents z [B, Z]."""
    return self.encoder(x0, train)

  def __call__(self, x_t: jax.Array, t: jax.Array, x0: jax.Array | None = None,
               z: jax.Array | None = None, train: bool = False) -> jax.Array:
    """eps_hat [B, H, W, C] for x_t at timesteps t [B], conditioned on z or on encode(x0).

    Give exactly one of x0 (training, and the first call of `init`) or z (decoding from a
    stored or predicted latent, e.g. `samplers.sample(..., cond={"z": z})`).
    """
    if (x0 is None) == (z is None):
      raise ValueError("DiffusionAutoencoder: give exactly one of x0 (images to encode) or z "
                       "(latents)")
    if z is None:
      z = self.encode(x0, train)
    return self.unet(x_t, t, z, train)


def fold_latent_centre(params: Any, centre: jax.Array) -> Any:
  """Parameters of a model without latent centring -> the same function with centre `centre`.

  Every ResBlock's latent projection W SiLU(z) + b equals W (SiLU(z) - centre) + b' with
  b' = b + centre @ W; `params` are a `DiffusionAutoencoder`'s or a `ConditionalUNet`'s, centre is
  [Z] (store it as the centred model's "latent_stats" `silu_mean`).
  """
  def fold(path, leaf):
    names = [getattr(p, "key", "") for p in path]
    if names[-2:] != ["cond_proj", "bias"]:
      return leaf
    kernel = params
    for name in names[:-1]:
      kernel = kernel[name]
    return leaf + centre @ kernel["kernel"]                          # [D]
  return jax.tree_util.tree_map_with_path(fold, params)


def abstract_variables(model: DiffusionAutoencoder, image_size: int,
                       batch_size: int = 1) -> Any:
  """The model's variables as shape/dtype structs for square images (no computation runs)."""
  x = jax.ShapeDtypeStruct((batch_size, image_size, image_size, model.out_channels), jnp.float32)
  t = jax.ShapeDtypeStruct((batch_size,), jnp.int32)
  return jax.eval_shape(lambda x, t: model.init(jax.random.key(0), x, t, x0=x), x, t)


def parameter_counts(model: DiffusionAutoencoder, image_size: int) -> dict[str, int]:
  """{"encoder", "unet", "total"} parameter counts at `image_size` (via `jax.eval_shape`)."""
  params = abstract_variables(model, image_size)["params"]
  count = lambda tree: sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))
  counts = {"encoder": count(params["encoder"]), "unet": count(params["unet"])}
  counts["total"] = counts["encoder"] + counts["unet"]
  return counts
