"""wav2vec 2.0 (base, large, large-lv60 / XLSR-53) in Flax, matching transformers' `Wav2Vec2Model`.

Dimensions: B batch, S samples (16 kHz), T frames (50 Hz), C feature-encoder channels (512),
D model width, F feed-forward width, L layers, Kp and G the positional conv's kernel and groups.

  waveform [B, S], normalised per utterance (`normalize_waveform`)
  --feature encoder: 7 x (Conv1d k_l, stride s_l, VALID -> norm -> GELU)---> conv_features [B, T, C]
      norm "group": GroupNorm(C groups) after conv 0 only (base, large);
           "layer": LayerNorm over C after every conv (large-lv60, XLSR-53)
  --feature projection: LayerNorm (= extract_features) -> Dense D -> dropout--> z [B, T, D]
  --frames in `mask_time_indices` replaced by `masked_spec_embed` (pretraining masking)
  --frames past each utterance's length zeroed (padded batches)
  --positional conv: Conv1d(Kp, padding Kp // 2, G groups, weight norm) -> drop the last step
    when Kp is even -> GELU -> p [B, T, D]
  post-LN encoder   (base, large):     y = LN(z + p); per layer y = LN(y + Attn(y)), y = LN(y + FFN(y))
  stable-LN encoder (lv60, XLSR-53):   y = z + p;     per layer y = y + Attn(LN(y)), y = y + FFN(LN(y));
                                       LN(y) after the last layer
  hidden_states: L + 1 tensors [B, T, D] as transformers' `output_hidden_states`: post-LN
  [LN(z + p), out_1, ..., out_L]; stable-LN [z + p, out_1, ..., out_{L-1}, LN(out_L)].

Output length: per conv `T <- floor((T - k) / s) + 1`, i.e. `floor((S - 400) / 320) + 1` frames
(hop 320 = 20 ms, window 400 = 25 ms). Padded batches: `sample_mask [B, S]` (True = real sample,
transformers' `attention_mask`) marks each utterance's samples; frames past its length are zeroed
before the positional conv and masked as attention keys. With the "layer" feature encoder the
valid frames then equal those of the unpadded utterance; the "group" one normalises conv 0 over
all S samples, padding included, so base/large checkpoints (trained without masks) should be run
on unpadded, equal-length batches (transformers' processor returns no mask for them).

GELU is the exact erf form; norms run in float32 (epsilon 1e-5 in every release) and attention
logits and softmax in float32 (`nn.attention`). Dropout (`hidden_dropout` after attention, FFN
and the positional sum; `activation_dropout` inside the FFN; `feat_proj_dropout`) is active only
with `deterministic=False` and a 'dropout' rng, and so is LayerDrop (`layerdrop`: each transformer
layer of a batch is skipped with that probability; its hidden state then repeats the previous
one); attention-weight dropout is not implemented. `feature_grad_scale` (fairseq's
`feature_grad_mult`, 0.1 in wav2vec 2.0 BASE pretraining) scales the gradient that reaches the
feature encoder and leaves the forward pass unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal, Mapping, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talking_heads.nn.attention import MultiHeadAttention
from talking_heads.nn.norm import TORCH_EPS

FeatExtractNorm = Literal["group", "layer"]

SAMPLE_RATE = 16000
FEAT_EXTRACT_NORMS = ("group", "layer")
NORMALIZE_EPS = 1e-7   # transformers' Wav2Vec2FeatureExtractor (releases before 4.x used 1e-5)


@dataclasses.dataclass(frozen=True)
class Wav2Vec2Config:
  """Architecture of a wav2vec 2.0 encoder; field names follow transformers' `Wav2Vec2Config`.

  Attributes:
    hidden_size: D.
    num_hidden_layers: L.
    num_attention_heads: heads of every self-attention (D / heads = 64 in the released models).
    intermediate_size: F.
    conv_dim, conv_kernel, conv_stride: per feature-encoder conv (7 of each in every release).
    conv_bias: biases on the feature-encoder convs.
    feat_extract_norm: "group" or "layer" (module docstring).
    do_stable_layer_norm: the pre-LN ("stable") encoder instead of the post-LN one.
    num_conv_pos_embeddings: Kp, the positional conv's kernel.
    num_conv_pos_embedding_groups: G.
    layer_norm_eps: epsilon of the projection's and the encoder's LayerNorms (the feature
      encoder's norms use PyTorch's default 1e-5, as transformers does).
    hidden_dropout, activation_dropout, feat_proj_dropout: dropout rates (module docstring).
    layerdrop: probability of skipping each transformer layer in training (module docstring).
    feature_grad_scale: gradient scale into the feature encoder (not a transformers field).
  """
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  conv_dim: tuple[int, ...] = (512,) * 7
  conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
  conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
  conv_bias: bool = False
  feat_extract_norm: FeatExtractNorm = "group"
  do_stable_layer_norm: bool = False
  num_conv_pos_embeddings: int = 128
  num_conv_pos_embedding_groups: int = 16
  layer_norm_eps: float = 1e-5
  hidden_dropout: float = 0.1
  activation_dropout: float = 0.1
  feat_proj_dropout: float = 0.0
  layerdrop: float = 0.1
  feature_grad_scale: float = 1.0

  def __post_init__(self):
    problems = []
    if self.feat_extract_norm not in FEAT_EXTRACT_NORMS:
      problems.append(f"feat_extract_norm must be one of {FEAT_EXTRACT_NORMS}, got "
                      f"{self.feat_extract_norm!r}")
    if not len(self.conv_dim) == len(self.conv_kernel) == len(self.conv_stride) > 0:
      problems.append(f"conv_dim, conv_kernel and conv_stride need one entry per conv, got "
                      f"{len(self.conv_dim)}, {len(self.conv_kernel)}, {len(self.conv_stride)}")
    if self.hidden_size % self.num_attention_heads:
      problems.append(f"hidden_size {self.hidden_size} does not split into "
                      f"{self.num_attention_heads} heads")
    if self.hidden_size % self.num_conv_pos_embedding_groups:
      problems.append(f"hidden_size {self.hidden_size} does not split into "
                      f"{self.num_conv_pos_embedding_groups} positional-conv groups")
    if not 0.0 <= self.layerdrop < 1.0:
      problems.append(f"layerdrop must be in [0, 1), got {self.layerdrop}")
    if not 0.0 < self.feature_grad_scale <= 1.0:
      problems.append(f"feature_grad_scale must be in (0, 1], got {self.feature_grad_scale}")
    if problems:
      raise ValueError("Wav2Vec2Config: " + "; ".join(problems))

  @property
  def receptive_field(self) -> int:
    """Samples one frame sees (400 for the released models)."""
    field, hop = 1, 1
    for kernel, stride in zip(self.conv_kernel, self.conv_stride):
      field += (kernel - 1) * hop
      hop *= stride
    return field

  @property
  def hop_length(self) -> int:
    """Samples between frames (320 for the released models)."""
    return math.prod(self.conv_stride)


_RELEASE_CONVS = dict(conv_dim=(512,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2),
                      conv_stride=(5, 2, 2, 2, 2, 2, 2))
_LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
              intermediate_size=4096, **_RELEASE_CONVS)

CONFIGS: dict[str, Wav2Vec2Config] = {
    # facebook/wav2vec2-base(-960h): 95M parameters.
    "base": Wav2Vec2Config(),
    # facebook/wav2vec2-large(-960h): 317M, the base model's group-norm / post-LN design.
    "large": Wav2Vec2Config(**_LARGE),
    # facebook/wav2vec2-large-xlsr-53 and the same architecture facebook/wav2vec2-large-960h-lv60(-self).
    "xlsr53": Wav2Vec2Config(**_LARGE, conv_bias=True, feat_extract_norm="layer",
                             do_stable_layer_norm=True),
    # XLSR-53's design in miniature (the release's conv geometry, so frame counts are the same).
    "tiny": Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, conv_dim=(32,) * 7, conv_bias=True,
                           feat_extract_norm="layer", do_stable_layer_norm=True,
                           num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4),
}


def get_config(name: str) -> Wav2Vec2Config:
  """One of `CONFIGS` by name."""
  if name not in CONFIGS:
    raise ValueError(f"unknown wav2vec2 config {name!r}; choose from {sorted(CONFIGS)}")
  return CONFIGS[name]


def config_from_hf(hf_config: Mapping[str, Any], source: str = "config.json") -> Wav2Vec2Config:
  """A transformers `Wav2Vec2Config` (its `config.json` as a dict) -> `Wav2Vec2Config`.

  Raises:
    ValueError: naming `source`, when the config describes something this model does not compute
      (another model type, activation, adapter).
  """
  if hf_config.get("model_type", "wav2vec2") != "wav2vec2":
    raise ValueError(f"{source}: model_type {hf_config['model_type']!r} is not 'wav2vec2'")
  for key in ("feat_extract_activation", "hidden_act"):
    if hf_config.get(key, "gelu") != "gelu":
      raise ValueError(f"{source}: {key} {hf_config[key]!r} is not supported (only 'gelu')")
  if hf_config.get("add_adapter", False):
    raise ValueError(f"{source}: add_adapter=true is not supported")
  fields = {f.name: f for f in dataclasses.fields(Wav2Vec2Config)}
  values = {name: hf_config[name] for name in fields if name in hf_config}
  for name in ("conv_dim", "conv_kernel", "conv_stride"):
    if name in values:
      values[name] = tuple(values[name])
  try:
    return Wav2Vec2Config(**values)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{source}: {e}") from None


def output_lengths(num_samples: Any, config: Wav2Vec2Config = CONFIGS["base"]) -> Any:
  """Frames for `num_samples` samples (int or integer array): floor((S - 400) / 320) + 1.

  Applies `T <- floor((T - k) / s) + 1` per conv, as transformers'
  `_get_feat_extract_output_lengths`; 0 or less when S is under the receptive field.
  """
  length = num_samples
  for kernel, stride in zip(config.conv_kernel, config.conv_stride):
    length = (length - kernel) // stride + 1
  return length


def sample_mask_from_lengths(lengths: Any, num_samples: int) -> jax.Array:
  """Per-utterance sample counts [B] -> sample_mask [B, S], True on each utterance's samples."""
  return jnp.arange(num_samples)[None, :] < jnp.asarray(lengths)[:, None]


