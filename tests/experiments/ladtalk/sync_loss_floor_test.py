"""The sync-loss floor reads the stage's evaluation windows at the corpus size and scores each
face size and BatchNorm mode; the row at the corpus size is the expert's loss on those frames."""

import jax.numpy as jnp
import numpy as np

from experiments.ladtalk import sync_loss_floor
from talking_heads.pipelines import clips as clips_pipeline
from talking_heads.systems.experts import sync_expert as sync_expert_lib
from talking_heads.systems.images import pixels_to_unit
from talking_heads.systems.ladtalk import wav2lip
from tests.systems.ladtalk.wav2lip_test import dataset, expert_workdir, tiny_config  # noqa: F401  pylint: disable=unused-import


def test_rows_cover_sizes_and_modes_and_match_the_expert(dataset, expert_workdir):  # noqa: F811
  config = tiny_config(dataset, expert_workdir)
  rows = sync_loss_floor.floor_rows(config, (32, 64))
  assert [(r["face_size"], r["batchnorm"]) for r in rows] == [
      (32, "running statistics"), (32, "batch statistics"),
      (64, "running statistics"), (64, "batch statistics")]
  assert all(np.isfinite(r["in_sync"]) and np.isfinite(r["other_audio"]) for r in rows)
  d = config.data
  batches = list(clips_pipeline.make_clips_eval_iterator(
      d.root, seed=d.eval_seed, num_workers=0, split=d.eval_split, stride=d.eval_stride,
      batch_size=config.eval_batch_size, shard_index=0, shard_count=1, num_frames=wav2lip.WINDOW,
      audio=clips_pipeline.WAV2LIP_AUDIO, reference_mode="window", image_size=None))
  expert = sync_expert_lib.load_frozen_expert(config.sync_expert)
  losses = [float(expert.loss(b["mel"], pixels_to_unit(jnp.asarray(b["frames"])),
                              jnp.asarray(b["valid"], jnp.float32))) for b in batches]
  weights = [float(np.sum(b["valid"])) for b in batches]
  np.testing.assert_allclose(rows[2]["in_sync"], np.average(losses, weights=weights), rtol=1e-5)
  assert rows[2]["windows"] == int(sum(weights))
