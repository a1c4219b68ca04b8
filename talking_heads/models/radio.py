"""RADIO's generator: content, style and audio encoders and a StyleGAN2 decoder with ViT fidelity
blocks (Lee et al., WACV 2024, §3.1-3.2 and supp. A; implementation spec
`shared/reference/systems/radio.md` §2, whose section numbers the comments cite).

Dimensions: B batch (frames: a stage folds its T = 5 frames into B), S image size, M mel bins,
F mel frames per window (20), Z = style_dim (f_s, f_a), L = len(decoder_channels) layers (6),
R a layer's resolution, C channels, N tokens, D = vit_dim, P patch size.

  ResidualEncoder  x [B, S, S, 3 or 6] -> f^1 .. f^L: f^1 = conv block at S (channels[0]);
                   f^2 .. f^{L-1} = L-2 residual-down blocks (`nn.stylegan.ResidualDownBlock`,
                   §2.1: StyleGAN2-resnet, out = (main + skip) / sqrt(2)) at S/2 .. S/2^(L-2);
                   f^L = conv block at S/2^(L-2) (channels[-1]). E_c; f_c = f^L (12x12x512 at
                   192 px, PAPER).
  StyleEncoder     the same trunk on the (unmasked) reference -> global average pool -> FC Z:
                   f_s [B, Z] and the trunk's f_s^1 .. f_s^L (the ViT's keys/values).
  audio encoder    `nn.se_resnet.SpeakerEncoder` (§2.2: ResNetSE34L + SAP with InstanceNorm and
                   LeakyReLU, input instance norm) on the mel window [B, M, F] -> f_a [B, Z].
  W                f_W = [f_s, f_a] [B, 2Z] (B-D); f_a [B, Z] without a style encoder (A).
  Decoder          layer j = 1 .. L at R_j = S/2^(L-2) for j <= 2, doubling from j = 3 (§2.3):
                     h = StyledConv3x3(h, W; up for j >= 3)       (f_c is layer 1's input)
                     h = h + EqualConv1x1(f_c^{L+1-j})            content skip (§8 item 3)
                     h = fidelity_j(h, f_s^{L+1-j})               last `fidelity_layers` layers
                     h = StyledConv3x3(h, W)
                     img = upsample2(img) + ToRGB(h, W)           (StyleGAN2 'skip')
                   Every modulated conv has its own affine FC(W -> C_in, bias 1); no mapping
                   MLP (§2.3). Output: no activation, images in [-1, 1].
  FidelityViT      (§2.4) queries = the lower half of h, keys/values = the lower half of
                   f_s^{L+1-j}, P x P patches (P = R/32 in the paper) with linear embeddings
                   and learned positions; `vit_depth` cross-attention layers (pre-LN, 8 heads,
                   MLP 4D with GELU), all reading the same reference tokens; LN -> linear ->
                   patches replace the lower half, the upper half passes unchanged.

Ablations (Table 2; `ABLATIONS`): A = one encoder on [masked target, reference] (6 channels),
W = f_a, no fidelity; B = E_c + E_s, W = [f_s, f_a]; C = B + the lower half of f_s^i, projected
by a 1x1 conv, added to the decoder's lower half (the paper's "f_d + f_s^i"; the projection
matches channel counts); D = B + ViT (RADIO). Table 3's ViT(n, m): fidelity_layers = n (1: only
layer L, §6), vit_depth = m.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from talking_heads.nn import patches, se_resnet, stylegan, transformer

Fidelity = Literal["none", "add", "vit"]

FIDELITIES = ("none", "add", "vit")

# Table 2's rows as RadioGenerator field overrides (the default fields are row D, RADIO).
ABLATIONS = {
    "A": {"style_encoder": False, "fidelity": "none"},
    "B": {"fidelity": "none"},
    "C": {"fidelity": "add"},
    "D": {},
}


def vit_ablation(n: int, m: int) -> dict[str, Any]:
  """Table 3's ViT(n, m) as RadioGenerator field overrides."""
  return {"fidelity": "vit", "fidelity_layers": n, "vit_depth": m}


class ResidualEncoder(nn.Module):
  """x [B, S, S, C_in] -> (f^1, ..., f^L) (module docstring), L = len(channels) + 1.

  Attributes:
    channels: widths of f^1 .. f^{L-1}; f^L keeps the last.
    resample_filter: FIR taps of the residual-down blocks (`nn.stylegan`).
  """
  channels: Sequence[int]
  resample_filter: Sequence[float] = stylegan.RESAMPLE_FILTER
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, ...]:
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = stylegan.EqualConv(self.channels[0], 3, activation="lrelu", name="conv_in", **kw)(x)
    features = [h]                                                    # f^1 [B, S, S, c_1]
    for i, c in enumerate(self.channels[1:]):
      h = stylegan.ResidualDownBlock(c, self.resample_filter, name=f"down{i + 1}", **kw)(h)
      features.append(h)                                              # f^{i+2} at S/2^(i+1)
    h = stylegan.EqualConv(self.channels[-1], 3, activation="lrelu", name="conv_out", **kw)(h)
    return tuple(features) + (h,)                                     # f^L at S/2^(L-2)


