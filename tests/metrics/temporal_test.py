"""Flicker, head-motion diversity and beat-align score on hand-computed cases and planted beats."""

import numpy as np
import pytest

from talking_heads.metrics import temporal

FPS = 25
SAMPLE_RATE = 16000


def test_flicker_hand_computed_and_uint8_safe():
  levels = np.array([10, 0, 30, 30], np.uint8)  # Changes 10, 30, 0 -> mean 40 / 3.
  video = np.broadcast_to(levels[:, None, None, None], (4, 5, 6, 3))
  np.testing.assert_allclose(temporal.flicker(video), 40.0 / 3.0, rtol=1e-6)  # No uint8 wrap-around.
  batch = np.stack([video, np.zeros_like(video)])
  np.testing.assert_allclose(temporal.flicker(batch), [40.0 / 3.0, 0.0], rtol=1e-6)


def test_flicker_error_ignores_motion_the_reference_has():
  rng = np.random.default_rng(0)
  reference = rng.uniform(0, 1, (2, 5, 8, 8, 3)).astype(np.float32)
  np.testing.assert_allclose(temporal.flicker_error(reference + 0.25, reference), 0.0, atol=1e-6)
  generated = reference.copy()
  generated[:, 2] += 0.5  # One frame off by 0.5: two changes of 0.5 each, over 4 changes.
  np.testing.assert_allclose(temporal.flicker_error(generated, reference), [0.25, 0.25], rtol=1e-5)
  with pytest.raises(ValueError, match="differ"):
    temporal.flicker_error(generated[:, :4], reference)
  with pytest.raises(ValueError, match="at least 2 frames"):
    temporal.flicker(reference[:, :1])


def test_head_motion_diversity_hand_computed():
  features = np.array([[0.0, 0.0], [2.0, 4.0]])  # Stds 1 and 2 (ddof 0) -> 1.5.
  np.testing.assert_allclose(temporal.head_motion_diversity(features), 1.5, rtol=1e-6)
  batch = np.stack([features, np.ones_like(features)])
  np.testing.assert_allclose(temporal.head_motion_diversity(batch), [1.5, 0.0], rtol=1e-6)


def test_beat_align_score_hand_computed():
  # Audio beat 10 meets a motion beat; audio beat 20 is 3 frames from motion beat 23.
  score = temporal.beat_align_score([10, 20], [10, 23, 60], sigma=3.0)
  assert score == pytest.approx((1.0 + np.exp(-9.0 / 18.0)) / 2.0, rel=1e-12)
  assert temporal.beat_align_score([10, 20], []) == 0.0
  with pytest.raises(ValueError, match="no audio beats"):
    temporal.beat_align_score([], [3])


def test_kinetic_velocity_averages_points():
  t = np.arange(6, dtype=np.float64)
  moving = np.stack([3.0 * t, 4.0 * t], axis=-1)  # |step| = 5.
  motion = np.stack([np.zeros_like(moving), moving], axis=1)  # [T, 2 points, 2]: mean 2.5.
  np.testing.assert_allclose(temporal.kinetic_velocity(motion), np.full(5, 2.5))
  with pytest.raises(ValueError, match="frame 4"):
    motion[4, 1, 0] = np.inf
    temporal.kinetic_velocity(motion)


def _nodding(num_frames: int, period_frames: float, phase_frames: float) -> np.ndarray:
  """Yaw [T, 1] whose speed is smallest (turning points) at phase + k period / 2."""
  t = np.arange(num_frames, dtype=np.float64)
  return 10.0 * np.sin(2 * np.pi * (t - phase_frames) / period_frames + np.pi / 2)[:, None]


def test_motion_beats_are_the_turning_points():
  # Turning points at 0.3 + 12.5 k (off the half-frame grid, so no two velocities tie); velocity
  # index i spans frames i..i+1, so a turning point at time p is nearest to index p - 0.5.
  turning = 0.3 + 12.5 * np.arange(1, 16)
  beats = temporal.motion_beats(_nodding(200, 25.0, 0.3))
  assert len(beats) == len(turning)
  assert np.max(np.abs(beats - (turning - 0.5))) <= 0.5


def _click_track(seconds: float, interval_s: float) -> tuple[np.ndarray, np.ndarray]:
  t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
  audio = 0.001 * np.random.default_rng(0).standard_normal(t.size)
  clicks = np.arange(interval_s, seconds, interval_s)
  for c in clicks:
    start = int(c * SAMPLE_RATE)
    audio[start:start + 400] += np.sin(2 * np.pi * 1000.0 * t[:400]) * np.hanning(400)
  return audio.astype(np.float32), clicks * FPS


def test_audio_beats_follow_clicks_and_beat_align_prefers_aligned_motion():
  audio, click_frames = _click_track(8.0, 0.5)  # 120 bpm: a click every 12.5 frames.
  beats = temporal.audio_beats(audio, SAMPLE_RATE, FPS)
  assert len(beats) >= 10
  assert np.all(np.abs(np.diff(beats) - 12.5) <= 1.0)
  nearest = np.min(np.abs(beats[:, None] - click_frames[None, :]), axis=1)
  assert np.all(nearest <= 2.0)
  num_frames = 8 * FPS
  # Turning points 0.3 frames off the clicks keep them off the half-frame grid, where two equal
  # velocities would leave the detected minimum to floating-point rounding.
  phase = click_frames[0] + 0.3
  aligned = temporal.beat_align(_nodding(num_frames, 25.0, phase), audio, SAMPLE_RATE, FPS)
  off_beat = temporal.beat_align(_nodding(num_frames, 25.0, phase + 6.25), audio, SAMPLE_RATE, FPS)
  # Onset detection reports the clicks a frame or so late, which caps the aligned score below 1.
  assert aligned > 0.6
  assert off_beat < aligned / 2


def test_beat_align_errors():
  with pytest.raises(ValueError, match="mono audio"):
    temporal.audio_beats(np.zeros((2, 100)), SAMPLE_RATE, FPS)
  with pytest.raises(ValueError, match="whole sample rate"):
    temporal.audio_beats(np.zeros(1000), SAMPLE_RATE, 29.97001)
