"""Lip-sync expert stage: Wav2Lip's SyncNet_color trained on in-sync / off-sync pairs.

As the reference trains it: a 5-frame window of lower-half faces and the 0.2 s mel window of the
window's first frame; with probability 1/2 the frames start at the audio's frame (label 1), else
at another start of the same clip (label 0); loss = BCE of the cosine similarity of the two
L2-normalised embeddings. Evaluation reports the BCE and the accuracy (cosine > 0.5) on a split
the model never trains on. LaDTalk's Wav2Lip trains against this expert, frozen, and the LSE
evaluator can score with it (reported as "SyncNet trained here", not comparable with papers).

Config fields: model{width, dtype}, data{root, image_size, min_offset, eval_split, eval_stride,
bgr, num_workers}, optimizer{...}, plus the trainer fields.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from talking_heads.losses.sync import cosine_bce, cosine_similarity
from talking_heads.metrics import reduce
from talking_heads.models.syncnet import SyncNetColor, stack_lower_halves
from talking_heads.pipelines import sync as sync_pipeline
from talking_heads.training.optimizers import build_optimizer
from talking_heads.training.stage import LossStage
from talking_heads.training.state import TrainState

WINDOW = 5


class SyncNetStage(LossStage):
  """Batch keys (from `pipelines.sync`): frames uint8 [B, 5, 96, 96, 3], mel [B, 80, 16], label [B]."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.model = SyncNetColor(width=config.model.width, dtype=jnp.dtype(config.model.get("dtype", "float32")))
    self.tx = build_optimizer(config.optimizer, config.total_steps)

  def _inputs(self, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    faces = stack_lower_halves(batch["frames"], to_bgr=self.config.data.bgr)   # [B, 48, 96, 15]
    mels = batch["mel"][..., None].astype(jnp.float32)                        # [B, 80, 16, 1]
    return mels, faces

  def init_state(self, rng: jax.Array) -> TrainState:
    size = self.config.data.image_size
    frames = jnp.zeros((1, WINDOW, size, size, 3), jnp.uint8)
    mels, faces = self._inputs({"frames": frames, "mel": jnp.zeros((1, 80, 16))})
    variables = self.model.init(rng, mels, faces, use_running_average=False)
    return TrainState.create(variables["params"], self.tx, rng=rng,
                             model_state={"batch_stats": variables["batch_stats"]},
                             ema_decay=self.config.get("ema_decay", 0.0))

  def _metrics(self, audio: jax.Array, face: jax.Array, label: jax.Array,
               weights: jax.Array | None = None) -> dict[str, jax.Array]:
    loss = cosine_bce(audio, face, label, weights)
    correct = ((cosine_similarity(audio, face) > 0.5) == (label > 0.5)).astype(jnp.float32)   # [B]
    w = jnp.ones_like(correct) if weights is None else weights.astype(jnp.float32)
    return {"loss": loss, "accuracy": reduce.weighted_mean(correct, w)}

  def loss_fn(self, params: Any, model_state: Any, batch: dict[str, jax.Array], rng: jax.Array):
    del rng  # sampling randomness lives in the data pipeline
    mels, faces = self._inputs(batch)
    (audio, face), updates = self.model.apply({"params": params, **model_state}, mels, faces,
                                              use_running_average=False, mutable=["batch_stats"])
    metrics = self._metrics(audio, face, batch["label"])
    return metrics["loss"], (metrics, {"batch_stats": updates["batch_stats"]})

  def embed(self, variables: dict[str, Any], batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """(audio [B, D], face [B, D]) embeddings with running BatchNorm statistics."""
    mels, faces = self._inputs(batch)
    return self.model.apply(variables, mels, faces, use_running_average=True)

  def variables(self, state: TrainState) -> dict[str, Any]:
    return {"params": state.eval_params, **state.model_state}

  def eval_step(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
    audio, face = self.embed(self.variables(state), batch)
    valid = batch["valid"]
    return {**self._metrics(audio, face, batch["label"], valid),
            "eval_weight": jnp.sum(valid.astype(jnp.float32))}

  def _pipeline_args(self, batch_size: int, shard_index: int, shard_count: int) -> dict[str, Any]:
    d = self.config.data
    return dict(batch_size=batch_size, shard_index=shard_index, shard_count=shard_count,
                num_frames=WINDOW, min_offset=d.min_offset, image_size=d.image_size)

  def train_iterator(self, batch_size: int, shard_index: int, shard_count: int):
    d = self.config.data
    return sync_pipeline.make_sync_iterator(d.root, seed=self.config.seed, num_workers=d.num_workers,
                                            split="train", **self._pipeline_args(batch_size, shard_index, shard_count))

  def eval_batches(self, batch_size: int, shard_index: int, shard_count: int):
    d = self.config.data
    it = sync_pipeline.make_sync_eval_iterator(d.root, seed=d.eval_seed, num_workers=0, split=d.eval_split,
                                               stride=d.eval_stride,
                                               **self._pipeline_args(batch_size, shard_index, shard_count))
    keys = ("frames", "mel", "label", "valid")
    yield from ({k: b[k] for k in keys} for b in it)

  def images(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
    faces = batch["frames"][:4, :, self.config.data.image_size // 2:]            # [4, 5, S/2, S, 3]
    n, t, h, w, c = faces.shape
    return {"lower_half_windows": faces.transpose(0, 2, 1, 3, 4).reshape(n, h, t * w, c).astype(jnp.float32) / 255.0}

  def inference(self, state: TrainState):
    s, b = self.config.data.image_size, self.config.batch_size
    batch = {"frames": jnp.zeros((b, WINDOW, s, s, 3), jnp.uint8), "mel": jnp.zeros((b, 80, 16))}
    return (lambda variables, batch: self.embed(variables, batch)), (self.variables(state), batch)