def frame_mask(sample_mask: jax.Array, num_frames: int,
               config: Wav2Vec2Config = CONFIGS["base"]) -> jax.Array:
  """sample_mask [B, S] -> frame mask [B, T]: frames inside each utterance's output length."""
  lengths = output_lengths(jnp.sum(sample_mask.astype(jnp.int32), axis=-1), config)   # [B]
  return jnp.arange(num_frames)[None, :] < lengths[:, None]


def normalize_waveform(waveform: np.ndarray, sample_mask: np.ndarray | None = None,
                       eps: float = NORMALIZE_EPS) -> np.ndarray:
  """Zero mean, unit variance per utterance over its real samples; padding set to 0.

  waveform [B, S] or [S]; sample_mask like it (None: every sample is real). This is transformers'
  `Wav2Vec2FeatureExtractor(do_normalize=True)`, which every released checkpoint expects.
  """
  x = np.asarray(waveform, np.float64)
  mask = np.ones(x.shape, bool) if sample_mask is None else np.asarray(sample_mask, bool)
  if mask.shape != x.shape:
    raise ValueError(f"sample_mask {mask.shape} does not match the waveform {x.shape}")
  count = np.maximum(mask.sum(axis=-1, keepdims=True), 1)
  mean = np.where(mask, x, 0.0).sum(axis=-1, keepdims=True) / count
  var = np.where(mask, (x - mean) ** 2, 0.0).sum(axis=-1, keepdims=True) / count
  return np.where(mask, (x - mean) / np.sqrt(var + eps), 0.0).astype(np.float32)


