"""Tests for data.motion (head pose, blinks, brows from speech)."""

import librosa
import numpy as np
import pytest

from data import motion
from data import sentences
from data import speech

FPS = 25


@pytest.fixture(scope="module")
def talk() -> np.ndarray:
  """About 6 s of speech followed by 3 s of silence, 16 kHz."""
  text = " ".join(sentences.generate_sentences("en", 2, seed=8))
  audio = speech.synthesize(text, "en_us_f2").audio
  return np.concatenate([audio, np.zeros(3 * 16000, np.float32)])


def _frames(audio: np.ndarray) -> int:
  return int(np.ceil(len(audio) / 16000 * FPS))


def test_energy_envelope_matches_librosa_rms():
  audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
  audio *= np.linspace(0, 1, audio.size, dtype=np.float32)
  ours = motion.energy_envelope(audio, 25)
  ref = librosa.feature.rms(y=audio, frame_length=640, hop_length=640,
                            center=False)[0]
  assert ours.dtype == np.float32 and ours.shape == (25,)
  np.testing.assert_allclose(ours, ref, rtol=1e-5)
  # Frames past the audio are silent; a partial frame counts padding as 0.
  longer = motion.energy_envelope(audio[:16000 - 320], 30)
  np.testing.assert_allclose(longer[:24], ref[:24], rtol=1e-5)
  expected_last = np.sqrt(np.sum(audio[15360:15680].astype(np.float64)**2)
                          / 640)
  assert longer[24] == pytest.approx(expected_last, rel=1e-5)
  np.testing.assert_array_equal(longer[25:], 0)


def test_energy_envelope_handles_fractional_hops():
  audio = np.ones(16000, np.float32)
  env = motion.energy_envelope(audio, 30, fps=30)  # 533.3 samples a frame
  np.testing.assert_allclose(env, 1.0, rtol=1e-6)


def test_pitch_contour_finds_a_tone_and_matches_librosa_yin():
  t = np.arange(2 * 16000) / 16000
  tone = sum(np.sin(2 * np.pi * 180 * h * t) / h for h in (1, 2, 3))
  audio = np.concatenate([np.zeros(8000), 0.3 * tone]).astype(np.float32)
  n = _frames(audio)
  f0, voiced = motion.pitch_contour(audio, n)
  assert f0.shape == voiced.shape == (n,)
  assert not voiced[:10].any()  # the silent first 0.5 s (minus one frame)
  assert voiced[15:-2].all()
  np.testing.assert_allclose(f0[15:-2], 180, rtol=0.01)
  # Frame k is YIN over a window centred on (k + 0.5) / fps.
  ref = librosa.yin(audio[320:], fmin=70, fmax=400, sr=16000,
                    frame_length=1024, hop_length=640)
  np.testing.assert_allclose(f0[15:-2], ref[15:n - 2], rtol=1e-4)


def test_head_pose_shape_determinism_and_bounds(talk):
  n = _frames(talk)
  pose = motion.head_pose_trajectory(talk, n, np.random.default_rng(3))
  assert pose.shape == (n, 6) and pose.dtype == np.float32
  again = motion.head_pose_trajectory(talk, n, np.random.default_rng(3))
  np.testing.assert_array_equal(pose, again)
  other = motion.head_pose_trajectory(talk, n, np.random.default_rng(4))
  assert not np.allclose(pose, other)
  assert np.all(np.abs(pose[:, :3]) <= motion.MAX_ROTATION)
  assert np.all(np.abs(pose[:, 3:]) <= motion.MAX_TRANSLATION)
  degrees = np.rad2deg(pose[:, :3])
  # A few degrees of motion, not a frozen head.
  assert np.all(degrees.std(axis=0) > 0.1)
  assert np.all(np.abs(degrees).max(axis=0) < 6)
  # Smooth: under 1.5 degrees (37 deg/s) and 1.5 mm between frames.
  assert np.abs(np.diff(degrees, axis=0)).max() < 1.5
  assert np.abs(np.diff(pose[:, 3:], axis=0)).max() < 1.5


