"""wav2vec 2.0 self-supervised pretraining (Baevski et al. 2020, §2-3): masking, quantiser, losses.

Dimensions: B batch, S samples, T frames (50 Hz), C feature-encoder channels, D model width,
G codebook groups, V entries per group, Q codevector width (Q / G per group), E final width,
K distractors.

  waveform [B, S] --feature encoder--> conv_features [B, T, C] --LN--> extract_features
  extract_features --Gumbel product quantiser--> q [B, T, Q] --project_q--> [B, T, E]
  extract_features --projection, masked frames -> mask embedding, transformer--> c [B, T, D]
  c --project_hid--> [B, T, E]
  loss = L_contrastive + alpha L_diversity + beta mean(conv_features^2)

Masking (`span_mask`): each utterance draws round(p T_u) start frames without replacement among
those with M frames left (stochastic rounding, at least `min_spans`), and masks the M frames from
each; spans overlap, so with the paper's p = 0.065, M = 10 about 49 % of frames are masked.

Quantiser (`GumbelProductQuantizer`): logits [B, T, G, V] from a Dense of extract_features; in
training a hard Gumbel-softmax sample with temperature tau (straight-through: the forward pass
uses the one-hot choice, gradients flow through the soft sample), in evaluation the argmax; the G
chosen codevectors are concatenated. tau anneals from tau_max by a factor per update down to
tau_min (`gumbel_temperature`).

Contrastive loss (`contrastive_loss`): for each masked frame t, -log of the softmax over
cos(c_t, q) / kappa of the true q_t and K distractors drawn uniformly from the other masked
frames of the same utterance; a distractor equal to q_t (the same codes) is left out, as fairseq
does. Diversity loss: (G V - perplexity) / (G V), the perplexity of the softmax of the logits
averaged over masked frames, summed over groups.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from talking_heads.audio import wav2vec2

_NEG = -1e9


def span_mask(rng: jax.Array, frame_mask: jax.Array, start_prob: float, span: int,
              min_spans: int = 2) -> jax.Array:
  """Pretraining mask [B, T] bool over the valid frames of frame_mask [B, T] (module docstring)."""
  b, t = frame_mask.shape
  lengths = jnp.sum(frame_mask.astype(jnp.int32), axis=1)                      # [B]
  positions = jnp.arange(t)[None, :]
  can_start = positions <= (lengths - span)[:, None]                           # [B, T]
  num_starts = jnp.sum(can_start.astype(jnp.int32), axis=1)
  round_key, order_key = jax.random.split(rng)
  wanted = jnp.floor(start_prob * lengths + jax.random.uniform(round_key, (b,))).astype(jnp.int32)
  count = jnp.clip(jnp.maximum(wanted, min_spans), 0, num_starts)               # [B]
  noise = jnp.where(can_start, jax.random.uniform(order_key, (b, t)), 2.0)
  rank = jnp.argsort(jnp.argsort(noise, axis=1), axis=1)
  starts = (rank < count[:, None]).astype(jnp.int32)                           # [B, T]
  covered = jnp.cumsum(starts, axis=1)
  before = jnp.pad(covered, ((0, 0), (span, 0)))[:, :t]                         # covered[t - M]
  return (covered - before) > 0


def gumbel_temperature(step: jax.Array, start: float, end: float, decay: float) -> jax.Array:
  """max(start * decay^step, end): the paper's annealing (2 -> 0.5 by 0.999995 per update)."""
  return jnp.maximum(start * jnp.power(decay, step.astype(jnp.float32)), end)


def perplexity(probs: jax.Array, weight: jax.Array) -> jax.Array:
  """sum_g exp(H(mean of probs [B, T, G, V] over frames weighted by weight [B, T]))."""
  w = weight.astype(jnp.float32)[..., None, None]
  mean = jnp.sum(probs * w, axis=(0, 1)) / jnp.maximum(jnp.sum(w), 1.0)       # [G, V]
  entropy = -jnp.sum(mean * jnp.log(mean + 1e-7), axis=-1)
  return jnp.sum(jnp.exp(entropy))