def gelu(x: jax.Array) -> jax.Array:
  """Exact (erf) GELU, transformers' "gelu" (jax's default is the tanh approximation)."""
  return jax.nn.gelu(x, approximate=False)


def _layer_norm(eps: float, param_dtype: Any, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=eps, dtype=jnp.float32, param_dtype=param_dtype,
                      use_fast_variance=False, name=name)


class ConvLayer(nn.Module):
  """x [B, T_in, C_in] -> Conv1d(VALID) -> norm -> GELU -> [B, T_out, C_out].

  Attributes:
    features, kernel, stride, use_bias: the conv.
    norm: None, "group" (GroupNorm with one group per channel, over time) or "layer".
    eps: the norm's epsilon (PyTorch's default in every release, whatever `layer_norm_eps` is).
  """
  features: int
  kernel: int
  stride: int
  use_bias: bool
  norm: FeatExtractNorm | None
  eps: float = TORCH_EPS
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.Conv(self.features, (self.kernel,), strides=(self.stride,), padding="VALID",
                use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype,
                name="conv")(x)                                          # [B, T_out, C_out]
    if self.norm == "group":
      x = nn.GroupNorm(num_groups=self.features, epsilon=self.eps, dtype=jnp.float32,
                       param_dtype=self.param_dtype, use_fast_variance=False,
                       name="layer_norm")(x)
    elif self.norm == "layer":
      x = _layer_norm(self.eps, self.param_dtype, "layer_norm")(x)
    return gelu(x).astype(self.dtype)


