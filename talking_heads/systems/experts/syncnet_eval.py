"""Independent evaluation expert: syncnet_python's network S trained here, only to score LSE.

Why: the colour expert (`syncnet` stage) is what Wav2Lip trains against; scoring the generators
with the same network family trained on the same corpus rewards training against the judge.
Papers score with syncnet_python's S, which no generator was trained against; without its public
weights (`syncnet_v2.model`) this stage trains S's architecture on the corpus, on its own data
order and seed, with its own inputs (MFCC and whole face crops, not mels and lower halves), and
no generator ever sees it.

Inputs as syncnet_python scores (`metrics.sync_experts.SyncNetSExpert`): 5 whole face crops, BGR,
raw 0..255 floats, resized to `model.lip_size` (224 published; smaller here, see the configs);
audio: MFCC columns 4v .. 4v+19 (13 x 20, python_speech_features' defaults).

Objective. syncnet_python ships inference only. S's paper (Chung & Zisserman 2016) trained with
a contrastive loss on pair distances; we train multi-way matching (Chung et al. 2019, "Perfect
Match"), which is what LSE measures: for the frames at v and the audio windows at v + k,
k = -K .. K (`pipelines.sync.make_offset_iterator`), cross-entropy of softmax(-d_k) with the
in-sync k = 0 as the class, d_k the Euclidean distance of the (unnormalised) embeddings as LSE-D
uses it; windows outside the clip are masked out. Evaluation reports the loss and the offset
accuracy (argmin_k d_k == 0) on a split the model never trains on.

Config fields: model{width, lip_size, embed_dim, dtype}, data{root, max_offset, lip_region
(`pipelines.sync.crop_lip_region`), eval_split, eval_stride, num_workers}, optimizer{...}, plus the
trainer fields.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from talking_heads.metrics import reduce
from talking_heads.models.syncnet import SyncNetS
from talking_heads.pipelines import sync as sync_pipeline
from talking_heads.training.optimizers import build_optimizer
from talking_heads.training.stage import LossStage
from talking_heads.training.state import TrainState

WINDOW = 5


def offset_logits(lip: jax.Array, audio: jax.Array, mask: jax.Array) -> jax.Array:
  """-Euclidean distance of lip [B, D] to audio [B, K2, D] embeddings; masked entries -inf."""
  distance = jnp.sqrt(jnp.sum(jnp.square(lip[:, None] - audio), axis=-1) + 1e-12)   # [B, K2]
  return jnp.where(mask, -distance, -jnp.inf)


def multiway_metrics(logits: jax.Array, weights: jax.Array) -> dict[str, jax.Array]:
  """Cross-entropy towards the middle (in-sync) offset and its accuracy; logits [B, 2K+1]."""
  middle = logits.shape[1] // 2
  log_probs = jax.nn.log_softmax(logits, axis=-1)                                  # [B, K2]
  loss = -log_probs[:, middle]                                                     # [B]
  correct = (jnp.argmax(logits, axis=-1) == middle).astype(jnp.float32)            # [B]
  return {"loss": reduce.weighted_mean(loss, weights),
          "offset_accuracy": reduce.weighted_mean(correct, weights)}


class SyncNetEvalStage(LossStage):
  """Batch keys (`pipelines.sync.make_offset_iterator`): frames uint8 [B, 5, L, L, 3],
  mfcc float32 [B, 2K+1, 13, 20], offset_mask bool [B, 2K+1]; eval adds valid bool [B]."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    m = config.model
    self.model = SyncNetS(embed_dim=m.embed_dim, width=m.width, lip_size=m.lip_size,
                          dtype=jnp.dtype(m.get("dtype", "float32")))
    self.tx = build_optimizer(config.optimizer, config.total_steps)

  def _embed(self, variables: dict[str, Any], batch: dict[str, jax.Array], train: bool):
    """(lip [B, D], audio [B, 2K+1, D], batch_stats updates or None)."""
    lips = batch["frames"][..., ::-1].astype(jnp.float32)                   # BGR, raw 0..255
    mfcc = batch["mfcc"]
    b, k2 = mfcc.shape[:2]
    mfcc = mfcc.reshape(b * k2, *mfcc.shape[2:], 1).astype(jnp.float32)    # [B K2, 13, 20, 1]
    if train:
      (lip, audio), updates = self.model.apply(variables, lips, mfcc, use_running_average=False,
                                               mutable=["batch_stats"])
    else:
      lip, audio = self.model.apply(variables, lips, mfcc, use_running_average=True)
      updates = None
    return lip, audio.reshape(b, k2, -1), updates

  def init_state(self, rng: jax.Array) -> TrainState:
    size = self.config.model.lip_size
    lips = jnp.zeros((1, WINDOW, size, size, 3), jnp.float32)
    variables = self.model.init(rng, lips, jnp.zeros((1, 13, 20, 1)), use_running_average=False)
    return TrainState.create(variables["params"], self.tx, rng=rng,
                             model_state={"batch_stats": variables["batch_stats"]},
                             ema_decay=self.config.get("ema_decay", 0.0))

  def loss_fn(self, params: Any, model_state: Any, batch: dict[str, jax.Array], rng: jax.Array):
    del rng  # sampling randomness lives in the data pipeline
    lip, audio, updates = self._embed({"params": params, **model_state}, batch, train=True)
    logits = offset_logits(lip, audio, batch["offset_mask"])
    metrics = multiway_metrics(logits, jnp.ones(logits.shape[:1]))
    return metrics["loss"], (metrics, updates)

  def variables(self, state: TrainState) -> dict[str, Any]:
    return {"params": state.eval_params, **state.model_state}

  def eval_step(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
    lip, audio, _ = self._embed(self.variables(state), batch, train=False)
    valid = batch["valid"].astype(jnp.float32)
    return {**multiway_metrics(offset_logits(lip, audio, batch["offset_mask"]), valid),
            "eval_weight": jnp.sum(valid)}

  def _pipeline_args(self, batch_size: int, shard_index: int, shard_count: int) -> dict[str, Any]:
    d = self.config.data
    return dict(batch_size=batch_size, shard_index=shard_index, shard_count=shard_count,
                num_frames=WINDOW, max_offset=d.max_offset, image_size=self.config.model.lip_size,
                region=d.get("lip_region", "face"))

  def train_iterator(self, batch_size: int, shard_index: int, shard_count: int):
    d = self.config.data
    return sync_pipeline.make_offset_iterator(
        d.root, seed=self.config.seed, num_workers=d.num_workers, split="train",
        **self._pipeline_args(batch_size, shard_index, shard_count))

  def eval_batches(self, batch_size: int, shard_index: int, shard_count: int):
    d = self.config.data
    it = sync_pipeline.make_offset_eval_iterator(
        d.root, num_workers=0, split=d.eval_split, stride=d.eval_stride,
        **self._pipeline_args(batch_size, shard_index, shard_count))
    keys = ("frames", "mfcc", "offset_mask", "valid")
    yield from ({k: b[k] for k in keys} for b in it)

  def images(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
    windows = batch["frames"][:4]                                           # [4, 5, L, L, 3]
    n, t, h, w, c = windows.shape
    return {"lip_windows": windows.transpose(0, 2, 1, 3, 4).reshape(n, h, t * w, c)
                           .astype(jnp.float32) / 255.0}

  def inference(self, state: TrainState):
    size, b = self.config.model.lip_size, self.config.batch_size
    k2 = 2 * self.config.data.max_offset + 1
    batch = {"frames": jnp.zeros((b, WINDOW, size, size, 3), jnp.uint8),
             "mfcc": jnp.zeros((b, k2, 13, 20)), "offset_mask": jnp.ones((b, k2), bool)}
    return ((lambda variables, batch: self._embed(variables, batch, train=False)[:2]),
            (self.variables(state), batch))
