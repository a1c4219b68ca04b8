"""Tests for talking_heads.pipelines.base and the behaviour every pipeline shares.

Sharding (disjoint, covering), resume from get_state, determinism per seed, 0 vs 2 workers,
eval padding, index encoding, precomputed mel features.
"""

import logging
import os
import pickle

import numpy as np
import pytest

from talking_heads.audio import mel as mel_lib
from talking_heads.face import morphable
from talking_heads.io import dataset as dataset_lib
from talking_heads.pipelines import base, clips, frames, heads, sequences, sync, testing

FRAME_COUNTS = [40, 50, 60, 3, 30]
SPLITS = ["train", "train", "train", "train", "val"]
AUDIO_OFFSETS = [0, -600, 300, 0, 0]

# name -> (train builder, eval builder, options exercising the random parts).
PIPELINES = {
    "frames": (frames.make_frames_iterator, frames.make_frames_eval_iterator,
               {"degradations": frames.Degradations(), "reference": True}),
    "clips": (clips.make_clips_iterator, clips.make_clips_eval_iterator,
              {"reference_mode": "independent"}),
    "sync": (sync.make_sync_iterator, sync.make_sync_eval_iterator, {"min_offset": 3}),
    "sequences": (sequences.make_sequence_iterator, sequences.make_sequence_eval_iterator,
                  {"min_length": 5, "max_length": 20}),
    "heads": (heads.make_head_iterator, heads.make_head_eval_iterator, {}),
}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  path = tmp_path_factory.mktemp("data")
  testing.write_random_dataset(path, FRAME_COUNTS, splits=SPLITS, audio_offsets=AUDIO_OFFSETS)
  return path


def _train(name, root, *, batch_size=2, shard_index=0, shard_count=1, seed=0, num_workers=0):
  make, _, options = PIPELINES[name]
  return make(root, batch_size=batch_size, shard_index=shard_index, shard_count=shard_count,
              seed=seed, num_workers=num_workers, split="train", **options)