class FeatureEncoder(nn.Module):
  """waveform [B, S] -> conv_features [B, T, C] (module docstring; `ConvLayer` `conv_layers_<l>`)."""
  config: Wav2Vec2Config
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, waveform: jax.Array) -> jax.Array:
    c = self.config
    x = waveform[..., None].astype(self.dtype)                           # [B, S, 1]
    for l, (features, kernel, stride) in enumerate(zip(c.conv_dim, c.conv_kernel,
                                                        c.conv_stride)):
      norm = "group" if c.feat_extract_norm == "group" and l == 0 else None
      x = ConvLayer(features, kernel, stride, c.conv_bias,
                    "layer" if c.feat_extract_norm == "layer" else norm, dtype=self.dtype,
                    param_dtype=self.param_dtype, name=f"conv_layers_{l}")(x)
    return x                                                             # [B, T, C]


class FeatureProjection(nn.Module):
  """conv_features [B, T, C] -> (Dense D `projection`(LN(x)) -> dropout [B, T, D], LN(x) [B, T, C])."""
  hidden_size: int
  eps: float
  dropout: float
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> tuple[jax.Array, jax.Array]:
    normed = _layer_norm(self.eps, self.param_dtype, "layer_norm")(x)   # [B, T, C] float32
    z = nn.Dense(self.hidden_size, dtype=self.dtype, param_dtype=self.param_dtype,
                 name="projection")(normed.astype(self.dtype))           # [B, T, D]
    return nn.Dropout(self.dropout)(z, deterministic), normed


def weight_norm_kernel(weight_g: jax.Array, weight_v: jax.Array) -> jax.Array:
  """g [Kp], v [Kp, D/G, D] -> kernel g[k] v[k] / ||v[k]|| (PyTorch `weight_norm(dim=2)`: the
  norm of each kernel tap over the in and out channels), computed in float32."""
  v = weight_v.astype(jnp.float32)
  norm = jnp.sqrt(jnp.sum(v * v, axis=(1, 2), keepdims=True))           # [Kp, 1, 1]
  return weight_g.astype(jnp.float32)[:, None, None] * v / norm