class GumbelProductQuantizer(nn.Module):
  """x [B, T, C] -> (q [B, T, Q], {"prob_perplexity", "code_perplexity"}) (module docstring).

  `rng` None selects the argmax (evaluation); otherwise a hard Gumbel-softmax sample at
  `temperature`. Perplexities average over frames weighted by `weight` [B, T].
  """
  num_groups: int
  num_entries: int
  codevector_dim: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, weight: jax.Array, temperature: jax.Array | float,
               rng: jax.Array | None) -> tuple[jax.Array, dict[str, jax.Array]]:
    g, v = self.num_groups, self.num_entries
    if self.codevector_dim % g:
      raise ValueError(f"GumbelProductQuantizer: codevector_dim {self.codevector_dim} does not "
                       f"split into {g} groups")
    logits = nn.Dense(g * v, dtype=self.dtype, param_dtype=self.param_dtype,
                      kernel_init=nn.initializers.normal(1.0), name="weight_proj")(x)
    logits = logits.astype(jnp.float32).reshape(x.shape[:2] + (g, v))         # [B, T, G, V]
    if rng is None:
      onehot = jax.nn.one_hot(jnp.argmax(logits, -1), v)
    else:
      soft = jax.nn.softmax((logits + jax.random.gumbel(rng, logits.shape)) / temperature, -1)
      hard = jax.nn.one_hot(jnp.argmax(soft, -1), v)
      onehot = hard + soft - jax.lax.stop_gradient(soft)                      # straight-through
    codevectors = self.param("codevectors", nn.initializers.uniform(1.0),
                             (g, v, self.codevector_dim // g), self.param_dtype)
    q = jnp.einsum("btgv,gvd->btgd", onehot.astype(self.dtype), codevectors.astype(self.dtype))
    metrics = {"prob_perplexity": perplexity(jax.nn.softmax(logits, -1), weight),
               "code_perplexity": perplexity(jax.lax.stop_gradient(
                   jax.nn.one_hot(jnp.argmax(logits, -1), v)), weight)}
    return q.reshape(x.shape[:2] + (self.codevector_dim,)), metrics


class Wav2Vec2ForPreTraining(nn.Module):
  """waveform [B, S], sample_mask [B, S], mask_time_indices [B, T] -> dict of
  context [B, T, E], quantized [B, T, E], conv_features [B, T, C], frame_mask [B, T] and the
  quantiser's perplexities. Submodules `wav2vec2` (the encoder, `audio.wav2vec2.Wav2Vec2Model`),
  `quantizer`, `project_hid`, `project_q`, as transformers names them."""
  config: wav2vec2.Wav2Vec2Config
  num_groups: int = 2
  num_entries: int = 320
  codevector_dim: int = 256
  final_dim: int = 256
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, waveform: jax.Array, sample_mask: jax.Array, mask_time_indices: jax.Array,
               temperature: jax.Array | float, gumbel_rng: jax.Array | None,
               deterministic: bool = True) -> dict[str, jax.Array]:
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    out = wav2vec2.Wav2Vec2Model(self.config, name="wav2vec2", **kw)(
        waveform, sample_mask, mask_time_indices=mask_time_indices, deterministic=deterministic)
    weight = mask_time_indices & out.frame_mask
    q, metrics = GumbelProductQuantizer(self.num_groups, self.num_entries, self.codevector_dim,
                                        name="quantizer", **kw)(
        out.extract_features.astype(self.dtype), weight, temperature, gumbel_rng)
    context = nn.Dense(self.final_dim, name="project_hid", **kw)(out.last_hidden_state)
    quantized = nn.Dense(self.final_dim, name="project_q", **kw)(q)
    return {"context": context.astype(jnp.float32), "quantized": quantized.astype(jnp.float32),
            "conv_features": out.conv_features, "frame_mask": out.frame_mask, **metrics}


def sample_distractors(rng: jax.Array, time_mask: jax.Array, num_negatives: int) -> jax.Array:
  """[B, T, K] frame indices: for each frame, K draws from the other masked frames of its row
  (uniform, with replacement). Rows with fewer than two masked frames get index 0 (unused)."""
  b, t = time_mask.shape
  count = jnp.sum(time_mask.astype(jnp.int32), axis=1)                          # [B]
  order = jnp.argsort(~time_mask, axis=1, stable=True)                         # masked first
  rank = jnp.cumsum(time_mask.astype(jnp.int32), axis=1) - 1                   # [B, T]
  others = jnp.maximum(count - 1, 1)[:, None, None]
  draw = jnp.floor(jax.random.uniform(rng, (b, t, num_negatives)) * others).astype(jnp.int32)
  draw = draw + (draw >= rank[..., None])                                      # skip itself
  draw = jnp.minimum(draw, t - 1)
  return jnp.take_along_axis(order[:, None, :], draw, axis=2)                  # [B, T, K]


def contrastive_loss(rng: jax.Array, context: jax.Array, quantized: jax.Array,
                     time_mask: jax.Array, num_negatives: int, kappa: float = 0.1
                     ) -> tuple[jax.Array, jax.Array]:
  """(mean over masked frames of the contrastive loss, accuracy: the true q scored highest).

  context, quantized [B, T, E]; time_mask [B, T] (the masked valid frames).
  """
  index = sample_distractors(rng, time_mask, num_negatives)                    # [B, T, K]
  negatives = jax.vmap(lambda q, i: q[i])(quantized, index)                    # [B, T, K, E]
  candidates = jnp.concatenate([quantized[:, :, None], negatives], axis=2)     # [B, T, K+1, E]
  unit = lambda x: x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-8)
  logits = jnp.einsum("bte,btke->btk", unit(context), unit(candidates)) / kappa
  count = jnp.sum(time_mask.astype(jnp.int32), axis=1)
  excluded = (jnp.all(negatives == quantized[:, :, None], axis=-1)
            | (count < 2)[:, None, None])                                       # [B, T, K]
  logits = logits.at[..., 1:].set(jnp.where(excluded, _NEG, logits[..., 1:]))
  per_frame = -jax.nn.log_softmax(logits, axis=-1)[..., 0]                     # [B, T]
  weight = time_mask.astype(jnp.float32)
  total = jnp.maximum(jnp.sum(weight), 1.0)
  correct = (jnp.argmax(logits, -1) == 0).astype(jnp.float32)
  return jnp.sum(per_frame * weight) / total, jnp.sum(correct * weight) / total