def _expected_windows(name, root, eval_pass=False):
  """(clip, start) of every valid window of the train split, from the rules written out by hand
  (Wav2Lip's float window formula int(80 * f / 25), 640 samples and 4 RADIO mel frames per frame)."""
  windows = []
  for c, clip in enumerate(dataset_lib.Dataset(root).clips("train")):
    n, samples = clip.num_frames, clip.num_samples
    wav2lip_mel = 1 + samples // 200
    for f in range(n):
      if name in ("frames", "heads"):
        ok = True
      elif name == "clips":  # f-1 .. f+3 per-frame windows and f's sync window inside the audio
        ok = (1 <= f <= n - 5 and int(80.0 * (f + 3) / 25.0) + 16 <= wav2lip_mel
              and int(80.0 * f / 25.0) + 16 <= wav2lip_mel)
      elif name == "sync":  # a partner 3+ frames away
        ok = f <= n - 5 and max(f, n - 5 - f) >= 3 and int(80.0 * f / 25.0) + 16 <= wav2lip_mel
      else:  # sequences of 5..20 frames
        limit = min(n, samples // 640, (1 + samples // 160) // 4)
        ok = f <= limit - 5 and (not eval_pass or f % 20 == 0)
      if ok:
        windows.append((c, f))
  return windows


def _eval_batches(name, root, shard=0, shard_count=1, batch_size=8):
  _, make, options = PIPELINES[name]
  stride = {} if name == "sequences" else {"stride": 1}
  return make(root, batch_size=batch_size, shard_index=shard, shard_count=shard_count, seed=0,
              num_workers=0, split="train", **options, **stride)


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def _first(iterator, n):
  """The first n batches; closes the iterator (its prefetch threads stop reading)."""
  try:
    return _take(iterator, n)
  finally:
    iterator.close()


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for key in x:
      np.testing.assert_array_equal(np.asarray(x[key]), np.asarray(y[key]), err_msg=key)


def _runs(mask):
  """Runs [a, b) of True in `mask`, by a plain loop."""
  runs, start = [], None
  for i, m in enumerate(list(mask) + [False]):
    if m and start is None:
      start = i
    if not m and start is not None:
      runs.append((start, i))
      start = None
  return runs


@pytest.mark.parametrize("stride", [1, 3])
def test_window_index_matches_brute_force(stride):
  rng = np.random.default_rng(0)
  masks = [(c, rng.random(n) < 0.7) for c, n in [(0, 17), (2, 1), (3, 0), (5, 40)]]
  masks.append((6, np.zeros(5, bool)))
  index = base.WindowIndex.from_masks(masks, stride)
  expected = [(c, s) for c, mask in masks for a, b in _runs(mask) for s in range(a, b, stride)]
  assert len(index) == len(expected)
  assert [index.lookup(i) for i in range(len(index))] == expected
  np.testing.assert_array_equal(index.pairs(), np.array(expected))
  with pytest.raises(IndexError):
    index.lookup(len(index))
  clone = pickle.loads(pickle.dumps(index))
  assert [clone.lookup(i) for i in range(len(clone))] == expected


def test_index_source_pads_with_invalid_entries():
  index = base.WindowIndex.from_masks([(1, np.array([0, 1, 1], bool))])
  source = base.IndexSource(index, length=5)
  items = [source[i] for i in range(5)]
  assert [bool(e["valid"]) for e in items] == [True, True, False, False, False]
  assert [(int(e["clip"]), int(e["start"])) for e in items[:2]] == [(1, 1), (1, 2)]
  assert all(int(e["index"]) == i for i, e in enumerate(items))
  with pytest.raises(ValueError, match="empty"):
    base.IndexSource(base.WindowIndex.from_masks([(0, np.zeros(3, bool))]))


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_two_shards_are_disjoint_and_cover_the_index(root, name):
  everything = _expected_windows(name, root)
  assert len(everything) > 10
  seen = []
  for shard in (0, 1):
    it = _train(name, root, batch_size=1, shard_index=shard, shard_count=2, seed=5)
    size = (len(everything) + 1 - shard) // 2  # [shard::2] of the index space
    epoch = _first(it, size)
    seen.append([(int(b["clip"][0]), int(b["start"][0])) for b in epoch])
  assert not set(seen[0]) & set(seen[1])
  assert len(set(seen[0])) == len(seen[0]) and len(set(seen[1])) == len(seen[1])
  assert set(seen[0]) | set(seen[1]) == set(everything)


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_eval_shards_are_padded_disjoint_and_cover(root, name):
  shards = [list(_eval_batches(name, root, shard, 2, batch_size=3)) for shard in (0, 1)]
  assert len(shards[0]) == len(shards[1])  # the same number of full batches on every process
  assert all(b["clip"].shape == (3,) for batches in shards for b in batches)
  valid = [(int(c), int(s)) for batches in shards for b in batches
           for c, s, v in zip(b["clip"], b["start"], b["valid"]) if v]
  assert sorted(valid) == _expected_windows(name, root, eval_pass=True)


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_resume_from_state_continues_with_the_same_batches(root, name):
  it = _train(name, root, seed=11)
  _take(it, 3)
  state = it.get_state()
  expected = _first(it, 3)
  resumed = _train(name, root, seed=11)
  resumed.set_state(state)
  _assert_batches_equal(_first(resumed, 3), expected)


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_same_seed_same_batches_other_seed_other_batches(root, name):
  a = _first(_train(name, root, seed=3), 3)
  _assert_batches_equal(a, _first(_train(name, root, seed=3), 3))
  b = _first(_train(name, root, seed=4), 3)
  assert any(not np.array_equal(x["start"], y["start"]) for x, y in zip(a, b))


def _check_workers(root, name):
  expected = _first(_train(name, root, seed=2), 6)
  it = _train(name, root, seed=2, num_workers=2)
  try:
    _assert_batches_equal(_take(it, 4), expected[:4])
    state = it.get_state()
  finally:
    it.close()
  resumed = _train(name, root, seed=2, num_workers=2)
  try:
    resumed.set_state(state)
    _assert_batches_equal(_take(resumed, 2), expected[4:])
  finally:
    resumed.close()


def test_two_workers_give_the_same_batches_as_none(root):
  _check_workers(root, "clips")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["frames", "sync", "sequences", "heads"])
def test_two_workers_give_the_same_batches_as_none_slow(root, name):
  _check_workers(root, name)


def test_bad_iterator_arguments(root):
  with pytest.raises(ValueError, match="shard_index"):
    _train("frames", root, shard_index=2, shard_count=2)
  with pytest.raises(ValueError, match="batch_size"):
    _train("frames", root, batch_size=0)
  with pytest.raises(ValueError, match=r"split 'nope' has no clips \(splits: \['train', 'val'\]\)"):
    frames.make_frames_iterator(root, batch_size=1, shard_index=0, shard_count=1, seed=0,
                                num_workers=0, split="nope")


