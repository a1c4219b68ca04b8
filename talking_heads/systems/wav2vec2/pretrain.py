"""Stage `wav2vec2_pretrain`: wav2vec 2.0 self-supervised pretraining on a dataset's speech.

Gives a corpus without public weights its own wav2vec2 front end (`models.wav2vec2_pretraining`:
span masking, Gumbel product quantiser, contrastive + diversity loss, feature penalty). The
trained encoder loads through `pretrained.wav2vec2.load_encoder(<workdir>)`, the loader of the
public checkpoints too, and feeds `experiments.precompute_audio_features`.

Data: `pipelines.sequences` windows of the train split's audio (no mel), data.min_length to
data.max_length video frames (640 samples each), zero-padded, with their sample mask; each window
is normalised to zero mean and unit variance over its real samples (the processor's
`do_normalize`). Evaluation: consecutive max_length windows of `data.eval_split`, a fixed mask and
distractors per batch (seeded by data.eval_seed), the argmax codes (no Gumbel noise).

Loss (per update, `loss.*`): contrastive (K = num_negatives distractors, kappa) + diversity_weight
L_d + feature_penalty mean(conv_features^2); the Gumbel temperature is a function of the
update count (`loss.gumbel_start/end/decay`), so a resumed run continues the schedule.
The paper's 0.1 gradient scale on the feature encoder and LayerDrop are encoder fields
(`feature_grad_scale`, `layerdrop`; set by the paper config).

Metrics: loss, contrastive, diversity, feature_penalty, accuracy (the true code ranked first),
prob_perplexity (of the softmax, used by L_d), code_perplexity (of the chosen codes), temperature,
masked_fraction, grad_norm.

Config fields: model{encoder{Wav2Vec2Config fields}, num_groups, num_entries, codevector_dim,
final_dim, dtype}, loss{mask_prob, mask_length, min_masks, num_negatives, kappa,
diversity_weight, feature_penalty, gumbel_start, gumbel_end, gumbel_decay}, data{root,
identities, min_length, max_length, eval_split, eval_seed, num_workers}, optimizer{...}.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from talking_heads.audio import wav2vec2
from talking_heads.audio import wav2vec2_features
from talking_heads.io.dataset import parse_identities
from talking_heads.models import wav2vec2_pretraining as pretraining
from talking_heads.pipelines import sequences
from talking_heads.training.optimizers import build_optimizer
from talking_heads.training.stage import LossStage
from talking_heads.training.state import TrainState
from talking_heads.training import steps

SAMPLES_PER_FRAME = wav2vec2_features.SAMPLES_PER_VIDEO_FRAME


def encoder_config(fields: ml_collections.ConfigDict | dict[str, Any]) -> wav2vec2.Wav2Vec2Config:
  """`model.encoder` (Wav2Vec2Config fields; lists from JSON become tuples) -> the config."""
  values = dict(fields)
  for name in ("conv_dim", "conv_kernel", "conv_stride"):
    values[name] = tuple(values[name])
  names = {f.name for f in dataclasses.fields(wav2vec2.Wav2Vec2Config)}
  unknown = sorted(set(values) - names)
  if unknown:
    raise ValueError(f"model.encoder: unknown wav2vec2 fields {unknown}")
  return wav2vec2.Wav2Vec2Config(**values)


class Wav2Vec2PretrainStage(LossStage):
  """Pretrains `Wav2Vec2ForPreTraining` (module docstring).

  Batch keys (from `pipelines.sequences`): audio float32 [B, L * 640], mask bool [B, L];
  eval batches also valid bool [B].
  """

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    m = config.model
    self.encoder_config = encoder_config(m.encoder)
    if self.encoder_config.hop_length * 2 != SAMPLES_PER_FRAME:
      raise ValueError(f"model.encoder: hop {self.encoder_config.hop_length} samples; the 25 fps "
                       "alignment needs wav2vec2's 320 (50 Hz)")
    self.model = pretraining.Wav2Vec2ForPreTraining(
        self.encoder_config, num_groups=m.num_groups, num_entries=m.num_entries,
        codevector_dim=m.codevector_dim, final_dim=m.final_dim,
        dtype=jnp.dtype(m.get("dtype", "float32")))
    self.tx = build_optimizer(config.optimizer, config.total_steps)

  # ------------------------------------------------------------------------------------ state

  def init_state(self, rng: jax.Array) -> TrainState:
    samples = 2 * SAMPLES_PER_FRAME
    t = int(wav2vec2.output_lengths(samples, self.encoder_config))
    params = self.model.init(rng, jnp.zeros((1, samples)), jnp.ones((1, samples), bool),
                             jnp.zeros((1, t), bool), 1.0, None)["params"]
    return TrainState.create(params, self.tx, rng=rng,
                             ema_decay=self.config.get("ema_decay", 0.0))

  @staticmethod
  def encoder_variables(state: TrainState) -> dict[str, Any]:
    """The encoder's variables ({"params": ...} of `audio.wav2vec2.Wav2Vec2Model`)."""
    return {"params": state.eval_params["wav2vec2"]}

  # ----------------------------------------------------------------------------------- losses

  def temperature(self, step: jax.Array) -> jax.Array:
    c = self.config.loss
    return pretraining.gumbel_temperature(step, c.gumbel_start, c.gumbel_end, c.gumbel_decay)

  def _losses(self, params: Any, batch: dict[str, jax.Array], rng: jax.Array,
              temperature: jax.Array, train: bool, valid: jax.Array | None = None):
    c = self.config.loss
    sample_mask = jnp.repeat(batch["mask"].astype(bool), SAMPLES_PER_FRAME, axis=1)
    if valid is not None:
      sample_mask = sample_mask & valid.astype(bool)[:, None]
    waveform = wav2vec2_features.jnp_normalize_waveform(batch["audio"], sample_mask)
    t = int(wav2vec2.output_lengths(waveform.shape[1], self.encoder_config))
    frames = wav2vec2.frame_mask(sample_mask, t, self.encoder_config)          # [B, T]
    mask_key, gumbel_key, negative_key, dropout_key = jax.random.split(rng, 4)
    time_mask = pretraining.span_mask(mask_key, frames, c.mask_prob, c.mask_length,
                                      c.min_masks) & frames
    out = self.model.apply({"params": params}, waveform, sample_mask, time_mask, temperature,
                           gumbel_key if train else None, deterministic=not train,
                           rngs={"dropout": dropout_key})
    contrastive, accuracy = pretraining.contrastive_loss(
        negative_key, out["context"], out["quantized"], time_mask, c.num_negatives, c.kappa)
    codes = self.config.model.num_groups * self.config.model.num_entries
    diversity = (codes - out["prob_perplexity"]) / codes
    weight = frames.astype(jnp.float32)[..., None]
    penalty = (jnp.sum(jnp.square(out["conv_features"].astype(jnp.float32)) * weight)
               / jnp.maximum(jnp.sum(weight) * out["conv_features"].shape[-1], 1.0))
    loss = contrastive + c.diversity_weight * diversity + c.feature_penalty * penalty
    masked = jnp.sum(time_mask) / jnp.maximum(jnp.sum(frames), 1)
    return loss, {"contrastive": contrastive, "diversity": diversity,
                  "feature_penalty": penalty, "accuracy": accuracy,
                  "prob_perplexity": out["prob_perplexity"],
                  "code_perplexity": out["code_perplexity"], "temperature": temperature,
                  "masked_fraction": masked}

  def loss_fn(self, params: Any, model_state: Any, batch: dict[str, jax.Array], rng: jax.Array,
              step: jax.Array | None = None):
    """`step` (the update count) sets the Gumbel temperature; `train_step` passes it."""
    del model_state
    step = jnp.zeros((), jnp.int32) if step is None else step
    loss, metrics = self._losses(params, batch, rng, self.temperature(step), train=True)
    return loss, (metrics, None)

  def train_step(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
    def loss_at_step(params, model_state, batch, rng):
      return self.loss_fn(params, model_state, batch, rng, step=state.step)
    return steps.gradient_step(state, loss_at_step, batch, rng)

  # --------------------------------------------------------------------------------- evaluation

  def eval_step(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
    del rng  # a fixed mask and distractors, so evaluations compare
    key = jax.random.PRNGKey(self.config.data.eval_seed)
    valid = batch["valid"].astype(bool)
    loss, metrics = self._losses(state.eval_params, batch, key, self.temperature(state.step),
                                 train=False, valid=valid)
    del metrics["temperature"]
    return {"loss": loss, **metrics, "eval_weight": jnp.sum(valid.astype(jnp.float32))}

  # -------------------------------------------------------------------------------------- data

  def _options(self) -> dict[str, Any]:
    d = self.config.data
    return dict(mel=None, identities=parse_identities(d.identities) or None,
                min_length=d.min_length, max_length=d.max_length)

  def train_iterator(self, batch_size: int, shard_index: int, shard_count: int):
    d = self.config.data
    return sequences.make_sequence_iterator(
        d.root, batch_size=batch_size, shard_index=shard_index, shard_count=shard_count,
        seed=self.config.seed, num_workers=d.num_workers, split="train", **self._options())

  def eval_batches(self, batch_size: int, shard_index: int, shard_count: int):
    d = self.config.data
    if not d.eval_split:
      return
    it = sequences.make_sequence_eval_iterator(
        d.root, batch_size=batch_size, shard_index=shard_index, shard_count=shard_count,
        seed=d.eval_seed, num_workers=0, split=d.eval_split, **self._options())
    yield from ({k: b[k] for k in ("audio", "mask", "valid")} for b in it)

  # ------------------------------------------------------------------------------- benchmark

  def inference(self, state: TrainState):
    """The encoder on `batch_size` max_length windows (feature extraction)."""
    model = wav2vec2.Wav2Vec2Model(self.encoder_config)
    samples = self.config.data.max_length * SAMPLES_PER_FRAME
    waveform = jnp.asarray(np.zeros((self.config.batch_size, samples), np.float32))
    fn = jax.jit(lambda variables, x: model.apply(variables, x).last_hidden_state)
    return fn, (self.encoder_variables(state), waveform)