class PositionalConvEmbedding(nn.Module):
  """z [B, T, D] -> GELU(weight-normed grouped Conv1d(z)) [B, T, D] (module docstring).

  Parameters `weight_g` [Kp], `weight_v` [Kp, D/G, D] (PyTorch's g and v, so the layer trains
  as the reference does) and `bias` [D]. Padding Kp // 2 both sides; an even Kp gives T + 1
  outputs and the last is dropped (transformers' `Wav2Vec2SamePadLayer`).
  """
  kernel: int
  groups: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    d = z.shape[-1]
    fan_in = self.kernel * d // self.groups
    # transformers' init: normal(0, 2 / sqrt(fan_in)) for v, g = ||v|| per tap, zero bias.
    weight_v = self.param("weight_v", nn.initializers.normal(2.0 / math.sqrt(fan_in)),
                          (self.kernel, d // self.groups, d), self.param_dtype)
    weight_g = self.param("weight_g", lambda _: jnp.sqrt(jnp.sum(
        weight_v.astype(jnp.float32) ** 2, axis=(1, 2))).astype(self.param_dtype))
    bias = self.param("bias", nn.initializers.zeros_init(), (d,), self.param_dtype)
    kernel = weight_norm_kernel(weight_g, weight_v).astype(self.dtype)  # [Kp, D/G, D]
    pad = self.kernel // 2
    p = jax.lax.conv_general_dilated(
        z.astype(self.dtype), kernel, window_strides=(1,), padding=[(pad, pad)],
        dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=self.groups)
    if self.kernel % 2 == 0:
      p = p[:, :-1]                                                      # [B, T, D]
    return gelu(p + bias.astype(self.dtype))


class FeedForward(nn.Module):
  """x [B, T, D] -> Dense F `intermediate_dense` -> GELU -> dropout -> Dense D `output_dense`
  -> dropout -> [B, T, D]."""
  intermediate_size: int
  activation_dropout: float
  hidden_dropout: float
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    dense = lambda width, name: nn.Dense(width, dtype=self.dtype, param_dtype=self.param_dtype,
                                         name=name)
    h = gelu(dense(self.intermediate_size, "intermediate_dense")(x))     # [B, T, F]
    h = nn.Dropout(self.activation_dropout)(h, deterministic)
    h = dense(x.shape[-1], "output_dense")(h)                            # [B, T, D]
    return nn.Dropout(self.hidden_dropout)(h, deterministic)


class EncoderLayer(nn.Module):
  """One transformer layer, post-LN or stable (pre-LN) (module docstring).

  Submodules `attention` (`nn.attention.MultiHeadAttention`), `layer_norm`, `feed_forward`,
  `final_layer_norm`, as transformers names them.
  """
  config: Wav2Vec2Config
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, y: jax.Array, key_mask: jax.Array | None,
               deterministic: bool) -> jax.Array:
    c = self.config
    attention = MultiHeadAttention(c.num_attention_heads, dtype=self.dtype,
                                   param_dtype=self.param_dtype, name="attention")
    attention_norm = _layer_norm(c.layer_norm_eps, self.param_dtype, "layer_norm")
    feed_forward = FeedForward(c.intermediate_size, c.activation_dropout, c.hidden_dropout,
                               self.dtype, self.param_dtype, name="feed_forward")
    final_norm = _layer_norm(c.layer_norm_eps, self.param_dtype, "final_layer_norm")
    dropout = nn.Dropout(c.hidden_dropout)
    cast = lambda t: t.astype(self.dtype)
    if c.do_stable_layer_norm:
      y = y + dropout(attention(cast(attention_norm(y)), key_mask=key_mask), deterministic)
      return y + feed_forward(cast(final_norm(y)), deterministic)
    y = cast(attention_norm(y + dropout(attention(y, key_mask=key_mask), deterministic)))
    return cast(final_norm(y + feed_forward(y, deterministic)))


class Encoder(nn.Module):
  """z [B, T, D] (frame mask [B, T] or None) -> L + 1 hidden states [B, T, D] (module docstring)."""
  config: Wav2Vec2Config
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array, frames: jax.Array | None,
               deterministic: bool) -> tuple[jax.Array, ...]:
    c = self.config
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    if frames is not None:
      z = jnp.where(frames[..., None], z, 0)                             # padding -> 0
    y = z + PositionalConvEmbedding(c.num_conv_pos_embeddings, c.num_conv_pos_embedding_groups,
                                    name="pos_conv_embed", **kw)(z)      # [B, T, D]
    layer_norm = _layer_norm(c.layer_norm_eps, self.param_dtype, "layer_norm")
    if not c.do_stable_layer_norm:
      y = layer_norm(y).astype(self.dtype)
    y = nn.Dropout(c.hidden_dropout)(y, deterministic)
    states = [y]
    for l in range(c.num_hidden_layers):
      out = EncoderLayer(c, name=f"layers_{l}", **kw)(y, frames, deterministic)
      if not deterministic and c.layerdrop > 0:
        skip = jax.random.uniform(self.make_rng("dropout")) < c.layerdrop
        out = jnp.where(skip, y, out)
      y = out
      states.append(y)
    if c.do_stable_layer_norm:
      states[-1] = layer_norm(y).astype(self.dtype)
    return tuple(states)


