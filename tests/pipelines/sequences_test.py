"""Tests for talking_heads.pipelines.sequences: long padded windows of audio and face parameters."""

import jax
import numpy as np
import pytest

from talking_heads.audio import mel as mel_lib
from talking_heads.io import dataset as dataset_lib
from talking_heads.pipelines import base, sequences, testing

LATENT_SHAPE = (4, 2)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  path = tmp_path_factory.mktemp("data")
  data = testing.write_random_dataset(path, [60, 45, 20], audio_offsets=[0, -300, 0])
  for clip in data:
    latents = np.arange(clip.num_frames * 8, dtype=np.float32).reshape((-1,) + LATENT_SHAPE)
    path_ = base.latents_path(path, "dae", clip.id)
    path_.parent.mkdir(parents=True, exist_ok=True)
    np.save(path_, latents + 1000 * int(clip.id[-1]))
  return path


def _samples(root, n=6, seed=0, **options):
  it = sequences.make_sequence_iterator(root, batch_size=4, shard_index=0, shard_count=1,
                                        seed=seed, num_workers=0, **options)
  try:
    batches = [next(it) for _ in range(n)]
  finally:
    it.close()
  return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def test_random_length_windows_are_aligned_and_padded(root):
  data = dataset_lib.Dataset(root)
  full_mel = {c.id: mel_lib.mel_spectrogram_time_major(np.asarray(c.audio), mel_lib.RADIO_MEL)
              for c in data}
  s = _samples(root, min_length=8, max_length=30, latents="dae", frames=True, image_size=16)
  shapes = {"audio": (24, 30 * 640), "mel": (24, 120, 80), "expression": (24, 30, 9),
            "pose": (24, 30, 6), "landmarks": (24, 30, 68, 2), "alpha": (24, 15),
            "latents": (24, 30) + LATENT_SHAPE, "frames": (24, 30, 16, 16, 3), "mask": (24, 30),
            "length": (24,), "clip": (24,), "start": (24,)}
  assert {k: v.shape for k, v in s.items()} == shapes
  assert s["mask"].dtype == np.bool_ and s["frames"].dtype == np.uint8
  assert s["length"].dtype == np.int32 and s["audio"].dtype == np.float32
  assert s["length"].min() >= 8 and s["length"].max() <= 30 and len(set(s["length"])) > 5
  for k in range(24):
    clip = data.clips()[s["clip"][k]]
    start, n = int(s["start"][k]), int(s["length"][k])
    np.testing.assert_array_equal(s["mask"][k], np.arange(30) < n)
    assert start + n <= min(clip.num_frames, clip.num_samples // 640)
    np.testing.assert_array_equal(s["audio"][k, :n * 640],
                                  clip.audio[start * 640:(start + n) * 640])
    np.testing.assert_array_equal(s["mel"][k, :n * 4], full_mel[clip.id][4 * start:4 * (start + n)])
    for name in ("expression", "pose", "landmarks"):
      np.testing.assert_array_equal(s[name][k, :n], getattr(clip, name)[start:start + n])
    np.testing.assert_array_equal(s["alpha"][k], clip.alpha)
    np.testing.assert_array_equal(s["latents"][k, :n],
                                  np.load(base.latents_path(root, "dae", clip.id))[start:start + n])
    for name in ("audio", "mel", "expression", "pose", "landmarks", "latents", "frames"):
      per_frame = s[name][k].reshape(30, -1)  # audio and mel have whole frames of rows
      assert not per_frame[n:].any(), name


def test_fixed_length_windows(root):
  s = _samples(root, n=3, min_length=25, max_length=25, mel=None)
  assert "mel" not in s and "latents" not in s and "frames" not in s
  assert (s["length"] == 25).all() and s["mask"].all()
  assert s["audio"].shape == (12, 25 * 640)


def test_eval_walks_consecutive_windows(root):
  it = sequences.make_sequence_eval_iterator(root, batch_size=4, shard_index=0, shard_count=1,
                                             seed=0, num_workers=0, split="train",
                                             min_length=10, max_length=25)
  windows = sorted((int(c), int(s), int(n)) for b in it
                   for c, s, n, v in zip(b["clip"], b["start"], b["length"], b["valid"]) if v)
  # clip001 is 300 samples short: 44 whole frames of audio. clip002 (20 frames) fits one window.
  assert windows == [(0, 0, 25), (0, 25, 25), (0, 50, 10), (1, 0, 25), (1, 25, 19), (2, 0, 20)]


def test_bad_options(root, tmp_path):
  kwargs = dict(batch_size=1, shard_index=0, shard_count=1, seed=0, num_workers=0)
  with pytest.raises(ValueError, match="3.2 mel frames per video frame"):
    sequences.make_sequence_iterator(root, **kwargs, mel=mel_lib.WAV2LIP_MEL)
  with pytest.raises(ValueError, match="min_length"):
    sequences.make_sequence_iterator(root, **kwargs, min_length=30, max_length=20)
  with pytest.raises(dataset_lib.DatasetError, match="missing latents 'nope'"):
    sequences.make_sequence_iterator(root, **kwargs, latents="nope")
  other = tmp_path / "other"
  testing.write_random_dataset(other, [10])
  bad = base.latents_path(other, "x", "clip000")
  bad.parent.mkdir(parents=True)
  np.save(bad, np.zeros((9, 3), np.float32))
  with pytest.raises(dataset_lib.DatasetError, match=r"clip 'clip000'.*\[T=10, \.\.\.\]"):
    sequences.make_sequence_iterator(other, **kwargs, min_length=5, max_length=5, latents="x")


def test_batch_feeds_a_jitted_step(root):
  s = _samples(root, n=1, min_length=8, max_length=30, latents="dae")
  w = np.random.default_rng(0).normal(size=(4 * 80, 9)).astype(np.float32) / 20.0

  def masked_mse(batch):  # numpy or jax arrays alike
    per_frame = batch["mel"].reshape(len(batch["mel"]), 30, 4 * 80)  # 4 mel frames per frame
    prediction = per_frame @ w + 1e-3 * batch["latents"].sum((2, 3))[..., None]
    err = ((prediction - batch["expression"]) ** 2).mean(-1)
    mask = batch["mask"].astype(np.float32)
    return (err * mask).sum() / mask.sum()

  np.testing.assert_allclose(float(jax.jit(masked_mse)(s)), masked_mse(s), rtol=1e-4)


def test_fixed_segments_are_cut_at_multiples_of_max_length(root):
  data = dataset_lib.Dataset(root)
  s = _samples(root, n=6, min_length=10, max_length=25, sampling="fixed_segments")
  got = {(int(c), int(st), int(n)) for c, st, n in zip(s["clip"], s["start"], s["length"])}
  # Same segments as the eval walk: clip001 has 44 frames of audio, clip002 20 frames.
  assert got == {(0, 0, 25), (0, 25, 25), (0, 50, 10), (1, 0, 25), (1, 25, 19), (2, 0, 20)}
  per_epoch = [tuple(map(int, t)) for t in zip(s["clip"], s["start"])]
  assert len(set(per_epoch[:6])) == 6 and len(set(per_epoch[6:12])) == 6  # each epoch whole
  for k in range(len(s["clip"])):
    clip = data.clips()[s["clip"][k]]
    start, n = int(s["start"][k]), int(s["length"][k])
    np.testing.assert_array_equal(s["mask"][k], np.arange(25) < n)
    np.testing.assert_array_equal(s["audio"][k, :n * 640],
                                  clip.audio[start * 640:(start + n) * 640])
  default = _samples(root, n=2, min_length=10, max_length=25)
  explicit = _samples(root, n=2, min_length=10, max_length=25, sampling="pseudo_sentence")
  for key in default:
    np.testing.assert_array_equal(default[key], explicit[key])
  with pytest.raises(ValueError, match="sampling must be one of"):
    _samples(root, n=1, sampling="sentences")


def test_identity_filter(root):
  data = dataset_lib.Dataset(root)
  s = _samples(root, n=3, min_length=8, max_length=20, identities=["id1"])
  assert (s["clip"] == 0).all()  # positions in the filtered list: only clip001 is id1's
  clip = data.clip("clip001")
  for k in range(len(s["clip"])):
    start, n = int(s["start"][k]), int(s["length"][k])
    np.testing.assert_array_equal(s["pose"][k, :n], clip.pose[start:start + n])
  it = sequences.make_sequence_eval_iterator(root, batch_size=2, shard_index=0, shard_count=1,
                                             seed=0, num_workers=0, split="train",
                                             min_length=10, max_length=25, identities=["id0"])
  windows = sorted((int(c), int(s), int(n)) for b in it
                   for c, s, n, v in zip(b["clip"], b["start"], b["length"], b["valid"]) if v)
  assert windows == [(0, 0, 25), (0, 25, 25), (0, 50, 10), (1, 0, 20)]  # clip000, clip002
  with pytest.raises(ValueError, match="no clips of identities"):
    _samples(root, n=1, identities=["id7"])