def test_head_pose_bounds_hold_over_many_seeds(talk):
  n = _frames(talk)
  for seed in range(20):
    pose = motion.head_pose_trajectory(talk, n, np.random.default_rng(seed))
    assert np.all(np.abs(pose[:, :3]) <= motion.MAX_ROTATION)
    assert np.all(np.abs(pose[:, 3:]) <= motion.MAX_TRANSLATION)


def test_head_motion_follows_the_speech(talk):
  """Same rng, speech vs silence: the difference lies where speech is."""
  n = _frames(talk)
  speech_end = n - 3 * FPS
  with_speech = motion.head_pose_trajectory(talk, n,
                                            np.random.default_rng(0))
  silent = motion.head_pose_trajectory(np.zeros_like(talk), n,
                                       np.random.default_rng(0))
  diff = np.abs(np.rad2deg(with_speech[:, :3] - silent[:, :3]))
  assert diff[:speech_end].max() > 0.8  # nods and pitch-following
  # Well after the speech ends only slow drift remains: no difference.
  assert diff[speech_end + 2 * FPS:].max() < 0.05
  # The nods drive pitch (the nodding axis) most.
  assert diff[:speech_end, 1].std() > diff[:speech_end, 2].std()


def test_blinks_rate_duration_and_binocularity():
  minutes = 10
  n = minutes * 60 * FPS
  blinks = motion.blink_trajectory(n, np.random.default_rng(0))
  assert blinks.shape == (n, 2) and blinks.dtype == np.float32
  assert blinks.min() >= 0 and blinks.max() <= 1
  np.testing.assert_array_equal(
      blinks, motion.blink_trajectory(n, np.random.default_rng(0)))
  active = blinks.max(axis=1) > 0
  starts = np.flatnonzero(active[1:] & ~active[:-1]) + 1
  ends = np.flatnonzero(active[:-1] & ~active[1:]) + 1
  ends = ends[ends > starts[0]]
  count = min(len(starts), len(ends))
  rate = len(starts) / minutes
  assert 10 <= rate <= 30, rate  # one every 2-6 s
  lengths = ends[:count] - starts[:count]
  assert lengths.min() >= 1 and lengths.max() <= 8  # 0.1-0.3 s at 25 fps
  gaps = np.diff(starts) / FPS
  assert gaps.min() > 1.5 and gaps.max() < 6.5
  peaks = np.array([blinks[s:e].max(axis=0)
                    for s, e in zip(starts[:count], ends[:count])])
  assert np.all(peaks.max(axis=1) == 1.0)  # every blink closes an eye
  both = np.mean(np.all(peaks == 1.0, axis=1))
  assert both > 0.8, both


def test_brows_rise_on_speech_only(talk):
  n = _frames(talk)
  brows = motion.brow_trajectory(talk, n, np.random.default_rng(1))
  assert brows.shape == (n,) and brows.dtype == np.float32
  assert brows.min() >= 0 and brows.max() <= 1
  np.testing.assert_array_equal(
      brows, motion.brow_trajectory(talk, n, np.random.default_rng(1)))
  raised = [motion.brow_trajectory(talk, n, np.random.default_rng(s)).max()
            for s in range(5)]
  assert max(raised) > 0.15
  silent = motion.brow_trajectory(np.zeros_like(talk), n,
                                  np.random.default_rng(1))
  np.testing.assert_array_equal(silent, 0)


def test_bad_input_is_rejected():
  rng = np.random.default_rng(0)
  with pytest.raises(ValueError, match="mono"):
    motion.energy_envelope(np.zeros((2, 100), np.float32), 3)
  with pytest.raises(ValueError, match="NaN"):
    motion.head_pose_trajectory(np.full(100, np.nan, np.float32), 3, rng)
  with pytest.raises(ValueError, match="num_frames"):
    motion.blink_trajectory(-1, rng)
  with pytest.raises(ValueError, match="fps"):
    motion.brow_trajectory(np.zeros(100, np.float32), 3, rng, fps=0)
  assert motion.head_pose_trajectory(np.zeros(0, np.float32), 0,
                                     rng).shape == (0, 6)
