"""Tests for talking_heads.pipelines.sync: in-sync / off-sync pairs for lip-sync experts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.audio import mel as mel_lib
from talking_heads.io import dataset as dataset_lib
from talking_heads.pipelines import sync, testing


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  path = tmp_path_factory.mktemp("data")
  testing.write_random_dataset(path, [30, 45, 8])
  return path


def _samples(root, n=8, **options):
  it = sync.make_sync_iterator(root, batch_size=8, shard_index=0, shard_count=1, seed=0,
                               num_workers=0, **options)
  try:
    batches = [next(it) for _ in range(n)]
  finally:
    it.close()
  return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def test_pairs_are_in_sync_or_off_by_at_least_the_gap(root):
  data = dataset_lib.Dataset(root)
  full = {c.id: mel_lib.mel_spectrogram(np.asarray(c.audio)) for c in data}
  s = _samples(root, min_offset=4)
  assert s["frames"].shape == (64, 5, 32, 32, 3) and s["frames"].dtype == np.uint8
  assert s["mel"].shape == (64, 80, 16) and s["mel"].dtype == np.float32
  assert s["label"].dtype == np.float32 and s["offset"].dtype == np.int32
  np.testing.assert_array_equal(s["label"], (s["offset"] == 0).astype(np.float32))
  off = s["offset"][s["label"] == 0]
  assert (np.abs(off) >= 4).all() and (off < 0).any() and (off > 0).any()
  assert 16 <= int(s["label"].sum()) <= 48  # about half in sync
  for k in range(64):
    clip = data.clips()[s["clip"][k]]
    f, visual = int(s["start"][k]), int(s["start"][k] + s["offset"][k])
    np.testing.assert_array_equal(s["frames"][k], clip.frames[visual:visual + 5])
    first = 80 * f // 25  # the audio always belongs to frame f
    np.testing.assert_array_equal(s["mel"][k], full[clip.id][:, first:first + 16])


def test_sync_probability_extremes(root):
  assert (_samples(root, n=3, sync_prob=1.0)["label"] == 1).all()
  assert (_samples(root, n=3, sync_prob=0.0)["label"] == 0).all()


def test_starts_without_an_off_sync_partner_are_excluded(root):
  it = sync.make_sync_eval_iterator(root, batch_size=4, shard_index=0, shard_count=1, seed=0,
                                    num_workers=0, split="train", stride=1, min_offset=3)
  starts = {(int(c), int(f)) for b in it for c, f, v in zip(b["clip"], b["start"], b["valid"])
            if v}
  # clip002 has 8 frames: visual starts 0..3, so only f = 0 and f = 3 have a partner 3+ away.
  assert sorted(f for c, f in starts if c == 2) == [0, 3]
  assert sorted(f for c, f in starts if c == 0) == list(range(26))


def test_bad_arguments(root):
  with pytest.raises(ValueError, match="min_offset"):
    sync.make_sync_iterator(root, batch_size=1, shard_index=0, shard_count=1, seed=0,
                            num_workers=0, min_offset=0)


def test_batch_feeds_a_jitted_step(root):
  s = _samples(root, n=1)
  w_video = np.random.default_rng(0).normal(size=(16 * 32 * 3, 8)).astype(np.float32)
  w_audio = np.random.default_rng(1).normal(size=(80 * 16, 8)).astype(np.float32)

  def embed(batch, xp):
    lower = batch["frames"][:, :, 16:].astype(np.float32).mean(axis=1) / 255.0  # [B, 16, 32, 3]
    v = xp.maximum(lower.reshape(len(lower), -1) @ w_video, 0.0)
    a = xp.maximum(batch["mel"].reshape(len(lower), -1) @ w_audio, 0.0)
    cos = (v * a).sum(-1) / (xp.linalg.norm(v, axis=-1) * xp.linalg.norm(a, axis=-1) + 1e-6)
    cos = xp.clip(cos, 1e-6, 1 - 1e-6)
    y = batch["label"]
    return -xp.mean(y * xp.log(cos) + (1 - y) * xp.log(1 - cos))  # SyncNet's BCE on cosines

  loss = jax.jit(lambda b: embed(b, jnp))(s)
  np.testing.assert_allclose(float(loss), embed(s, np), rtol=1e-4)
