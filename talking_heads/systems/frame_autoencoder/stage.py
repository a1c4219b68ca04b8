"""Frame autoencoder stage: reconstruct frames with L1 + MSE.

The first real stage of the library: it exercises the whole trainer (sharding, checkpoints,
resume, logging, benchmarks) and is the base the VQ autoencoders of LaDTalk and FD2Talk grow from.
Data: a dataset in the project's format (`data.root`: train split for training, every
`data.eval_stride`-th frame of the val split for evaluation), or, when `data.root` is empty,
procedurally generated frames (no files needed).

Config fields: model{widths, latent_channels, dtype}, data{root, image_size, num_frames,
num_eval_frames, eval_stride, seed, num_workers}, optimizer{...}, plus the trainer fields
(`talking_heads.training.loop`).
"""

from __future__ import annotations

from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from talking_heads.metrics import image as image_metrics
from talking_heads.metrics import reduce
from talking_heads.models.autoencoder import ConvAutoencoder
from talking_heads.pipelines import frames as frames_pipeline
from talking_heads.pipelines.procedural import ProceduralFrames
from talking_heads.training.optimizers import build_optimizer
from talking_heads.training.stage import LossStage
from talking_heads.training.state import TrainState


def make_batches(source: Any, batch_size: int, shard_index: int, shard_count: int, seed: int,
                 num_workers: int = 0, shuffle: bool = True) -> grain.DatasetIterator:
  """Sharded, shuffled, repeated, batched grain iterator (checkpointable) over a random-access source."""
  ds = grain.MapDataset.source(source)[shard_index::shard_count]
  if shuffle:
    ds = ds.shuffle(seed=seed).repeat()
  ds = ds.batch(batch_size, drop_remainder=True).to_iter_dataset(
      grain.ReadOptions(num_threads=2, prefetch_buffer_size=4))
  if num_workers:
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  return iter(ds)


class FrameAutoencoderStage(LossStage):
  """Trains `ConvAutoencoder` on uint8 frames (batch key "image": [B, H, W, 3])."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    m = config.model
    self.model = ConvAutoencoder(widths=tuple(m.widths), latent_channels=m.latent_channels,
                                 dtype=jnp.dtype(m.get("dtype", "float32")))
    self.tx = build_optimizer(config.optimizer, config.total_steps)

  def _source(self, eval_split: bool) -> ProceduralFrames:
    d = self.config.data
    return ProceduralFrames(size=d.image_size, length=d.num_eval_frames if eval_split else d.num_frames,
                            seed=d.seed + (1_000_003 if eval_split else 0))

  def init_state(self, rng: jax.Array) -> TrainState:
    size = self.config.data.image_size
    params = self.model.init(rng, jnp.zeros((1, size, size, 3), jnp.float32))["params"]
    return TrainState.create(params, self.tx, rng=rng, ema_decay=self.config.get("ema_decay", 0.0))

  def _losses(self, params: Any, images: jax.Array, weights: jax.Array | None = None
              ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Losses averaged over examples with `weights` [B] (default: all ones)."""
    target = images.astype(jnp.float32) / 255.0                   # [B, H, W, 3]
    recon = self.model.apply({"params": params}, target)          # [B, H, W, 3]
    weights = jnp.ones(target.shape[:1]) if weights is None else weights.astype(jnp.float32)
    mean = lambda per_example: reduce.weighted_mean(per_example, weights)
    l1 = mean(jnp.mean(jnp.abs(recon - target), axis=(1, 2, 3)))
    mse = mean(jnp.mean(jnp.square(recon - target), axis=(1, 2, 3)))
    psnr = mean(image_metrics.psnr(recon, target, data_range=1.0))
    return l1 + mse, {"l1": l1, "mse": mse, "psnr": psnr}

  def loss_fn(self, params: Any, model_state: Any, batch: dict[str, jax.Array], rng: jax.Array):
    del model_state, rng  # deterministic stage
    loss, metrics = self._losses(params, batch["image"])
    return loss, (metrics, None)

  def train_iterator(self, batch_size: int, shard_index: int, shard_count: int):
    d = self.config.data
    if d.root:
      return frames_pipeline.make_frames_iterator(
          d.root, batch_size=batch_size, shard_index=shard_index, shard_count=shard_count,
          seed=self.config.seed, num_workers=d.num_workers, split="train", image_size=d.image_size)
    return make_batches(self._source(False), batch_size, shard_index, shard_count, seed=self.config.seed,
                        num_workers=d.num_workers)

  def eval_step(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
    weights = batch.get("valid")
    loss, aux = self._losses(state.eval_params, batch["image"], weights)
    count = jnp.sum(weights.astype(jnp.float32)) if weights is not None else jnp.float32(batch["image"].shape[0])
    return {"loss": loss, **aux, "eval_weight": count}

  def eval_batches(self, batch_size: int, shard_index: int, shard_count: int):
    d = self.config.data
    if d.root:
      it = frames_pipeline.make_frames_eval_iterator(
          d.root, batch_size=batch_size, shard_index=shard_index, shard_count=shard_count, seed=d.seed,
          num_workers=0, split="val", stride=d.eval_stride, image_size=d.image_size)
      yield from ({"image": b["image"], "valid": b["valid"]} for b in it)
      return
    source = self._source(True)
    ids = np.arange(len(source))[shard_index::shard_count]
    for start in range(0, len(ids) - batch_size + 1, batch_size):
      yield {"image": np.stack([source[int(i)]["image"] for i in ids[start:start + batch_size]])}

  def images(self, state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
    target = batch["image"][:8].astype(jnp.float32) / 255.0
    recon = self.model.apply({"params": state.eval_params}, target)
    return {"reconstruction": jnp.concatenate([target, recon], axis=2)}   # [N, H, 2W, 3]

  def inference(self, state: TrainState):
    size = self.config.data.image_size
    images = jnp.zeros((self.config.batch_size, size, size, 3), jnp.float32)
    return (lambda params, x: self.model.apply({"params": params}, x)), (state.eval_params, images)
