"""Tests for talking_heads.pipelines.radio: target window, references, centred and off-sync mels."""

import numpy as np
import pytest

from talking_heads.audio import mel as mel_lib
from talking_heads.io import dataset as dataset_lib
from talking_heads.pipelines import base, radio, testing


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  path = tmp_path_factory.mktemp("data")
  testing.write_random_dataset(path, [30, 41, 6], audio_offsets=[0, -600, 0],
                               splits=["train", "train", "train"])
  base.precompute_features(path, (mel_lib.RADIO_MEL,))
  return path


def _batches(root, n=3, seed=0, eval_=False, **options):
  make = radio.make_radio_eval_iterator if eval_ else radio.make_radio_iterator
  if eval_:
    options.setdefault("split", "train")
  it = make(root, batch_size=4, shard_index=options.pop("shard_index", 0),
            shard_count=options.pop("shard_count", 1), seed=seed, num_workers=0, **options)
  try:
    return [next(it) for _ in range(n)] if n else list(it)
  finally:
    it.close()




def test_batch_keys_shapes_frames_and_references(root):
  data = dataset_lib.Dataset(root)
  shapes = {"frames": ((4, 5, 32, 32, 3), np.uint8), "masked": ((4, 5, 32, 32, 3), np.uint8),
            "reference": ((4, 5, 32, 32, 3), np.uint8), "reference_frames": ((4, 5), np.int32),
            "mel": ((4, 80, 20), np.float32), "indiv_mels": ((4, 5, 80, 20), np.float32),
            "mel_offsync": ((4, 80, 20), np.float32), "offsync_offset": ((4,), np.int32),
            "landmarks": ((4, 5, 68, 2), np.float32),
            "reference_landmarks": ((4, 5, 68, 2), np.float32),
            "clip": ((4,), np.int32), "start": ((4,), np.int32)}
  for batch in _batches(root):
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == shapes
    for b in range(4):
      clip = data.clips()[batch["clip"][b]]
      assert clip.num_frames > 6  # the 6-frame clip has no window with an off-sync partner
      f = int(batch["start"][b])
      np.testing.assert_array_equal(batch["frames"][b], clip.frames[f:f + 5])
      assert not batch["masked"][b, :, 16:].any()
      np.testing.assert_array_equal(batch["masked"][b, :, :16], clip.frames[f:f + 5, :16])
      ref = batch["reference_frames"][b]
      assert len(set(ref.tolist())) == 5 and ((ref < f) | (ref >= f + 5)).all()
      assert (ref < clip.num_frames).all()
      np.testing.assert_array_equal(batch["reference"][b], clip.frames[ref])
      np.testing.assert_array_equal(batch["landmarks"][b], clip.landmarks[f:f + 5])
      np.testing.assert_array_equal(batch["reference_landmarks"][b], clip.landmarks[ref])


def test_mel_windows_centred_and_off_sync(root):
  """mel: frames [4f, 4f + 20); indiv_mels[j]: [4(f + j - 2), +20); mel_offsync: [4w, +20)."""
  data = dataset_lib.Dataset(root)
  full = {c.id: mel_lib.mel_spectrogram(np.asarray(c.audio), mel_lib.RADIO_MEL) for c in data}
  offsets = []
  for batch in _batches(root, n=4):
    for b in range(4):
      mel = full[data.clips()[batch["clip"][b]].id]  # [M, F]
      f = int(batch["start"][b])
      assert f >= 2
      np.testing.assert_allclose(batch["mel"][b], mel[:, 4 * f:4 * f + 20], atol=1e-5)
      for j in range(5):
        first = 4 * (f + j - 2)
        np.testing.assert_allclose(batch["indiv_mels"][b, j], mel[:, first:first + 20],
                                   atol=1e-5)
      w = f + int(batch["offsync_offset"][b])
      assert abs(w - f) >= 5 and 4 * w + 20 <= mel.shape[1] and w >= 0
      np.testing.assert_allclose(batch["mel_offsync"][b], mel[:, 4 * w:4 * w + 20], atol=1e-5)
      offsets.append(w - f)
  assert min(offsets) < 0 < max(offsets)  # partners on both sides


def test_deterministic_given_the_seed(root):
  a, b, c = _batches(root, seed=3), _batches(root, seed=3), _batches(root, seed=4)
  for x, y in zip(a, b):
    for key in x:
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)
  assert any(not np.array_equal(x["reference_frames"], z["reference_frames"])
             for x, z in zip(a, c))


def test_eval_shards_cover_every_window_once_with_first_frame_references(root):
  def starts(batches):
    return {(int(c), int(s)) for batch in batches
            for c, s, v in zip(batch["clip"], batch["start"], batch["valid"]) if v}

  whole = _batches(root, n=0, eval_=True, stride=1)
  shards = [_batches(root, n=0, eval_=True, stride=1, shard_index=k, shard_count=2)
            for k in range(2)]
  assert starts(shards[0]) | starts(shards[1]) == starts(whole)
  assert not starts(shards[0]) & starts(shards[1])
  assert sum(int(b["valid"].sum()) for b in whole) == len(starts(whole))
  assert all((b["reference_frames"] == 0).all() for b in whole)
  mask = radio.radio_start_mask(41, 41 * 640 - 600, 5, 5)
  assert {s for c, s in starts(whole) if c == 1} == set(np.flatnonzero(mask).tolist())


def test_resized_frames_and_landmarks(root):
  batch = _batches(root, n=1, image_size=24)[0]
  assert batch["frames"].shape == batch["reference"].shape == (4, 5, 24, 24, 3)
  clip = dataset_lib.Dataset(root).clips()[batch["clip"][0]]
  f = int(batch["start"][0])
  np.testing.assert_allclose(batch["landmarks"][0],
                             (np.asarray(clip.landmarks[f:f + 5]) + 0.5) * 0.75 - 0.5,
                             atol=1e-5)


@pytest.mark.parametrize("options, match", [
    (dict(num_references=0), "num_references"),
    (dict(reference_mode="window"), "reference_mode"),
    (dict(min_offset=0), "min_offset"),
    (dict(min_offset=100), "off-sync"),
    (dict(split="nope"), "no clips"),
])
def test_bad_options_are_named(root, options, match):
  with pytest.raises(ValueError, match=match):
    _batches(root, n=1, **options)
