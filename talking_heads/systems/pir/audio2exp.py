"""PIR's component A stage (`pir_audio2exp`): audio to the morphable model's expression
coefficients (paper §3.1, Eq. 2; spec §2.1, §3).

Trains `models.pir_audio2exp.Audio2Expression` on windows of k = `data.window` frames of one
person's (`data.identities`) train clips (`pipelines.sequences`, fixed-length windows at a random
start), teacher-forced (token i+1 carries the ground-truth expression a_i):

  loss = mean over frames and coefficients of (A(audio, alpha, a_<i)_i - a_i)^2      (Eq. 2 as a mean)

with the clip's identity parameters alpha as z_id (the corpus has one alpha per clip; the paper
averages the per-frame fit over the video). Dropout (0.1) is on in training.

Audio features (`audio.frontend`), at the video rate as A's alignment bias needs:
  mel       the RADIO mel (80 bins, 100 fps), its R = 4 frames per video frame stacked: [T, 320].
  wav2vec2  the paper's (spec §2.1): hidden state `audio.layer` of `audio.weights`, linearly
            interpolated to 25 fps ("interpolate" alignment, FaceFormer's), cached per clip by
            `experiments.precompute_audio_features`; width `audio.dim`. Cached features mean a
            frozen encoder (the paper fine-tunes wav2vec2's transformer; not done here).

Evaluation on `data.eval_split` windows of the identity: `teacher_forced_mse` (the training
loss without dropout) and `autoregressive_mse` (the expressions generated frame by frame through
`jax.lax.scan`, as at inference, against the true ones), frames weighted equally.

Config fields: model{dropout, dtype} (widths from `systems.pir.sizes` of `model.sizes`),
audio{frontend, weights, weights_dir, layer, dim}, data{root, identities, window, eval_split,
eval_seed, num_workers}, optimizer{...}, plus the trainer fields.

Dimensions: B batch, T = k frames, F audio feature width, A identity and E expression parameters.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections

from talking_heads.audio import mel as mel_lib
from talking_heads.audio import wav2vec2_features
from talking_heads.face import morphable
from talking_heads.io import dataset as dataset_lib
from talking_heads.io.dataset import parse_identities
from talking_heads.models import pir_audio2exp
from talking_heads.pipelines import base
from talking_heads.pipelines import sequences
from talking_heads.systems.pir import sizes as sizes_lib
from talking_heads.training.optimizers import build_optimizer
from talking_heads.training.stage import LossStage
from talking_heads.training.state import TrainState

STAGE = "pir_audio2exp"
FRONTENDS = ("mel", "wav2vec2")
MEL = mel_lib.RADIO_MEL
MEL_PER_FRAME = 4      # RADIO_MEL frames per 25 fps video frame
ALIGNMENT = "interpolate"

PyTree = Any


def feature_dim(config: ml_collections.ConfigDict) -> int:
  """F of `audio.frontend` (module docstring)."""
  audio = config.audio
  if audio.frontend not in FRONTENDS:
    raise ValueError(f"audio.frontend must be one of {FRONTENDS}, got {audio.frontend!r}")
  if audio.frontend == "mel":
    return MEL_PER_FRAME * MEL.n_mels
  if not audio.weights or audio.dim <= 0:
    raise ValueError("audio.frontend=wav2vec2 needs audio.weights (a hub name such as "
                     "facebook/wav2vec2-large-xlsr-53, a transformers folder or a "
                     f"wav2vec2_pretrain workdir) and audio.dim > 0, got {audio.weights!r}, "
                     f"{audio.dim}")
  return audio.dim


def build_model(config: ml_collections.ConfigDict) -> pir_audio2exp.Audio2Expression:
  m = config.model
  return pir_audio2exp.Audio2Expression(
      expression_dim=morphable.default_model().num_expression,
      **sizes_lib.sizes(m.sizes).audio2exp, dropout=m.dropout,
      dtype=jnp.dtype(m.get("dtype", "float32")))


class Audio2ExpressionStage(LossStage):
  """Trains component A (module docstring for batch, loss and config).

  Batch keys (`pipelines.sequences`): mel float32 [B, 4 T, 80] (or audio_features [B, T, F]),
  alpha [B, A], expression [B, T, E], mask bool [B, T]; eval batches also valid bool [B].
  """

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    if config.data.window < 1:
      raise ValueError(f"data.window must be >= 1 frame, got {config.data.window}")
    self.model = build_model(config)
    if config.data.window > self.model.max_length:
      raise ValueError(f"data.window {config.data.window} exceeds the model's "
                       f"{self.model.max_length} frames")
    self.feature_dim = feature_dim(config)
    self.feature_name = (None if config.audio.frontend == "mel" else wav2vec2_features.feature_name(
        config.audio.weights, config.audio.layer, ALIGNMENT))
    self.tx = build_optimizer(config.optimizer, config.total_steps)

  # -------------------------------------------------------------------------------- model

  def features(self, batch: Mapping[str, jax.Array]) -> jax.Array:
    """A's audio input [B, T, F]: the stacked mel frames of each video frame, or the cache."""
    if self.feature_name is not None:
      return batch["audio_features"].astype(jnp.float32)
    mel = batch["mel"].astype(jnp.float32)                                  # [B, 4 T, 80]
    return mel.reshape(mel.shape[0], -1, self.feature_dim)

  def init_state(self, rng: jax.Array) -> TrainState:
    model_lib = morphable.default_model()
    t = 2
    params = self.model.init(
        rng, jnp.zeros((1, t, self.feature_dim)), jnp.zeros((1, model_lib.num_identity)),
        jnp.zeros((1, t, model_lib.num_expression)))["params"]
    return TrainState.create(params, self.tx, rng=rng, ema_decay=self.config.get("ema_decay", 0.0))

  @staticmethod
  def _mse(prediction: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean squared error over the frames where `mask` [B, T] holds and every coefficient."""
    weight = mask.astype(jnp.float32)[..., None]
    error = jnp.sum(weight * jnp.square(prediction - target))
    return error / jnp.maximum(jnp.sum(weight) * target.shape[-1], 1.0)

  def loss_fn(self, params: PyTree, model_state: PyTree, batch: Mapping[str, jax.Array],
              rng: jax.Array):
    del model_state
    target = batch["expression"].astype(jnp.float32)
    out = self.model.apply({"params": params}, self.features(batch),
                           batch["alpha"].astype(jnp.float32), target, deterministic=False,
                           rngs={"dropout": rng})
    return self._mse(out, target, batch["mask"]), ({}, None)

  # --------------------------------------------------------------------------- evaluation

  def _predictions(self, params: PyTree, batch: Mapping[str, jax.Array]
                   ) -> tuple[jax.Array, jax.Array]:
    """(teacher-forced, autoregressive) expressions [B, T, E] without dropout."""
    audio, alpha = self.features(batch), batch["alpha"].astype(jnp.float32)
    target = batch["expression"].astype(jnp.float32)
    teacher = self.model.apply({"params": params}, audio, alpha, target)
    free = pir_audio2exp.autoregressive(self.model, {"params": params}, audio, alpha)
    return teacher, free

  def eval_step(self, state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array):
    del rng
    mask = batch["mask"].astype(bool) & batch["valid"].astype(bool)[:, None]
    teacher, free = self._predictions(state.eval_params, batch)
    target = batch["expression"].astype(jnp.float32)
    return {"teacher_forced_mse": self._mse(teacher, target, mask),
            "autoregressive_mse": self._mse(free, target, mask),
            "eval_weight": jnp.sum(mask)}

  def images(self, state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array):
    """Expressions over time per window, true / teacher-forced / autoregressive stacked:
    [N, 3 E + 2, T, 3] (coefficients in [0, 1] as grey levels), 4 pixels per value."""
    del rng
    n = min(4, batch["expression"].shape[0])
    small = {k: v[:n] for k, v in batch.items()}
    teacher, free = self._predictions(state.eval_params, small)
    rows = [small["expression"].astype(jnp.float32), teacher, free]
    gap = jnp.ones((n, small["expression"].shape[1], 1))
    strip = jnp.concatenate([x for r in rows for x in (jnp.clip(r, 0.0, 1.0), gap)][:-1],
                            axis=-1)                                       # [N, T, 3E + 2]
    image = jnp.repeat(strip.transpose(0, 2, 1)[..., None], 3, axis=-1)
    return {"expression_true_teacher_autoregressive":
            jnp.repeat(jnp.repeat(image, 4, axis=1), 4, axis=2)}

  # --------------------------------------------------------------------------------- data

  def _identities(self) -> tuple[str, ...] | None:
    return parse_identities(self.config.data.identities) or None

  def _options(self) -> dict[str, Any]:
    d = self.config.data
    data = dataset_lib.Dataset(d.root)
    model = morphable.default_model()
    if len(data.expression_names) != model.num_expression or (
        data.num_identity_params != model.num_identity):
      raise ValueError(f"dataset {d.root}: {len(data.expression_names)} expression and "
                       f"{data.num_identity_params} identity parameters; PIR's networks are "
                       f"built for the morphable model's {model.num_expression} and "
                       f"{model.num_identity}")
    if self.feature_name is not None:
      clips = [c for split in ("train", d.eval_split)
               for c in base.open_split(d.root, split, self._identities())[1]]
      try:
        info = base.check_audio_features(d.root, self.feature_name, clips)
      except dataset_lib.DatasetError as e:
        raise dataset_lib.DatasetError(
            d.root, f"audio.frontend=wav2vec2 reads cached features: {e}. Write them with "
            f"`python -m experiments.precompute_audio_features --dataset={d.root} "
            f"--frontend=wav2vec2 --weights={self.config.audio.weights} "
            f"--layer={self.config.audio.layer} --alignment={ALIGNMENT}`") from None
      if info["dim"] != self.feature_dim:
        raise ValueError(f"audio.dim is {self.feature_dim} but the cached features "
                         f"{self.feature_name!r} are {info['dim']}-d")
    return dict(mel=MEL if self.feature_name is None else None,
                audio_features=self.feature_name, identities=self._identities(),
                min_length=d.window, max_length=d.window)

  def train_iterator(self, batch_size: int, shard_index: int, shard_count: int):
    d = self.config.data
    return sequences.make_sequence_iterator(
        d.root, batch_size=batch_size, shard_index=shard_index, shard_count=shard_count,
        seed=self.config.seed, num_workers=d.num_workers, split="train", **self._options())

  def eval_batches(self, batch_size: int, shard_index: int, shard_count: int):
    d = self.config.data
    it = sequences.make_sequence_eval_iterator(
        d.root, batch_size=batch_size, shard_index=shard_index, shard_count=shard_count,
        seed=d.eval_seed, num_workers=0, split=d.eval_split, **self._options())
    keys = ("audio_features" if self.feature_name else "mel", "alpha", "expression", "mask",
            "valid")
    yield from ({k: b[k] for k in keys} for b in it)

  # ---------------------------------------------------------------------------- benchmark

  def inference(self, state: TrainState) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """Autoregressive expressions of `batch_size` windows of k frames."""
    b, t = self.config.batch_size, self.config.data.window
    audio = jnp.zeros((b, t, self.feature_dim))
    alpha = jnp.zeros((b, morphable.default_model().num_identity))
    fn = jax.jit(lambda params, x, a: pir_audio2exp.autoregressive(self.model, {"params": params},
                                                                   x, a))
    return fn, (state.eval_params, audio, alpha)
