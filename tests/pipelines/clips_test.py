"""Tests for talking_heads.pipelines.clips: T-frame clips, mel windows, masks and references."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.audio import mel as mel_lib
from talking_heads.io import dataset as dataset_lib
from talking_heads.pipelines import clips, testing


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  path = tmp_path_factory.mktemp("data")
  testing.write_random_dataset(path, [30, 41, 4], audio_offsets=[0, -600, 0])
  return path


def _batches(root, n=3, seed=0, **options):
  it = clips.make_clips_iterator(root, batch_size=4, shard_index=0, shard_count=1, seed=seed,
                                 num_workers=0, **options)
  try:
    return [next(it) for _ in range(n)]
  finally:
    it.close()


@pytest.mark.parametrize("audio,mel_frames_per_second,window", [
    (clips.WAV2LIP_AUDIO, 80, 16), (clips.RADIO_AUDIO, 100, 20)])
def test_mel_windows_are_aligned_with_the_frames(root, audio, mel_frames_per_second, window):
  data = dataset_lib.Dataset(root)
  full = {c.id: mel_lib.mel_spectrogram(np.asarray(c.audio), audio.mel) for c in data}  # [M, F]
  for batch in _batches(root, audio=audio):
    assert batch["mel"].shape == (4, 80, window) and batch["mel"].dtype == np.float32
    assert batch["indiv_mels"].shape == (4, 5, 80, window)
    for b in range(4):
      mel = full[data.clips()[batch["clip"][b]].id]
      f = int(batch["start"][b])
      # Frame f's window starts at mel frame floor(mel_fps * f / fps) (Wav2Lip's
      # int(80. * (f / 25.)), written in integers: the float form is off by one at 100/s).
      first = mel_frames_per_second * f // 25
      np.testing.assert_array_equal(batch["mel"][b], mel[:, first:first + window])
      for j in range(5):
        first = mel_frames_per_second * (f + j - 1) // 25  # frame j uses j - 1's window
        np.testing.assert_array_equal(batch["indiv_mels"][b, j], mel[:, first:first + window])


def test_frames_masks_and_window_references(root):
  data = dataset_lib.Dataset(root)
  for batch in _batches(root):
    assert batch["frames"].shape == batch["masked"].shape == batch["reference"].shape == (
        4, 5, 32, 32, 3)
    assert batch["frames"].dtype == batch["masked"].dtype == batch["reference"].dtype == np.uint8
    assert batch["reference_frames"].dtype == np.int32
    for b in range(4):
      clip_frames = data.clips()[batch["clip"][b]].frames
      f = int(batch["start"][b])
      np.testing.assert_array_equal(batch["frames"][b], clip_frames[f:f + 5])
      assert not batch["masked"][b, :, 16:].any()
      np.testing.assert_array_equal(batch["masked"][b, :, :16], clip_frames[f:f + 5, :16])
      ref = batch["reference_frames"][b]
      np.testing.assert_array_equal(ref, np.arange(ref[0], ref[0] + 5))
      assert ref[0] != f and 0 <= ref[0] <= len(clip_frames) - 5
      np.testing.assert_array_equal(batch["reference"][b], clip_frames[ref])


def test_independent_references_avoid_the_target_window(root):
  data = dataset_lib.Dataset(root)
  picked = set()
  for batch in _batches(root, n=6, reference_mode="independent", image_size=24):
    assert batch["frames"].shape == (4, 5, 24, 24, 3)
    for b in range(4):
      f = int(batch["start"][b])
      ref = batch["reference_frames"][b]
      assert ((ref < f) | (ref >= f + 5)).all()
      assert (ref < data.clips()[batch["clip"][b]].num_frames).all()
      picked.add(tuple(ref))
  assert len(picked) > 20  # really random, not one fixed pick per window


def test_short_clips_are_skipped_with_a_warning(root, caplog):
  with caplog.at_level(logging.WARNING):
    starts = {(int(c), int(s)) for batch in _batches(root, n=10)
              for c, s in zip(batch["clip"], batch["start"])}
  assert "clip002" in caplog.text and "no valid 5-frame window" in caplog.text
  assert all(c in (0, 1) for c, _ in starts)
  # clip001: 41 frames but 600 samples short: 1 + 25640 // 200 = 129 mel frames, so its last
  # per-frame window (frame f + 3) must start by 113: int(3.2 (f + 3)) <= 113 -> f <= 32.
  assert max(s for c, s in starts if c == 1) <= 32


def test_no_usable_clip_is_an_error(tmp_path):
  testing.write_random_dataset(tmp_path / "d", [5, 3])
  with pytest.raises(ValueError, match="none of 2 clips has a valid 5-frame window"):
    clips.make_clips_iterator(tmp_path / "d", batch_size=1, shard_index=0, shard_count=1,
                              seed=0, num_workers=0)
  with pytest.raises(ValueError, match="reference_mode"):
    clips.make_clips_iterator(tmp_path / "d", batch_size=1, shard_index=0, shard_count=1,
                              seed=0, num_workers=0, reference_mode="nearest")


def test_batch_feeds_a_jitted_step(root):
  batch = _batches(root, n=1)[0]

  @jax.jit
  def loss(batch):
    # Stand-in generator: predicts the target from the masked frames, references and audio.
    masked = batch["masked"].astype(jnp.float32) / 255.0
    reference = batch["reference"].astype(jnp.float32) / 255.0
    audio = jnp.mean(batch["indiv_mels"], axis=(2, 3))[:, :, None, None, None]
    prediction = 0.5 * (masked + reference) + 0.01 * audio
    sync = jnp.mean(batch["mel"])
    return jnp.mean(jnp.abs(prediction - batch["frames"].astype(jnp.float32) / 255.0)) + sync

  masked = batch["masked"] / 255.0
  prediction = 0.5 * (masked + batch["reference"] / 255.0) + 0.01 * batch["indiv_mels"].mean(
      axis=(2, 3))[:, :, None, None, None]
  expected = np.abs(prediction - batch["frames"] / 255.0).mean() + batch["mel"].mean()
  np.testing.assert_allclose(float(loss(batch)), expected, rtol=1e-5)