class Wav2Vec2Output(NamedTuple):
  """What `Wav2Vec2Model` returns.

  Attributes:
    last_hidden_state: [B, T, D], the encoder's output (= hidden_states[-1]).
    hidden_states: L + 1 tensors [B, T, D] (module docstring).
    extract_features: [B, T, C], LayerNorm of the feature encoder's output (transformers'
      `extract_features`; the pretraining quantiser's input).
    conv_features: [B, T, C], the feature encoder's output before that LayerNorm (the
      pretraining feature penalty's input).
    frame_mask: [B, T], True on frames inside each utterance (all True without a sample_mask).
  """
  last_hidden_state: jax.Array
  hidden_states: tuple[jax.Array, ...]
  extract_features: jax.Array
  conv_features: jax.Array
  frame_mask: jax.Array


class Wav2Vec2Model(nn.Module):
  """waveform [B, S] (sample_mask [B, S]) -> `Wav2Vec2Output` (module docstring).

  Submodules and parameters, named after transformers' so converters map one to one:
  `feature_extractor`, `feature_projection` {`layer_norm`, `projection`}, `masked_spec_embed` [D],
  `encoder` {`pos_conv_embed`, `layer_norm`, `layers_<l>`}.
  """
  config: Wav2Vec2Config
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def setup(self):
    c = self.config
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    self.feature_extractor = FeatureEncoder(c, **kw)
    self.feature_projection = FeatureProjection(c.hidden_size, c.layer_norm_eps,
                                                c.feat_proj_dropout, **kw)
    # transformers initialises the mask embedding uniform on [0, 1).
    self.masked_spec_embed = self.param("masked_spec_embed", nn.initializers.uniform(1.0),
                                        (c.hidden_size,), self.param_dtype)
    self.encoder = Encoder(c, **kw)

  def __call__(self, waveform: jax.Array, sample_mask: jax.Array | None = None, *,
               mask_time_indices: jax.Array | None = None,
               deterministic: bool = True) -> Wav2Vec2Output:
    """waveform [B, S]; sample_mask [B, S] (True = real sample); mask_time_indices [B, T]
    (True = frame replaced by the mask embedding, for pretraining)."""
    if waveform.ndim != 2:
      raise ValueError(f"Wav2Vec2Model: waveform must be [B, S], got shape {waveform.shape}")
    if waveform.shape[1] < self.config.receptive_field:
      raise ValueError(f"Wav2Vec2Model: {waveform.shape[1]} samples is shorter than one frame's "
                       f"{self.config.receptive_field} ({self.config.receptive_field / 16:g} ms "
                       "at 16 kHz)")
    if sample_mask is not None and sample_mask.shape != waveform.shape:
      raise ValueError(f"Wav2Vec2Model: sample_mask {sample_mask.shape} does not match the "
                       f"waveform {waveform.shape}")
    conv_features = self.feature_extractor(waveform)                     # [B, T, C]
    if self.config.feature_grad_scale != 1.0:
      # x + (s - 1)(x - sg(x)): the same values exactly, gradient s.
      conv_features = conv_features + (self.config.feature_grad_scale - 1) * (
          conv_features - jax.lax.stop_gradient(conv_features))
    b, t = conv_features.shape[:2]
    z, extract_features = self.feature_projection(conv_features, deterministic)   # [B, T, D]
    if mask_time_indices is not None:
      if mask_time_indices.shape != (b, t):
        raise ValueError(f"Wav2Vec2Model: mask_time_indices must be [B, T] = [{b}, {t}], got "
                         f"{mask_time_indices.shape}")
      z = jnp.where(mask_time_indices[..., None], self.masked_spec_embed.astype(z.dtype), z)
    frames = (jnp.ones((b, t), bool) if sample_mask is None
              else frame_mask(sample_mask, t, self.config))               # [B, T]
    hidden_states = self.encoder(z, None if sample_mask is None else frames, deterministic)
    return Wav2Vec2Output(hidden_states[-1], hidden_states, extract_features, conv_features,
                          frames)