def test_precomputed_features_are_the_full_clip_mel(tmp_path, caplog):
  root = tmp_path / "data"
  data = testing.write_random_dataset(root, [30, 36], audio_offsets=[0, -500])
  kwargs = dict(batch_size=4, shard_index=0, shard_count=1, seed=1, num_workers=0)
  with caplog.at_level(logging.WARNING):
    before = _first(clips.make_clips_iterator(root, **kwargs), 3)
  assert "2 of 2 clips have no precomputed mel_wav2lip" in caplog.text
  assert base.precompute_features(root) == 4
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    _first(sync.make_sync_iterator(root, **kwargs), 1)
  assert "precomputed" not in caplog.text
  assert base.precompute_features(root) == 0  # kept
  reader = base.ClipReader(root, ["clip000", "clip001"])
  for i, clip in enumerate(data):
    for config in (mel_lib.WAV2LIP_MEL, mel_lib.RADIO_MEL):
      path = base.feature_path(root, clip.id, config)
      expected = mel_lib.mel_spectrogram_time_major(np.asarray(clip.audio), config)
      np.testing.assert_array_equal(np.load(path), expected)
      served = reader.mel(i, config)
      assert isinstance(served, np.memmap)
      np.testing.assert_array_equal(served, expected)
  _assert_batches_equal(_first(clips.make_clips_iterator(root, **kwargs), 3), before)
  # Replaced, not rewritten in place: rewriting a memory-mapped file under a reader is a SIGBUS.
  stale = tmp_path / "stale.npy"
  np.save(stale, np.zeros((3, 80), np.float32))
  os.replace(stale, base.feature_path(root, "clip001", mel_lib.WAV2LIP_MEL))
  with pytest.raises(dataset_lib.DatasetError, match="clip 'clip001'.*stale or corrupt"):
    base.ClipReader(root, ["clip000", "clip001"]).mel(1, mel_lib.WAV2LIP_MEL)


def test_feature_names():
  assert base.mel_feature_name(mel_lib.WAV2LIP_MEL) == "mel_wav2lip"
  assert base.mel_feature_name(mel_lib.RADIO_MEL) == "mel_radio"
  other = mel_lib.MelConfig(n_mels=40)
  assert base.mel_feature_name(other) == base.mel_feature_name(mel_lib.MelConfig(n_mels=40))
  assert base.mel_feature_name(other) != base.mel_feature_name(mel_lib.MelConfig(n_mels=64))


def test_reader_pickles_without_its_caches(root):
  reader = base.ClipReader(root, ["clip000", "clip002"])
  reader.mel(1, mel_lib.WAV2LIP_MEL)
  reader.array(0, "frames")
  blob = pickle.dumps(reader)
  assert len(blob) < 1000
  clone = pickle.loads(blob)
  np.testing.assert_array_equal(clone.array(1, "pose"), reader.array(1, "pose"))


def test_rescaled_intrinsics_project_to_rescaled_pixels():
  model = morphable.default_model()
  points = morphable.transform(morphable.shape(model, None, None), morphable.default_pose())
  k32 = morphable.default_camera(32).astype(np.float32)
  for scale in (3.0, 0.5):
    np.testing.assert_allclose(
        morphable.project(points, base.rescale_intrinsics(k32, scale)),
        base.rescale_pixels(morphable.project(points, k32), scale), rtol=1e-5, atol=1e-4)
  # A pixel centre maps to the matching pixel centre: 0 -> (scale - 1) / 2.
  np.testing.assert_allclose(base.rescale_pixels(np.array([0.0, 1.0]), 2.0), [0.5, 2.5])


def test_mask_lower_half_and_resize():
  frames_ = np.random.default_rng(0).integers(1, 256, (2, 6, 6, 3), dtype=np.uint8)
  masked = base.mask_lower_half(frames_)
  assert not masked[:, 3:].any()
  np.testing.assert_array_equal(masked[:, :3], frames_[:, :3])
  assert frames_.all()  # the input is untouched
  flat = np.full((2, 8, 8, 3), 77, np.uint8)
  assert base.resize_frames(flat, 4).shape == (2, 4, 4, 3)
  assert (base.resize_frames(flat, 4) == 77).all() and (base.resize_frames(flat, 12) == 77).all()