class StyleEncoder(nn.Module):
  """reference [B, S, S, 3] -> (f_s [B, Z], (f_s^1, ..., f_s^L)) (module docstring).

  Attributes:
    channels, resample_filter: the trunk's (`ResidualEncoder`).
    style_dim: Z.
  """
  channels: Sequence[int]
  style_dim: int
  resample_filter: Sequence[float] = stylegan.RESAMPLE_FILTER
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, reference: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    features = ResidualEncoder(self.channels, self.resample_filter, name="trunk", **kw)(reference)
    pooled = features[-1].astype(jnp.float32).mean(axis=(1, 2))      # [B, C]
    return stylegan.EqualDense(self.style_dim, name="fc", **kw)(pooled), features


class FidelityViT(nn.Module):
  """h [B, R, R', C] (decoder), reference [B, R, R', E] (style encoder) -> [B, R, R', C]: the
  upper R/2 rows of h unchanged, the lower ones replaced by the ViT's output (module docstring,
  §2.4). Nothing of the reference's upper half is read.

  Attributes:
    patch: P (R/2 and R' must be multiples of P).
    dim: D.
    num_heads: attention heads (D / heads per head).
    depth: cross-attention layers (m of Table 3).
    mlp_ratio: MLP width / D.
  """
  patch: int
  dim: int = 512
  num_heads: int = 8
  depth: int = 2
  mlp_ratio: float = 4.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h: jax.Array, reference: jax.Array) -> jax.Array:
    b, r, rw, c = h.shape
    if reference.shape[:3] != h.shape[:3]:
      raise ValueError(f"FidelityViT {self.name}: reference {reference.shape} and decoder "
                       f"feature {h.shape} differ in batch or resolution")
    if r % 2 or (r // 2) % self.patch or rw % self.patch:
      raise ValueError(f"FidelityViT {self.name}: the lower half of a {r}x{rw} map does not split "
                       f"into {self.patch}x{self.patch} patches")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    layer_norm = lambda name: nn.LayerNorm(1e-6, dtype=jnp.float32, param_dtype=self.param_dtype,
                                           name=name)
    half = r // 2
    upper, lower = h[:, :half], h[:, half:]                          # [B, R/2, R', C]
    n = (half // self.patch) * (rw // self.patch)
    position = lambda name: self.param(name, nn.initializers.normal(0.02), (n, self.dim),
                                       self.param_dtype).astype(self.dtype)
    queries = nn.Dense(self.dim, name="query_embed", **kw)(patches.patchify(lower, self.patch))
    queries = queries + position("query_position")                  # [B, N, D]
    keys = nn.Dense(self.dim, name="reference_embed", **kw)(
        patches.patchify(reference[:, half:], self.patch)) + position("reference_position")
    # K and V are LayerNorm outputs (PAPER §3.2). One norm serves every layer: each layer's
    # key/value projections absorb a per-layer affine (§8 item 2, reference tokens not updated).
    keys = layer_norm("reference_norm")(keys).astype(self.dtype)    # [B, N, D]
    for i in range(self.depth):
      queries = transformer.TransformerBlock(
          self.num_heads, self.mlp_ratio, self_attention=False, cross_attention=True,
          name=f"attention{i + 1}", **kw)(queries, keys)             # Att_{j, i+1}
    out = nn.Dense(self.patch * self.patch * c, name="out", **kw)(layer_norm("out_norm")(queries))
    lower = patches.unpatchify(out.astype(h.dtype), self.patch, r - half, rw)
    return jnp.concatenate([upper, lower], axis=1)                  # [B, R, R', C]


class DecoderLayer(nn.Module):
  """One decoder layer (module docstring): (h, W, content, reference feature, image) ->
  (h [B, R, R, C], image [B, R, R, 3]).

  Attributes:
    features: C.
    up: double the resolution in the first conv.
    fidelity: "none", "add" (ablation C) or "vit".
    vit_patch, vit_dim, vit_heads, vit_depth, vit_mlp_ratio: `FidelityViT`'s fields.
    resample_filter: FIR taps of the upsampling.
  """
  features: int
  up: bool
  fidelity: Fidelity = "none"
  vit_patch: int = 1
  vit_dim: int = 512
  vit_heads: int = 8
  vit_depth: int = 2
  vit_mlp_ratio: float = 4.0
  resample_filter: Sequence[float] = stylegan.RESAMPLE_FILTER
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h: jax.Array, w: jax.Array, content: jax.Array,
               reference: jax.Array | None, image: jax.Array | None,
               add_noise: bool) -> tuple[jax.Array, jax.Array]:
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = stylegan.StyledConv(self.features, up=self.up, resample_filter=self.resample_filter,
                            name="conv0", **kw)(h, w, add_noise)      # [B, R, R, C]
    if content.shape[1:3] != h.shape[1:3]:
      raise ValueError(f"DecoderLayer {self.name}: content skip {content.shape} is not at the "
                       f"layer's resolution {h.shape[1:3]}")
    h = h + stylegan.EqualConv(self.features, 1, name="content_skip", **kw)(content)
    if self.fidelity == "vit":
      h = FidelityViT(self.vit_patch, self.vit_dim, self.vit_heads, self.vit_depth,
                      self.vit_mlp_ratio, name="vit", **kw)(h, reference)
    elif self.fidelity == "add":
      half = h.shape[1] // 2
      lower = h[:, half:] + stylegan.EqualConv(self.features, 1, name="fidelity_proj",
                                               **kw)(reference[:, half:])
      h = jnp.concatenate([h[:, :half], lower], axis=1)
    elif self.fidelity != "none":
      raise ValueError(f"DecoderLayer {self.name}: fidelity must be one of {FIDELITIES}, got "
                       f"{self.fidelity!r}")
    h = stylegan.StyledConv(self.features, name="conv1", **kw)(h, w, add_noise)
    image = stylegan.ToRGB(3, self.resample_filter, name="to_rgb", **kw)(h, w, image)
    return h, image


class RadioGenerator(nn.Module):
  """(masked [B, S, S, 3], reference [B, S, S, 3], mel [B, M, F]) -> image [B, S, S, 3]
  (module docstring). Images in [-1, 1]; `masked` is the target with its lower half zeroed.
  With add_noise=True the StyleGAN2 noise is drawn from the "noise" rng stream.

  Attributes:
    encoder_channels: E_c / E_s widths of f^1 .. f^{L-1} (paper (64, 128, 256, 512, 512)).
    decoder_channels: the L decoder layers' widths (paper (512, 512, 512, 512, 256, 128)).
    style_dim: Z, the width of f_s and f_a (paper 512).
    audio_channels, audio_blocks, audio_strides: E_a's ResNetSE stages (ResNetSE34L:
      (16, 32, 64, 128), (3, 4, 6, 3), (1, 2, 2, 1)).
    style_encoder: E_s and W = [f_s, f_a] (False: ablation A, 6-channel E_c and W = f_a).
    fidelity: "vit" (RADIO), "add" (ablation C) or "none" (A, B).
    fidelity_layers: how many of the last decoder layers get the fidelity block (n).
    vit_patch_sizes: P per layer counted from the last one (the last entry is layer L's);
      at least `fidelity_layers` entries (paper (3, 6) for layers 5 and 6 at 96 and 192 px).
    vit_dim, vit_heads, vit_depth, vit_mlp_ratio: `FidelityViT`'s D, heads, m, MLP ratio.
    resample_filter: FIR taps of every up/downsampling (`nn.stylegan`).
  """
  encoder_channels: Sequence[int] = (64, 128, 256, 512, 512)
  decoder_channels: Sequence[int] = (512, 512, 512, 512, 256, 128)
  style_dim: int = 512
  audio_channels: Sequence[int] = (16, 32, 64, 128)
  audio_blocks: Sequence[int] = (3, 4, 6, 3)
  audio_strides: Sequence[int] = (1, 2, 2, 1)
  style_encoder: bool = True
  fidelity: Fidelity = "vit"
  fidelity_layers: int = 2
  vit_patch_sizes: Sequence[int] = (3, 6)
  vit_dim: int = 512
  vit_heads: int = 8
  vit_depth: int = 2
  vit_mlp_ratio: float = 4.0
  resample_filter: Sequence[float] = stylegan.RESAMPLE_FILTER
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def check_fields(self) -> None:
    """ValueError naming the first field that does not fit the others."""
    layers = len(self.decoder_channels)
    where = "RadioGenerator"
    if layers < 3 or len(self.encoder_channels) != layers - 1:
      raise ValueError(f"{where}: needs L >= 3 decoder_channels and L - 1 encoder_channels, got "
                       f"{len(self.decoder_channels)} and {len(self.encoder_channels)}")
    if self.fidelity not in FIDELITIES:
      raise ValueError(f"{where}: fidelity must be one of {FIDELITIES}, got {self.fidelity!r}")
    if self.fidelity != "none":
      if not self.style_encoder:
        raise ValueError(f"{where}: fidelity {self.fidelity!r} reads the style encoder's "
                         "features; it needs style_encoder=True")
      if not 1 <= self.fidelity_layers <= layers - 2:
        raise ValueError(f"{where}: fidelity_layers must be in 1..{layers - 2}, got "
                         f"{self.fidelity_layers}")
    if self.fidelity == "vit" and len(self.vit_patch_sizes) < self.fidelity_layers:
      raise ValueError(f"{where}: vit_patch_sizes {tuple(self.vit_patch_sizes)} has fewer "
                       f"entries than fidelity_layers = {self.fidelity_layers}")

  def check_image_size(self, image_size: int) -> None:
    """ValueError unless `image_size` halves L - 2 times and every ViT layer's lower half splits
    into its patches."""
    layers = len(self.decoder_channels)
    if image_size % (1 << (layers - 2)):
      raise ValueError(f"RadioGenerator: image size {image_size} is not a multiple of "
                       f"2^(L-2) = {1 << (layers - 2)}")
    if self.fidelity == "vit":
      for j in range(layers - self.fidelity_layers + 1, layers + 1):
        r, p = image_size >> (layers - j), self.layer_patch(j)
        if (r // 2) % p:
          raise ValueError(f"RadioGenerator: layer {j}'s lower half ({r // 2}x{r}) does not "
                           f"split into {p}x{p} patches (vit_patch_sizes)")

  def layer_patch(self, j: int) -> int:
    """P of decoder layer j (1-based)."""
    return self.vit_patch_sizes[len(self.vit_patch_sizes) - 1 - (len(self.decoder_channels) - j)]

  def setup(self):
    self.check_fields()
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    self.content_encoder = ResidualEncoder(self.encoder_channels, self.resample_filter, **kw)
    if self.style_encoder:
      self.reference_encoder = StyleEncoder(self.encoder_channels, self.style_dim,
                                            self.resample_filter, **kw)
    self.audio_encoder = se_resnet.SpeakerEncoder(
        self.style_dim, self.audio_channels, self.audio_blocks, self.audio_strides,
        norm="instance", activation="lrelu", **kw)                     # §2.2
    layers = len(self.decoder_channels)
    first_fidelity = layers - self.fidelity_layers + 1
    self.decoder = [
        DecoderLayer(c, up=j >= 3, fidelity=self.fidelity if j >= first_fidelity else "none",
                     vit_patch=self.layer_patch(j) if self.fidelity == "vit" and
                     j >= first_fidelity else 1,
                     vit_dim=self.vit_dim, vit_heads=self.vit_heads, vit_depth=self.vit_depth,
                     vit_mlp_ratio=self.vit_mlp_ratio, resample_filter=self.resample_filter,
                     **kw)
        for j, c in enumerate(self.decoder_channels, start=1)]

  def __call__(self, masked: jax.Array, reference: jax.Array, mel: jax.Array,
               add_noise: bool = False) -> jax.Array:
    b, s = masked.shape[:2]
    if masked.shape != (b, s, s, 3) or reference.shape != masked.shape:
      raise ValueError(f"RadioGenerator: masked and reference must both be [B, S, S, 3], got "
                       f"{masked.shape} and {reference.shape}")
    if mel.ndim != 3 or mel.shape[0] != b:
      raise ValueError(f"RadioGenerator: mel must be [B, M, F] with B = {b}, got {mel.shape}")
    self.check_image_size(s)
    f_a = self.audio_encoder(mel)                                      # [B, Z]
    if self.style_encoder:
      content = self.content_encoder(masked)                           # f_c^1 .. f_c^L
      f_s, style_features = self.reference_encoder(reference)          # [B, Z], f_s^1 .. f_s^L
      w = jnp.concatenate([f_s, f_a], axis=-1)                         # f_W [B, 2Z]
    else:                                                              # ablation A
      content = self.content_encoder(jnp.concatenate([masked, reference], axis=-1))
      style_features, w = None, f_a                                    # f_W = f_a [B, Z]
    layers = len(self.decoder_channels)
    h, image = content[-1], None                                       # f_c [B, S/2^(L-2), ., .]
    for j, layer in enumerate(self.decoder, start=1):
      ref = None if style_features is None else style_features[layers - j]   # f_s^{L+1-j}
      h, image = layer(h, w, content[layers - j], ref, image, add_noise)      # f_c^{L+1-j}
    return image.astype(jnp.float32)                                   # [B, S, S, 3]
